"""Tensorized layers against truncation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ...linkage import (
    curves,
    scope_trials,
    single_trials,
)
from ._axes import (
    _baseline,
    _curve,
    _log_axis,
)
from ._style import (
    ALL_COLOR,
    ALL_CUTS_STYLE,
    ONE_COLUMN,
    _palette,
    styled,
)


def _truncation_curves(sweep: xr.Dataset, layers: Sequence[str]) -> dict[str, xr.Dataset]:
    """Sweep trials comparable with compressing ``layers``, by cut (``""``: all cuts at
    once): the single-layer and all-cuts trials of that layer when it is one, else the
    all-layers trials."""
    if len(layers) == 1:
        out = {cut: rows for (name, cut), rows in curves(single_trials(sweep)).items()
               if name == layers[0]}
        for (name, _), rows in curves(scope_trials(sweep, "all-cuts")).items():
            if name == layers[0]:
                out[""] = rows
        return out
    return {cut: rows for (_, cut), rows in curves(scope_trials(sweep, "all-layers")).items()}


@styled
def tensorize_figure(tensorize: xr.Dataset, sweep: xr.Dataset,
                     palette: Mapping[str, dict] | None = None,
                     width: float = ONE_COLUMN) -> Figure:
    """Test accuracy against the parameter fraction kept in the compressed layers:
    truncation trials (lines per cut) against the tensorized model (encoded, fine-tuned)."""
    layers = [str(n) for n in tensorize["layer"].values]
    groups = _truncation_curves(sweep, layers)
    pal = _palette(palette, [cut for cut in groups if cut])
    fig, ax = plt.subplots(figsize=(width, 3.4 if width < 5 else 3.0), layout="constrained")
    for cut, rows in groups.items():
        rows = rows.assign(param_frac=rows["params_factorized"] / rows["params_dense"])
        x, y = _curve(rows, "param_frac")
        st = pal[cut] if cut else ALL_CUTS_STYLE
        ax.plot(x, y, color=st["color"], ls=st["ls"], marker=st["marker"],
                label=f"truncate {cut or 'all cuts'}")
    frac = float(tensorize["params_after"].sum()) / float(tensorize["params_before"].sum())
    methods = "+".join(dict.fromkeys(str(m) for m in tensorize["method"].values))
    acc = 100 * np.asarray(tensorize["accuracy"].values, dtype=float)
    ax.plot([frac], [acc[0]], ls="none", marker="*", markersize=9, mfc="white", mec=ALL_COLOR,
            label=f"{methods}, encoded")
    if acc.size > 1:
        ax.plot([frac], [acc[-1]], ls="none", marker="*", markersize=9, color=ALL_COLOR,
                label=f"{methods}, fine-tuned {acc.size - 1} ep.")
    if "baseline_accuracy" in sweep.attrs:
        _baseline(ax, float(sweep.attrs["baseline_accuracy"]))
    _log_axis(ax, "x")
    ax.set_xlabel("parameters kept in the compressed layers (fraction)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"tensorized layer{'s' if len(layers) > 1 else ''} {', '.join(layers)} "
                 "vs truncation")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=6,
               ncol=2 if width < 5 else 4, frameon=False)
    return fig
