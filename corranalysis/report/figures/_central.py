"""The first screen's figure: drop against norm loss, tolerance against depth, drop against
compression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...linkage import (
    Z_95,
    curves,
    single_trials,
)
from ._axes import (
    _depth_layer_handles,
    _drop_axis,
    _drop_curve,
    _drop_handles,
    _layer_cuts,
    _log_axis,
    _ratio_axis,
    _sampling_margin,
    cut_classes,
)
from ._compression import (
    _compression_points,
    _extra_points,
    _method_colors,
    pareto_front,
    truncated_params,
)
from ._style import (
    TWO_COLUMNS,
    layer_colors,
    styled,
)


@styled
def central_figure(sweep: xr.Dataset, linkage: xr.Dataset, width: float = TWO_COLUMNS, *,
                   total_params: float | None = None, extra: xr.Dataset | None = None
                   ) -> Figure:
    """The study's answer in three panels: (a) accuracy drop against norm loss of every
    layer's distinct cuts (colour: depth); (b) the tolerated norm loss against depth, each
    distinct cut with its censored interval [last passing, first failing) and the layer
    median; (c) accuracy drop against whole-network compression ratio with the Pareto
    fronts. δ and z are the link's."""
    delta = float(linkage.attrs.get("delta_points", 1.0))
    z = float(linkage.attrs.get("z", Z_95))
    base = float(sweep.attrs["baseline_accuracy"])
    names = [str(n) for n in linkage["layer"].values]
    colors = layer_colors(names)
    classes = cut_classes(linkage)
    narrow = width < 5
    fig, axes = plt.subplots(3 if narrow else 1, 1 if narrow else 3,
                             figsize=(width, 7.2 if narrow else 2.5), layout="constrained")
    a, b, c = axes
    single = single_trials(sweep)
    groups = curves(single)
    margin = _sampling_margin(sweep, delta, z)
    drops = []
    for name in names:
        draw, _, _ = _layer_cuts(classes, name, [cut for n, cut in groups if n == name])
        for cut in draw:
            rows = groups[name, cut]
            x, y, _ = _drop_curve(rows, np.asarray(rows["norm_loss"].values, float), base, True)
            a.plot(x, y, color=colors[name], lw=0.9, marker="o", markersize=1.8, alpha=0.85,
                   zorder=3)
            drops.append(y)
    _drop_axis(a, np.concatenate(drops) if drops else np.zeros(0), delta, margin)
    _log_axis(a, "x")
    a.set_xlabel("norm loss of the truncation")
    a.set_title("(a) one layer, one cut truncated")
    handles = _depth_layer_handles(fig, b, names, colors)
    handles += _tolerance_by_depth(b, linkage, classes, colors)
    b.set_title("(b) tolerated norm loss")
    tot = float(total_params) if total_params else truncated_params(sweep)
    swept = _compression_points(sweep, tot)
    points = {**swept, **_extra_points(extra, tot, base)}
    method_colors = _method_colors(list(points))
    cdrops = []
    for method, (_, _, net, dr) in points.items():
        col = method_colors[method]
        if not dr.size:
            continue
        if method in swept:
            c.scatter(net, dr, s=4, color=col, alpha=0.25, lw=0, zorder=2)
            front = pareto_front(net, dr)
            c.step(net[front], dr[front], where="pre", color=col, lw=1.1, zorder=4)
            handles.append(Line2D([], [], color=col, label="Pareto front, " + method))
        else:
            c.scatter(net, dr, s=22, marker="*", color=col, zorder=5)
            handles.append(Line2D([], [], color=col, marker="*", ls="none", label=method))
        cdrops.append(dr)
    _drop_axis(c, np.concatenate(cdrops), delta, margin)
    _ratio_axis(c)
    c.set_xlabel("whole-network compression")
    c.set_title("(c) compression")
    fig.legend(handles=handles, loc="outside upper center",
               ncol=len(handles) if len(handles) <= 6 else math.ceil(len(handles) / 2),
               frameon=False, fontsize=6, handlelength=1.5, columnspacing=1.2)
    fig.legend(handles=_drop_handles(delta, margin, z), loc="outside lower center", ncol=3,
               frameon=False, fontsize=6)
    return fig


def _tolerance_by_depth(ax: Axes, linkage: xr.Dataset, classes: xr.Dataset,
                        colors: Mapping[str, tuple]) -> list[Line2D]:
    """Tolerated norm loss of each distinct cut at its layer's position (bars: the censored
    interval [low, high)), the layer median as a line; returns the legend handles."""
    names = [str(n) for n in linkage["layer"].values]
    cuts = [str(c) for c in linkage["cut"].values]
    low = linkage["tolerated_norm_loss"].transpose("layer", "cut").values
    high = (linkage["tolerated_norm_loss_high"].transpose("layer", "cut").values
            if "tolerated_norm_loss_high" in linkage else low)
    for i, name in enumerate(names):
        draw, _, _ = _layer_cuts(classes, name, [c for j, c in enumerate(cuts)
                                                 if np.isfinite(low[i, j])])
        js = [cuts.index(c) for c in draw]
        if not js:
            continue
        offsets = np.linspace(-0.28, 0.28, len(js)) if len(js) > 1 else np.zeros(1)
        for off, j in zip(offsets, js, strict=True):
            ax.plot([i + off, i + off], [low[i, j], high[i, j]], color=colors[name], lw=0.6,
                    alpha=0.35, zorder=2)
        ax.scatter(i + offsets, low[i, js], s=7, color=colors[name], zorder=3, lw=0)
    med = linkage["layer_tolerated_norm_loss"].values
    ax.plot(np.arange(len(names)), med, color="0.2", lw=1.1, marker="_", markersize=9,
            zorder=4, label="median over distinct cuts")
    ax.set_xlim(-0.6, len(names) - 0.4)
    if len(names) <= 8:
        ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right",
                      rotation_mode="anchor", fontsize=6)
    else:
        step = math.ceil(len(names) / 5)
        ticks = [t for t in range(0, len(names), step) if len(names) - 1 - t > step / 2]
        ticks.append(len(names) - 1)
        ax.set_xticks(ticks, [names[t] for t in ticks], rotation=30, ha="right",
                      rotation_mode="anchor", fontsize=5.5)
    ax.grid(axis="x", visible=False)
    finite = high[np.isfinite(high)]
    ax.set_ylim(0, min(1.0, float(finite.max()) if finite.size else 1.0) * 1.05 + 0.01)
    ax.set_xlabel("layer (forward order)")
    ax.set_ylabel("tolerated norm loss")
    return [Line2D([], [], color="0.2", marker="_", markersize=9,
                   label="median over distinct cuts")]
