"""Linkage figures: tolerated norm loss and correlations; tolerance against depth across models."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._axes import (
    _empty,
)
from ._style import (
    TWO_COLUMNS,
    _cut_legend,
    _palette,
    cut_colors,
    styled,
)

_SHORT = {"entropy": "entropy", "renyi2": "Rényi-2", "effective_rank_ratio": "eff. rank/χ$_{max}$",
          "spectral_norm_loss_at_frac": "norm loss\nat frac", "tolerated_norm_loss":
          "tolerated\nnorm loss", "accuracy_drop_at_frac": "accuracy\ndrop at frac"}


@styled
def tolerance_figure(linkage: xr.Dataset, palette: Mapping[str, dict] | None = None,
                     width: float = TWO_COLUMNS) -> Figure:
    """(a) tolerated norm loss per layer and cut; (b) entropy against tolerated norm loss;
    (c) Spearman rank correlations between spectral measures and accuracy targets."""
    cuts = [str(c) for c in linkage["cut"].values]
    names = [str(n) for n in linkage["layer"].values]
    pal = _palette(palette, cuts)
    delta = float(linkage.attrs.get("delta_points", 1.0))
    fig = plt.figure(figsize=(width, 2.9 if width > 5 else 6.5), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[1.5, 1, 1]) if width > 5 else \
        fig.add_gridspec(3, 1)
    a, b, c = (fig.add_subplot(grid[i]) for i in range(3))
    tol = linkage["tolerated_norm_loss"].transpose("layer", "cut").values
    offsets = np.linspace(-0.3, 0.3, len(cuts)) if len(cuts) > 1 else np.zeros(1)
    for j, cut in enumerate(cuts):
        ok = np.isfinite(tol[:, j])
        if not ok.any():
            continue
        st = pal[cut]
        a.scatter(np.arange(len(names))[ok] + offsets[j], tol[ok, j], color=st["color"],
                  marker=st["marker"], s=14, label=cut, zorder=3)
        b.scatter(linkage["entropy"].values[:, j][ok], tol[ok, j], color=st["color"],
                  marker=st["marker"], s=14, zorder=3)
    a.plot(np.arange(len(names)), linkage["layer_tolerated_norm_loss"].values, color="0.3",
           lw=1, ls="-", marker="_", markersize=12, label="median over cuts", zorder=2)
    for i in range(0, len(names), 2):
        a.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0, lw=0)
    a.set_xlim(-0.5, len(names) - 0.5)
    a.grid(axis="x", visible=False)
    crowded = sum(len(n) for n in names) > 24
    a.set_xticks(np.arange(len(names)), names, rotation=35 if crowded else 0,
                 ha="right" if crowded else "center", rotation_mode="anchor")
    a.set_xlabel("layer (forward order)")
    a.set_ylabel(f"tolerated norm loss (drop ≤ {delta:g} pt)")
    a.set_title("(a) tolerated norm loss")
    shown = [cut for j, cut in enumerate(cuts) if np.isfinite(tol[:, j]).any()]
    _cut_legend(fig, pal, shown, extra=[Line2D([], [], color="0.3", marker="_",
                                               markersize=12, label="median over cuts")])
    b.set_xlabel("entropy (nats)")
    b.set_ylabel("tolerated norm loss")
    b.set_title("(b) entropy vs tolerance")
    rho = linkage["spearman_rho"].transpose("measure", "target")
    pval = linkage["spearman_p"].transpose("measure", "target").values
    labels = np.array([[f"{r:+.2f}\np={p:.2g}" if np.isfinite(r) else "n/a"
                        for r, p in zip(rr, pp, strict=True)]
                       for rr, pp in zip(rho.values, pval, strict=True)])
    sns.heatmap(rho.values, ax=c, cmap="vlag", vmin=-1, vmax=1, annot=labels, fmt="",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "Spearman ρ"},
                xticklabels=[_SHORT.get(str(t), str(t)) for t in rho["target"].values],
                yticklabels=[_SHORT.get(str(m), str(m)) for m in rho["measure"].values])
    c.grid(False)
    c.set_title("(c) spectra vs accuracy")
    c.set_xlabel("accuracy-side target")
    c.set_ylabel("spectral measure")
    c.tick_params(axis="x", rotation=0)
    return fig


# --------------------------------------------------------------------------- depth


def layer_role(name: str, first: str) -> str:
    """``first`` (the network's first layer), ``shortcut`` (a 1×1 shortcut convolution) or
    ``layer``: what the depth figure marks."""
    if name == first:
        return "first"
    return "shortcut" if any(k in name for k in ("downsample", "shortcut")) else "layer"


_ROLE_MARKERS = {"first": "*", "shortcut": "D", "layer": "o"}


@styled
def depth_figure(links: Mapping[str, xr.Dataset], width: float = TWO_COLUMNS) -> Figure:
    """Tolerated norm loss (top) and tolerated output error (bottom) against relative depth,
    one column per model (``links``: name → :func:`corranalysis.link` output), over the
    distinct non-trivial cuts; bars span the censored interval [last passing, first
    failing) of the norm loss; the first layer (star) and shortcut convolutions
    (diamond) are marked."""
    names = list(links)
    cuts = list(dict.fromkeys(str(c) for ln in links.values() for c in ln["cut"].values))
    pal = cut_colors(cuts)
    fig, axes = plt.subplots(2, len(names), figsize=(width, 4.6), layout="constrained",
                             sharey="row", squeeze=False)
    for col, name in enumerate(names):
        ln = links[name]
        layers = [str(n) for n in ln["layer"].values]
        rel = np.arange(len(layers)) / max(1, len(layers) - 1)
        distinct = ln["distinct"].values if "distinct" in ln else np.ones(
            (len(layers), ln.sizes["cut"]), bool)
        for row, var in enumerate(("tolerated_norm_loss", "tolerated_output_error")):
            ax = axes[row, col]
            if var not in ln or not np.isfinite(ln[var].values).any():
                _empty(ax, f"no {var.replace('_', ' ')}")
                continue
            values = ln[var].transpose("layer", "cut").values
            for j, cut in enumerate(str(c) for c in ln["cut"].values):
                st = pal[cut]
                for i, layer in enumerate(layers):
                    if not distinct[i, j] or not np.isfinite(values[i, j]):
                        continue
                    role = layer_role(layer, layers[0])
                    y = values[i, j]
                    if row == 0 and "tolerated_norm_loss_high" in ln:
                        hi = float(ln["tolerated_norm_loss_high"].values[i, j])
                        ax.plot([rel[i], rel[i]], [y, hi], color=st["color"], lw=0.6,
                                alpha=0.5, zorder=1)
                    ax.scatter(rel[i], y, color=st["color"], marker=_ROLE_MARKERS[role],
                               s=40 if role == "first" else 14,
                               edgecolor="k" if role != "layer" else "none", lw=0.5, zorder=3)
            med = [np.nanmedian(np.where(distinct[i], values[i], np.nan))
                   if np.isfinite(np.where(distinct[i], values[i], np.nan)).any() else np.nan
                   for i in range(len(layers))]
            ax.plot(rel, med, color="0.3", lw=1, zorder=2)
            ax.set_xlabel("relative depth (first layer 0, last 1)")
            if col == 0:
                ax.set_ylabel("tolerated norm loss" if row == 0 else "tolerated output error")
            delta = float(ln.attrs.get("delta_points", 1.0))
            ax.set_title(f"{'ab'[row]}{col + 1}) {name}: drop ≤ {delta:g} pt")
    handles = [Line2D([], [], color=pal[c]["color"], marker=pal[c]["marker"], ls="", label=c)
               for c in cuts]
    handles += [Line2D([], [], color="0.5", marker=_ROLE_MARKERS[r], ls="", markeredgecolor="k",
                       label=lab) for r, lab in (("first", "first layer"),
                                                 ("shortcut", "1×1 shortcut"))]
    handles.append(Line2D([], [], color="0.3", label="median over cuts"))
    fig.legend(handles=handles, loc="outside right center", fontsize=6)
    return fig
