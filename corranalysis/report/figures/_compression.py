"""Compression against accuracy: network and layer compression ratios, Pareto fronts, extra
points (tensorized models) on the same axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...linkage import (
    Z_95,
    accuracy_drop,
    scope_trials,
    scoped_sweep,
    trial_truncation,
    truncated_layers,
)
from ._axes import (
    _drop_axis,
    _drop_handles,
    _grid,
    _ratio_axis,
    _sampling_margin,
)
from ._style import (
    METHOD_NAMES,
    PALETTE,
    TWO_COLUMNS,
    method_colors,
    styled,
)


def network_ratio(trials: xr.Dataset, total_params: float) -> np.ndarray:
    """Whole-network compression ratio of each trial: ``total_params`` over the parameters
    left after replacing the truncated kernels (``params_dense``) by their factors
    (``params_factorized``)."""
    dense = np.asarray(trials["params_dense"].values, dtype=float)
    fact = np.asarray(trials["params_factorized"].values, dtype=float)
    return total_params / (total_params - dense + fact)


def pareto_front(ratio: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Positions of the points no other point beats on both axes (higher compression ratio
    and lower accuracy drop), ordered by ratio."""
    ok = np.flatnonzero(np.isfinite(ratio) & np.isfinite(drop))
    order = ok[np.lexsort((drop[ok], -ratio[ok]))]  # by ratio descending, then drop
    front, best = [], np.inf
    for i in order:
        if drop[i] < best:
            front.append(i)
            best = drop[i]
    return np.array(front[::-1], dtype=int)


def _method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """Truncations in their fixed colours; tensorization methods ("<name>, fine-tuned") in
    the colours of the comparison figure (:func:`method_colors`); the rest after them."""
    colors = sns.color_palette(PALETTE)
    fixed = {"truncation (SVD)": colors[0], "truncation (data-aware)": colors[2]}
    by_name = {name: key for key, name in METHOD_NAMES.items()}
    tensorized = method_colors(list(METHOD_NAMES))
    for m in methods:
        key = by_name.get(m.removesuffix(", fine-tuned"))
        if key is not None:
            fixed.setdefault(m, tensorized[key])
    rest = iter(c for i, c in enumerate(colors) if i not in (0, 2))
    return {m: fixed.get(m) or next(rest) for m in dict.fromkeys(methods)}


def _compression_points(sweep: xr.Dataset, total: float) -> dict[str, tuple[np.ndarray, ...]]:
    """Per truncation method: (layer or "" for several, layer ratio, network ratio, drop)."""
    out = {}
    scoped = scoped_sweep(sweep)
    for truncation in dict.fromkeys(trial_truncation(scoped)):
        rows = scoped.isel(trial=np.flatnonzero(trial_truncation(scoped) == truncation))
        layer = np.where(np.asarray(rows["scope"].values) == "all-layers", "",
                         np.asarray(rows["layer"].values).astype(str))
        ratio = (np.asarray(rows["params_dense"].values, float)
                 / np.asarray(rows["params_factorized"].values, float))
        name = "truncation (SVD)" if truncation == "svd" else f"truncation ({truncation})"
        out[name] = (layer, ratio, network_ratio(rows, total), accuracy_drop(rows))
    return out


def _extra_points(extra: xr.Dataset | None, total: float,
                  base: float) -> dict[str, tuple[np.ndarray, ...]]:
    """:func:`compression_figure`'s ``extra`` points in the same form as the sweep's."""
    if extra is None:
        return {}
    dim = extra["method"].dims[0]
    base = float(extra.attrs.get("baseline_accuracy", base))
    acc = extra["accuracy"]
    acc = acc.isel({d: -1 for d in acc.dims if d != dim})  # the last epoch: fine-tuned
    method = np.asarray(extra["method"].values).astype(str)
    layer = (np.asarray(extra["layer"].values).astype(str) if "layer" in extra.variables
             else np.full(extra.sizes[dim], ""))
    params = np.asarray((extra["params"] if "params" in extra else extra["params_after"]).values,
                        dtype=float)
    dense_var = next((extra[v] for v in ("params_dense", "params_before") if v in extra), None)
    dense = (np.full(params.shape, float(total)) if dense_var is None
             else np.asarray(dense_var.values, dtype=float))
    drop = 100.0 * (base - np.asarray(acc.values, dtype=float))
    out = {}
    for m in dict.fromkeys(method):
        sel = (method == m) & np.isfinite(drop) & (params > 0)
        out[m] = (layer[sel], dense[sel] / params[sel],
                  total / (total - dense[sel] + params[sel]), drop[sel])
    return out


