"""Accuracy-drop figures of the sweep: per layer and cut against norm loss or kept fraction,
and combined truncations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...linkage import (
    Z_95,
    curves,
    kept_fraction,
    scope_trials,
    single_trials,
    truncated_layers,
)
from ._axes import (
    KEEP_STYLE,
    _by_kind,
    _depth_layer_handles,
    _drop_axis,
    _drop_curve,
    _drop_handles,
    _empty,
    _grid,
    _kind_handles,
    _layer_cuts,
    _log_axis,
    _merge_note,
    _nl_label,
    _sampling_margin,
    cut_classes,
)
from ._style import (
    TWO_COLUMNS,
    _cut_legend,
    _palette,
    layer_colors,
    styled,
)


def _accuracy_panels(single: xr.Dataset, x: np.ndarray, log_x: bool, xlabel: str,
                     sweep: xr.Dataset, layers: Sequence[str] | None,
                     palette: Mapping[str, dict] | None, delta: float | None,
                     width: float, classes: xr.Dataset | None, z: float) -> Figure:
    """Accuracy drop (symlog) against ``x`` (aligned with ``single``'s trials): a panel per
    layer with its own limits, a line per distinct cut over χ, the band of ±z·SE around
    it, the tolerated region and its sampling margin."""
    delta = 1.0 if delta is None else float(delta)
    groups = curves(single)
    cuts = list(dict.fromkeys(cut for _, cut in groups))
    pal = _palette(palette, cuts)
    names = [n for n in dict.fromkeys(name for name, _ in groups)
             if layers is None or n in {str(v) for v in layers}]
    base = float(sweep.attrs["baseline_accuracy"])
    fig, axes = _grid(max(len(names), 1), width)
    if not names:
        _empty(axes[0], "no single-layer trials in the sweep")
        return fig
    margin = _sampling_margin(sweep, delta, z)
    position = {int(t): i for i, t in enumerate(single["trial"].values)}
    shown: list[str] = []
    for ax, name in zip(axes, names, strict=True):
        draw, merged, trivial = _layer_cuts(classes, name, [c for n, c in groups if n == name])
        drops = []
        for cut in draw:
            rows = groups[name, cut]
            xs = x[[position[int(t)] for t in rows["trial"].values]]
            xs, ys, es = _drop_curve(rows, xs, base, log_x)
            st = pal[cut]
            ax.plot(xs, ys, color=st["color"], ls=st["ls"], marker=st["marker"], zorder=3)
            if np.isfinite(es).any():
                ax.fill_between(xs, ys - z * es, ys + z * es, color=st["color"], alpha=0.15,
                                lw=0, zorder=2)
            drops.append(ys)
            shown.append(cut)
        _drop_axis(ax, np.concatenate(drops) if drops else np.zeros(0), delta, margin)
        if log_x:
            _log_axis(ax, "x")
        else:
            ax.set_xlim(0, 1.02)
        ax.set_title(f"layer {name}")
        ax.set_xlabel(xlabel)
        _merge_note(ax, merged, trivial, loc="lower right")
    _cut_legend(fig, pal, list(dict.fromkeys(shown)), extra=_drop_handles(delta, margin, z))
    return fig


@styled
def accuracy_vs_norm_loss(sweep: xr.Dataset, layers: Sequence[str] | None = None,
                          palette: Mapping[str, dict] | None = None, delta: float | None = 1.0,
                          width: float = TWO_COLUMNS, *, cuts: xr.Dataset | None = None,
                          z: float = Z_95) -> Figure:
    """Accuracy drop (points, symlog) against the norm loss of truncating one layer along
    one cut: a panel per layer, a line per distinct cut (``cuts``: a link or spectra
    dataset to merge cuts with the same matrix and leave out χ_max = 1 cuts), shaded
    ±z·SE of each drop, the tolerated region drop ≤ δ and its sampling margin.

    The study's central figure, per layer. frac= and loss= keeps both only pick χ, so a
    cut's trials lie on one curve over χ. Trials with zero norm loss sit on the baseline
    and are not drawn on the log axis.
    """
    single = single_trials(sweep)
    return _accuracy_panels(single, np.asarray(single["norm_loss"].values, dtype=float), True,
                            _nl_label(width), sweep, layers, palette, delta, width,
                            None if cuts is None else cut_classes(cuts), z)


@styled
def accuracy_vs_kept_fraction(sweep: xr.Dataset, spectra: xr.Dataset | None = None,
                              layers: Sequence[str] | None = None,
                              palette: Mapping[str, dict] | None = None,
                              delta: float | None = 1.0, width: float = TWO_COLUMNS, *,
                              z: float = Z_95) -> Figure:
    """Accuracy drop (points, symlog) against kept fraction χ/χ_max per layer, one line per
    distinct cut (merged with ``spectra``), as :func:`accuracy_vs_norm_loss`."""
    single = single_trials(sweep)
    return _accuracy_panels(single, kept_fraction(single, spectra), False,
                            "kept fraction χ/χ$_{max}$", sweep, layers, palette, delta, width,
                            None if spectra is None else cut_classes(spectra), z)


def _all_layers_label(cut: str, rows: xr.Dataset, every: Sequence[str]) -> str:
    """What an all-layers series truncates: the cut, and which layers have it when not all
    the truncated layers of the sweep do."""
    have = [n for n in str(rows["layer"].values[0]).split(",") if n]
    if len(have) >= len(every):
        return f"{cut} (all {len(have)} layers)"
    if len(have) == 1:
        return f"{cut} (only {have[0]} has it)"
    return f"{cut} ({len(have)} of {len(every)} layers" + (
        f": {', '.join(have)})" if len(have) <= 3 else ")")


@styled
def combined_truncations(sweep: xr.Dataset, palette: Mapping[str, dict] | None = None,
                         delta: float | None = 1.0, width: float = TWO_COLUMNS, *,
                         z: float = Z_95) -> Figure:
    """Accuracy drop (points, symlog) against norm loss of combined truncations. Left: all
    cuts of one layer at once (colour: layer). Right: one cut in every layer that has it
    (colour: cut; the label says which layers). frac= keeps (solid) and loss= keeps
    (dashed, open markers) are separate series: they truncate the cuts or layers
    differently, so one line through both would zig-zag."""
    delta = 1.0 if delta is None else float(delta)
    base = float(sweep.attrs["baseline_accuracy"])
    all_cuts = curves(scope_trials(sweep, "all-cuts"))
    all_layers = curves(scope_trials(sweep, "all-layers"))
    every = truncated_layers(sweep)
    cuts = list(dict.fromkeys(cut for _, cut in all_layers))
    pal = _palette(palette, cuts)
    narrow = width < 5
    rows = max(math.ceil(len(all_layers) / 2), 0 if len(all_cuts) > 8 else
               math.ceil(len(all_cuts) / 2))
    fig, (left, right) = plt.subplots(2 if narrow else 1, 1 if narrow else 2,
                                      figsize=(width, (6.0 if narrow else 2.9) + 0.13 * rows),
                                      layout="constrained")
    margin = _sampling_margin(sweep, delta, z)
    kinds: list[str] = []
    for ax, groups, empty in ((left, all_cuts, "no all-cuts trials in the sweep"),
                              (right, all_layers, "no all-layers trials in the sweep")):
        if not groups:
            _empty(ax, empty)
            continue
        colors = layer_colors([name for name, _ in groups]) if ax is left else None
        handles, drops = [], []
        for (name, cut), rows in groups.items():
            if ax is left:
                color, marker, ls, label = colors[name], "o", None, name
            else:
                st = pal[cut]
                color, marker, ls = st["color"], st["marker"], st["ls"]
                label = _all_layers_label(cut, rows, every)
            for kind, part in _by_kind(rows):
                x, y, _ = _drop_curve(part, np.asarray(part["norm_loss"].values, float), base,
                                      True)
                ax.plot(x, y, color=color, marker=marker, ls=KEEP_STYLE[kind]["ls"],
                        mfc=KEEP_STYLE[kind]["mfc"] or color, zorder=3)
                kinds.append(kind)
                drops.append(y)
            handles.append(Line2D([], [], color=color, marker=marker, ls=ls or "-",
                                  label=label))
        _drop_axis(ax, np.concatenate(drops), delta, margin)
        _log_axis(ax, "x")
        if ax is left and len(handles) > 8:
            _depth_layer_handles(fig, ax, [name for name, _ in groups], colors)
        else:
            ax.legend(handles=handles, title="all cuts of" if ax is left else "one cut in",
                      loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6,
                      ncol=2, title_fontsize=6, frameon=False)
    left.set_title("all cuts of one layer at once")
    right.set_title("one cut in all layers at once")
    left.set_xlabel(_nl_label(width, " of the layer"))
    right.set_xlabel(_nl_label(width, ", mean over layers"))
    fig.legend(handles=_kind_handles(kinds) + _drop_handles(delta, margin, z),
               loc="outside upper center", ncol=2 if narrow else 3, frameon=False)
    return fig
