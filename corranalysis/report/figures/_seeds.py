"""The study over training seeds: per-layer tolerance and correlations in every seed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._linkage import _SHORT
from ._style import MARKERS, PALETTE, TWO_COLUMNS, styled


@styled
def seeds_figure(seeds: xr.Dataset, width: float = TWO_COLUMNS,
                 target: str = "tolerated_norm_loss") -> Figure:
    """(a) median tolerated norm loss per layer in each seed; (b) Spearman ρ of each spectral
    measure with ``target`` in each seed, raw and partial given ln χ_max.

    ``seeds``: :func:`corranalysis.linkage.across_seeds` (``seed``, ``layer``, ``measure``,
    ``target`` dims; ``layer_tolerated_norm_loss``, ``spearman_*``, ``partial_*``, ``holds``).
    """
    names = [str(n) for n in seeds["layer"].values]
    seed_ids = [int(s) for s in seeds["seed"].values]
    colors = sns.color_palette(PALETTE, len(seed_ids))
    fig = plt.figure(figsize=(width, 2.8 if width > 5 else 5.6), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1.6, 1]) if width > 5 else fig.add_gridspec(2, 1)
    a, b = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    per = seeds["layer_tolerated_norm_loss"].transpose("seed", "layer").values
    x = np.arange(len(names))
    offsets = np.linspace(-0.2, 0.2, len(seed_ids)) if len(seed_ids) > 1 else np.zeros(1)
    for i, s in enumerate(seed_ids):
        a.scatter(x + offsets[i], per[i], color=colors[i], marker=MARKERS[i % len(MARKERS)],
                  s=12, zorder=3, label=f"seed {s}")
    with np.errstate(all="ignore"):
        a.plot(x, np.nanmean(per, axis=0), color="0.3", lw=1, zorder=2, label="mean")
    for i in range(0, len(names), 2):
        a.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0, lw=0)
    a.set_xlim(-0.5, len(names) - 0.5)
    a.grid(axis="x", visible=False)
    crowded = sum(len(n) for n in names) > 24
    a.set_xticks(x, names, rotation=35 if crowded else 0, ha="right" if crowded else "center",
                 rotation_mode="anchor")
    a.set_xlabel("layer (forward order)")
    a.set_ylabel("tolerated norm loss\n(median over cuts)")
    a.set_title(f"(a) per layer, {len(seed_ids)} seeds")
    a.legend(loc="best", fontsize=6, ncol=min(len(seed_ids) + 1, 4))
    measures = [str(m) for m in seeds["measure"].values]
    for j, m in enumerate(measures):
        key = {"measure": m, "target": target}
        for kind, fill in (("spearman", True), ("partial", False)):
            if m == "log_chi_max" and kind == "partial":
                continue  # the shape baseline given itself: undefined
            rho = seeds[f"{kind}_rho"].sel(key).values
            p = seeds[f"{kind}_p"].sel(key).values
            y = j + (0.15 if fill else -0.15)
            for i in range(len(seed_ids)):
                if np.isfinite(rho[i]):
                    b.scatter(rho[i], y, s=22 if p[i] < 0.05 else 8, color=colors[i],
                              marker=MARKERS[i % len(MARKERS)], zorder=3,
                              facecolors=colors[i] if fill else "none")
        flags = [("✓" if bool(seeds["holds"].sel(key)) else ""),
                 ("✓" if m != "log_chi_max" and bool(seeds["partial_holds"].sel(key)) else "")]
        b.text(1.02, j + 0.15, flags[0], transform=b.get_yaxis_transform(), fontsize=7,
               va="center")
        b.text(1.02, j - 0.15, flags[1], transform=b.get_yaxis_transform(), fontsize=7,
               va="center")
    b.text(1.02, -0.6, "holds", transform=b.get_yaxis_transform(), fontsize=6, va="bottom")
    b.axvline(0, color="0.5", lw=0.8)
    b.set_xlim(-1, 1)
    b.set_yticks(range(len(measures)),
                 [_SHORT.get(m, "ln χ$_{max}$" if m == "log_chi_max" else m.replace("_", " "))
                  for m in measures])
    b.invert_yaxis()
    b.set_xlabel(f"Spearman ρ with {target.replace('_', ' ')}")
    b.set_title("(b) correlations in every seed")
    b.legend(handles=[Line2D([], [], ls="", marker="o", color="0.3", label="raw"),
                      Line2D([], [], ls="", marker="o", mfc="none", color="0.3",
                             label="partial (given ln χ$_{max}$)")],
             loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=6,
             frameon=False)
    return fig
