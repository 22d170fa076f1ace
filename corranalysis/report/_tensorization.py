"""The tensorization comparison in figures and tables: ``compare.nc`` in, Figure / rows out.

One figure (:func:`comparison_figure`): accuracy against the compression of the targeted
layers for every method (after encoding, hollow; after fine-tuning, filled), the dense
baseline with its 1-point band and the Pareto front over all methods; beside it the time of a
training step and of an inference batch relative to the dense model, measured in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .figures import PALETTE, TWO_COLUMNS, styled

#: Method order and names as the comparison shows them.
METHOD_NAMES = {"svd": "truncation (svd, best cut)", "tucker": "Tucker-2", "cp": "CP",
                "mpo": "MPO / TT", "adtn": "ADTN"}
_MARKERS = {"svd": "o", "tucker": "s", "cp": "^", "mpo": "D", "adtn": "*"}


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per method, the same in every comparison figure."""
    pal = sns.color_palette(PALETTE, len(METHOD_NAMES))
    return {m: pal[i] for i, m in enumerate(METHOD_NAMES) if m in methods}


def pareto_front(compression: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both compression and accuracy, sorted
    by compression (higher is better on both axes)."""
    ok = np.flatnonzero(np.isfinite(compression) & np.isfinite(accuracy))
    front = [i for i in ok if not any(
        compression[j] >= compression[i] and accuracy[j] >= accuracy[i]
        and (compression[j] > compression[i] or accuracy[j] > accuracy[i]) for j in ok)]
    return np.array(sorted(front, key=lambda i: compression[i]), dtype=int)


def final_accuracy(ds: xr.Dataset) -> np.ndarray:
    """Accuracy after the last fine-tuning epoch of each variant (NaN when unreachable)."""
    acc = ds["accuracy"].values
    out = np.full(acc.shape[0], np.nan)
    for i, row in enumerate(acc):
        done = row[np.isfinite(row)]
        if done.size:
            out[i] = done[-1]
    return out


@styled
def comparison_figure(ds: xr.Dataset, width: float = TWO_COLUMNS,
                      title: str | None = None) -> Figure:
    """Accuracy (%) against compression (log) per method with the Pareto front, and step /
    inference time relative to dense; unreachable variants are listed under the axes."""
    import matplotlib.pyplot as plt

    ok = ds.sel(variant=ds["reachable"].values.astype(bool))
    fig, (ax, tx) = plt.subplots(1, 2, figsize=(width, width * 0.42),
                                 gridspec_kw={"width_ratios": [1.6, 1]})
    methods = list(dict.fromkeys(str(m) for m in ok["method"].values))
    colors = method_colors(methods)
    comp = ok["compression"].values.astype(float)
    start = 100 * ok["accuracy"].isel(epoch=0).values
    end = 100 * final_accuracy(ok)
    base = 100 * float(ds.attrs.get("baseline_accuracy", np.nan))
    if np.isfinite(base):
        ax.axhspan(base - 1, base, color="0.88", zorder=0, lw=0)
        ax.axhline(base, color="0.3", lw=0.8, zorder=1)
    for m in methods:
        sel = np.flatnonzero(ok["method"].values == m)
        sel = sel[np.argsort(comp[sel])]
        kw = {"color": colors[m], "marker": _MARKERS.get(m, "o")}
        ax.plot(comp[sel], start[sel], ls=":", mfc="white", lw=0.8, **kw)
        ax.plot(comp[sel], end[sel], ls="-", **kw)
        fell = sel[ok["fell_below_start"].values[sel] > 0]
        ax.plot(comp[fell], end[fell], ls="none", marker="x", color="k", ms=6)
        dense_step = ok["dense_step_seconds"].values[sel]
        dense_inf = ok["dense_inference_seconds"].values[sel]
        tx.plot(comp[sel], ok["step_seconds"].values[sel] / dense_step, ls="-", **kw)
        tx.plot(comp[sel], ok["inference_seconds"].values[sel] / dense_inf, ls=":",
                mfc="white", **kw)
    front = pareto_front(comp, end)
    if front.size:
        ax.plot(comp[front], end[front], color="0.2", lw=2.5, alpha=0.25, zorder=0,
                solid_capstyle="round")
    lo = np.nanmin(np.concatenate([start, end, [base - 2 if np.isfinite(base) else np.nan]]))
    hi = np.nanmax(np.concatenate([start, end, [base]]))
    ax.set_ylim(max(0.0, lo - 0.15 * (hi - lo) - 0.5), hi + 0.08 * (hi - lo) + 0.3)
    for a in (ax, tx):
        a.set_xscale("log")
        a.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel("compression of the targeted layers (×)")
    ax.set_ylabel("test accuracy (%)")
    tx.set_yscale("log")
    tx.axhline(1.0, color="0.3", lw=0.8)
    tx.set_ylabel("time / dense model's time")
    tx.set_title("training step (—), inference batch (···)")
    ax.set_title(title or f"{ds.attrs.get('model', '')} · {ds.attrs.get('layers', '')}")
    handles = [Line2D([], [], color=colors[m], marker=_MARKERS.get(m, "o"),
                      label=METHOD_NAMES.get(m, m)) for m in methods]
    handles += [Line2D([], [], color="0.5", marker="o", mfc="white", ls=":",
                       label="after encoding (epoch 0)"),
                Line2D([], [], color="0.5", marker="o", label="after fine-tuning"),
                Line2D([], [], color="0.2", lw=2.5, alpha=0.25, label="Pareto front"),
                Line2D([], [], color="0.3", lw=0.8, label="dense (band: −1 point)")]
    if (ok["fell_below_start"].values > 0).any():
        handles.append(Line2D([], [], color="k", marker="x", ls="none",
                              label="ended below its start"))
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False,
               bbox_to_anchor=(0.5, 0.04))
    missing = ds.sel(variant=~ds["reachable"].values.astype(bool))
    if missing.sizes["variant"]:
        fig.text(0.01, 0.0, "not reachable: " + ", ".join(map(str, missing.variant.values)),
                 fontsize=6, color="0.4", va="bottom")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    return fig


def comparison_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per variant for the report's table (accuracies in %, times relative)."""
    rows = []
    end = final_accuracy(ds)
    for i, name in enumerate(ds.variant.values):
        v = ds.isel(variant=i)
        reach = bool(v["reachable"])
        rows.append({
            "variant": str(name), "method": METHOD_NAMES.get(str(v["method"].values),
                                                             str(v["method"].values)),
            "params": int(v["params_after"]) if reach else None,
            "compression": float(v["compression"]) if reach else None,
            "epoch0": 100 * float(v["accuracy"].isel(epoch=0)) if reach else None,
            "final": 100 * float(end[i]) if reach else None,
            "step_ratio": float(v["step_seconds"] / v["dense_step_seconds"]) if reach else None,
            "inference_ratio": float(v["inference_seconds"] / v["dense_inference_seconds"])
            if reach else None,
            "fell": bool(v["fell_below_start"] > 0) if reach else False,
            "note": "" if reach else str(v["note"].values),
        })
    return rows
