"""The tensorization comparison at equal parameter budgets (``compare.nc`` of
:func:`corranalysis.tensorize.compare`): accuracy drop against the compression of the
targeted layers per method, and step / inference time against the dense model.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._axes import _drop_axis, _drop_handles, _log_axis, _ratio_axis
from ._compression import pareto_front
from ._style import _MARKERS, METHOD_NAMES, TWO_COLUMNS, method_colors, styled

_SIZES = {"adtn": 9}


def final_accuracy(ds: xr.Dataset) -> np.ndarray:
    """Accuracy after the last fine-tuning epoch of each variant (NaN when unreachable)."""
    acc = np.asarray(ds["accuracy"].transpose("variant", "epoch").values, dtype=float)
    out = np.full(acc.shape[0], np.nan)
    for i, row in enumerate(acc):
        done = row[np.isfinite(row)]
        if done.size:
            out[i] = done[-1]
    return out


def _style_of(method: str, color: tuple) -> dict:
    return {"color": color, "marker": _MARKERS.get(method, "o"),
            "markersize": _SIZES.get(method, 4)}


@styled
def comparison_figure(ds: xr.Dataset, width: float = TWO_COLUMNS,
                      title: str | None = None, *, delta: float = 1.0) -> Figure:
    """Left: accuracy drop (points below the dense model, symlog, the δ band) against the
    compression of the targeted layers (log) per method, right after encoding (open,
    dotted) and after fine-tuning (filled), with the Pareto front of the fine-tuned
    variants; × marks a fine-tuning that ended below its start. Right: time of a training
    step (solid) and an inference batch (dotted) relative to the dense model. Unreachable
    variants are listed under the axes."""
    reach = np.asarray(ds["reachable"].values).astype(bool)
    ok = ds.isel(variant=np.flatnonzero(reach))
    narrow = width < 5
    fig, (ax, tx) = plt.subplots(2 if narrow else 1, 1 if narrow else 2,
                                 figsize=(width, 5.6 if narrow else 3.1), layout="constrained",
                                 gridspec_kw={"height_ratios" if narrow else "width_ratios":
                                              [1.6, 1]})
    methods = list(dict.fromkeys(str(m) for m in ok["method"].values))
    colors = method_colors(methods)
    comp = np.asarray(ok["compression"].values, dtype=float)
    base = float(ds.attrs.get("baseline_accuracy", np.nan))
    start = 100 * np.asarray(ok["accuracy"].isel(epoch=0).values, dtype=float)
    end = 100 * final_accuracy(ok)
    if not np.isfinite(base):
        base = float(np.nanmax(end, initial=np.nan)) / 100
    d_start, d_end = 100 * base - start, 100 * base - end
    fell = np.asarray(ok["fell_below_start"].values, dtype=float) > 0
    step = (np.asarray(ok["step_seconds"].values, float)
            / np.asarray(ok["dense_step_seconds"].values, float))
    inference = (np.asarray(ok["inference_seconds"].values, float)
                 / np.asarray(ok["dense_inference_seconds"].values, float))
    for m in methods:
        sel = np.flatnonzero(np.asarray(ok["method"].values).astype(str) == m)
        sel = sel[np.argsort(comp[sel])]
        kw = _style_of(m, colors[m])
        ax.plot(comp[sel], d_start[sel], ls=":", mfc="white", lw=0.8, zorder=3, **kw)
        ax.plot(comp[sel], d_end[sel], ls="-", zorder=4, **kw)
        tx.plot(comp[sel], step[sel], ls="-", **kw)
        tx.plot(comp[sel], inference[sel], ls=":", mfc="white", **kw)
    if fell.any():
        ax.plot(comp[fell], d_end[fell], ls="none", marker="x", color="k", ms=6, zorder=5)
    front = pareto_front(comp, d_end)
    if front.size:
        ax.plot(comp[front], d_end[front], color="0.2", lw=3, alpha=0.2, zorder=2,
                solid_capstyle="round")
    _drop_axis(ax, np.concatenate([d_start, d_end]), delta, 0.0)
    _ratio_axis(ax)
    ax.set_ylabel("accuracy drop (points below dense)")
    tx.axhline(1.0, color="0.3", lw=0.8)
    _log_axis(tx, "y")
    _ratio_axis(tx)
    tx.set_ylabel("time / dense model's time")
    tx.set_title("training step (—), inference batch (···)")
    for a in (ax, tx):
        a.set_xlabel("compression of the targeted layers")
    ax.set_title(title or f"{ds.attrs.get('model', '')} · {ds.attrs.get('layers', '')}"
                 + (f" · dense {100 * base:.1f} %" if np.isfinite(base) else ""))
    handles = [Line2D([], [], label=METHOD_NAMES.get(m, m), **_style_of(m, colors[m]))
               for m in methods]
    handles += [Line2D([], [], color="0.5", marker="o", mfc="white", ls=":",
                       label="right after encoding (epoch 0)"),
                Line2D([], [], color="0.5", marker="o", label="after fine-tuning"),
                Line2D([], [], color="0.2", lw=3, alpha=0.2, label="Pareto front")]
    if fell.any():
        handles.append(Line2D([], [], color="k", marker="x", ls="none",
                              label="ended below its start"))
    handles += _drop_handles(delta, 0.0, 0.0)
    missing = [str(v) for v, r in zip(ds["variant"].values, reach, strict=True) if not r]
    if missing:
        handles.append(Line2D([], [], ls="none", label="not reachable: " + ", ".join(missing)))
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if narrow else 4,
               frameon=False)
    return fig


__all__ = ["METHOD_NAMES", "comparison_figure", "final_accuracy", "method_colors"]