def truncated_params(sweep: xr.Dataset) -> float:
    """The parameters of every layer the sweep truncates (their dense kernels, from its
    single-layer trials): the whole network's size when nothing better is known."""
    single = scope_trials(sweep, "layer", truncation=None)
    seen = dict(zip(np.asarray(single["layer"].values).astype(str),
                    np.asarray(single["params_dense"].values, dtype=float), strict=True))
    return float(sum(seen.values()))


@styled
def compression_figure(sweep: xr.Dataset, layers: Sequence[str] | None = None,
                       delta: float | None = 1.0, width: float = TWO_COLUMNS, *,
                       extra: xr.Dataset | None = None, total_params: float | None = None,
                       z: float = Z_95) -> Figure:
    """Accuracy drop (points, symlog) against compression ratio (dense / compressed
    parameters, log) with the Pareto front of each method: the whole network first (every
    trial; ratio over ``total_params``, default the truncated layers' kernels), then one
    panel per layer (its single-cut and all-cuts trials; ratio of that layer).

    ``extra``: more points on the same axes, e.g. tensorized models — a dataset along one
    dimension with coordinate ``method``, variables ``accuracy`` (fraction; with an epoch
    dimension too, its last epoch), ``params`` or ``params_after`` (parameters of the
    compressed layers after) and optionally ``params_dense`` or ``params_before`` (before;
    default ``total_params``), optionally ``layer`` (the layer compressed; "" or absent:
    drawn in the whole-network panel only); attribute ``baseline_accuracy`` when measured
    against another baseline than the sweep's. Points with NaN accuracy are left out.
    """
    delta = 1.0 if delta is None else float(delta)
    total = float(total_params) if total_params else truncated_params(sweep)
    base = float(sweep.attrs["baseline_accuracy"])
    swept = _compression_points(sweep, total)
    points = {**swept, **_extra_points(extra, total, base)}
    names = [n for n in truncated_layers(sweep) if layers is None or n in set(layers)]
    colors = _method_colors(list(points))
    fig, axes = _grid(1 + len(names), width, row_height=2.0)
    all_drops = np.concatenate([p[3] for p in points.values()])
    margin = _sampling_margin(sweep, delta, z)
    for ax, name in zip(axes, [None, *names], strict=True):
        drops = []
        for method, (layer, ratio, net, drop) in points.items():
            sel = np.ones(layer.shape, bool) if name is None else layer == name
            x = net[sel] if name is None else ratio[sel]
            y = drop[sel]
            if not sel.any():
                continue
            c = colors[method]
            is_extra = method not in swept
            ax.scatter(x, y, s=16 if is_extra else 5, color=c, alpha=1 if is_extra else 0.3,
                       marker="*" if is_extra else "o", lw=0, zorder=3 if is_extra else 2)
            front = pareto_front(x, y)
            if not is_extra:
                ax.step(x[front], y[front], where="pre", color=c, lw=1.1, zorder=4)
                ax.plot(x[front], y[front], ls="none", marker="o", markersize=2.5, color=c,
                        zorder=4)
            drops.append(y)
        _drop_axis(ax, np.concatenate(drops) if drops else all_drops, delta, margin)
        _ratio_axis(ax)
        ax.set_xlabel("compression ratio" if name else "compression ratio, whole network")
        ax.set_title("whole network (every trial)" if name is None else f"layer {name}")
    handles = [Line2D([], [], color=colors[m], marker="o" if m in swept else "*",
                      ls="-" if m in swept else "none",
                      label=f"{m}{', Pareto front' if m in swept else ''}")
               for m in points if points[m][3].size]
    fig.legend(handles=handles + _drop_handles(delta, margin, z), loc="outside upper center",
               ncol=2 if width < 5 else 3, frameon=False)
    return fig
