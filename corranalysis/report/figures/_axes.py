"""Panel helpers shared by the figures: grids, log and symlog axes, cut classes, the accuracy-
drop axis with its δ band and sampling margin.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FormatStrFormatter, LogLocator, NullFormatter

from ...linkage import (
    accuracy_drop,
    distinct_cuts,
)


def _grid(n: int, width: float, row_height: float = 1.9,
          sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """``n`` panels in rows of up to 3 (2 below 5 in width); the unused panels removed."""
    ncols = max(1, min(n, 2 if width < 5 else 3))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows + 0.3),
                             squeeze=False, sharey=sharey, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _layers(ds: xr.Dataset, layers: Sequence[str] | None) -> list[str]:
    names = [str(n) for n in ds["layer"].values]
    if layers is None:
        return names
    return [n for n in names if n in {str(x) for x in layers}]


def _layer_title(ds: xr.Dataset, name: str) -> str:
    extra = []
    for coord in ("kind", "shape"):
        if coord in ds.coords and "layer" in ds[coord].dims:
            extra.append(str(ds[coord].sel(layer=name).values))
    return f"layer {name}" + (f"\n{' '.join(extra)}" if extra else "")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7,
            color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _baseline(ax: Axes, accuracy: float, delta: float | None = None) -> None:
    ax.axhline(100 * accuracy, color="0.35", lw=0.9, ls="--", zorder=0)
    if delta is not None:
        ax.axhline(100 * accuracy - delta, color="0.6", lw=0.8, ls=":", zorder=0)


def _baseline_handles(delta: float | None) -> list[Line2D]:
    out = [Line2D([], [], color="0.35", lw=0.9, ls="--", label="baseline")]
    if delta is not None:
        out.append(Line2D([], [], color="0.6", lw=0.8, ls=":", label=f"baseline − {delta:g} pt"))
    return out


def _curve(rows: xr.Dataset, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, accuracy %) of ``rows`` sorted by x, duplicates of x averaged."""
    xs = np.asarray(rows[x].values, dtype=float)
    acc = 100 * np.asarray(rows["accuracy"].values, dtype=float)
    keys = np.unique(xs[np.isfinite(xs)])
    return keys, np.array([acc[xs == k].mean() for k in keys])


def _nl_label(width: float, what: str = "") -> str:
    """The norm-loss axis label; short in one-column figures."""
    return f"norm loss{what} (fraction of ‖W‖²)" if width >= 5 else f"norm loss{what}"


def _log_axis(ax: Axes, axis: str = "x") -> None:
    """Log scale with labelled decades only (1, 2, 5 × 10^n when the data span less than a
    decade); call after plotting."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.dataLim.intervalx if axis == "x" else ax.dataLim.intervaly
    if 0 < lo < hi < 15 * lo:  # less than about a decade: label 1, 2, 5 × 10^n
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(FormatStrFormatter("%g"))
    else:
        target.set_major_locator(LogLocator(base=10, numticks=6))
    target.set_minor_formatter(NullFormatter())


def _log_floor(values: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    return np.where(values > floor, values, np.nan)


# --------------------------------------------------------------------------- cut classes


def cut_classes(ds: xr.Dataset) -> xr.Dataset:
    """Which cuts of each layer a figure draws, from a link or a spectra dataset.

    Returns ``equivalent_to(layer, cut)`` (the first label matricising the kernel to the
    same matrix, "" where the layer lacks the cut) and ``trivial(layer, cut)`` (χ_max = 1:
    nothing to truncate). A link dataset brings its own ``equivalent_to``; for a spectra
    dataset it comes from :func:`corranalysis.linkage.distinct_cuts`. Figures draw each
    class once, under its first label, and leave trivial cuts out, saying so in the panel.
    """
    if "equivalent_to" in ds:
        eq = ds["equivalent_to"]
        chi = np.exp(ds["log_chi_max"]) if "log_chi_max" in ds else ds.get("chi_max")
    else:
        eq, chi = distinct_cuts(ds)["equivalent_to"], ds["chi_max"]
    eq = eq.transpose("layer", "cut").astype(str)
    trivial = (np.isclose(chi.transpose("layer", "cut").values, 1.0) if chi is not None
               else np.zeros(eq.shape, bool))
    return xr.Dataset({"equivalent_to": eq, "trivial": (("layer", "cut"), trivial)})


def _layer_cuts(classes: xr.Dataset | None, name: str,
                cuts: Sequence[str]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(cuts to draw, first label → the labels merged into it, trivial cuts) of layer
    ``name`` among ``cuts``; all of them drawn without ``classes`` for the layer."""
    if classes is None or name not in {str(n) for n in classes["layer"].values}:
        return list(cuts), {}, []
    known = {str(c) for c in classes["cut"].values}
    eq, triv = classes["equivalent_to"].sel(layer=name), classes["trivial"].sel(layer=name)
    draw: list[str] = []
    merged: dict[str, list[str]] = {}
    trivial: list[str] = []
    for cut in cuts:
        rep = str(eq.sel(cut=cut).values) if cut in known else cut
        if cut in known and bool(triv.sel(cut=cut)):
            trivial.append(cut)
        elif rep in ("", cut) or rep not in cuts:
            draw.append(cut)
        else:
            merged.setdefault(rep, []).append(cut)
    return draw, merged, trivial


def _merge_note(ax: Axes, merged: Mapping[str, list[str]], trivial: Sequence[str],
                loc: str = "lower left") -> None:
    """Say in the panel which cut labels were drawn as one and which were left out."""
    lines = [" ≡ ".join([rep, *dups]) for rep, dups in merged.items()]
    if trivial:
        lines.append(f"χmax = 1, not drawn: {', '.join(trivial)}")
    lines = [textwrap.fill(line, 44, subsequent_indent="  ", break_long_words=False)
             for line in lines]
    if lines:
        y, va = (0.03, "bottom") if loc.startswith("lower") else (0.97, "top")
        x, ha = (0.03, "left") if loc.endswith("left") else (0.97, "right")
        ax.text(x, y, "\n".join(lines), transform=ax.transAxes, fontsize=5, color="0.3",
                ha=ha, va=va, zorder=5,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})


def _low_limit(ax: Axes, values: np.ndarray, q: float = 5.0) -> None:
    """Lower limit of a log y axis at the decade below the q-th percentile of the positive
    ``values`` when the rest reach more than two decades further, so that a few tiny values
    (1e-11 at full rank) do not squash the others; the smallest value, when off scale, is
    named in the panel."""
    pos = values[np.isfinite(values) & (values > 0)]
    if not pos.size:
        return
    floor = 10.0 ** math.floor(math.log10(float(np.percentile(pos, q))))
    if pos.min() < floor / 100:
        ax.set_ylim(bottom=floor)
        ax.text(0.97, 0.03, f"↓ down to {pos.min():.0e}", transform=ax.transAxes, fontsize=5,
                color="0.4", ha="right", va="bottom")


# --------------------------------------------------------------------------- accuracy drop

#: The region of tolerated drops (drop ≤ δ) and the sampling margin above it.
BAND_COLOR, MARGIN_COLOR = "#d4ecd9", "#8fc79c"
KEEP_STYLE = {"frac": {"ls": "-", "mfc": None}, "loss": {"ls": "--", "mfc": "white"},
              "chi": {"ls": ":", "mfc": "white"}}


def paired_drop(trials: xr.Dataset, baseline: float | None = None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Each trial's accuracy drop (points below ``baseline``, default the sweep's) and the
    standard error of that drop (points) from the paired per-image differences
    d = baseline_correct − correct over the images the trial was evaluated on: the SE of
    the tolerance rule D − z·SE > δ (:mod:`corranalysis.linkage`). SE is NaN without
    per-image results."""
    drop = accuracy_drop(trials, baseline)
    se = np.full(drop.shape, np.nan)
    if "correct" in trials and "baseline_correct" in trials and drop.size:
        c = np.asarray(trials["correct"].transpose("trial", "image").values, dtype=float)
        b = np.asarray(trials["baseline_correct"].values, dtype=float)[None, :]
        ok = (c >= 0) & (b >= 0)  # NaN compares False: not evaluated
        d = np.where(ok, b - np.where(ok, c, 0.0), 0.0)
        n = ok.sum(axis=1).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = d.sum(axis=1) / n
            var = ((d * d).sum(axis=1) - n * mean * mean) / (n - 1)
            se = np.where(n > 1, 100.0 * np.sqrt(np.maximum(var, 0.0) / n), np.nan)
    return drop, se


def _sampling_margin(sweep: xr.Dataset, delta: float, z: float) -> float:
    """z × the median SE of the sweep's trials whose drop is near δ (of all its trials when
    none is): how far above δ an observed drop can lie and still count as tolerated; 0
    without per-image results. One margin for every figure of a sweep."""
    drop, se = paired_drop(sweep)
    ok = np.isfinite(se)
    near = ok & (drop > 0) & (drop <= 4 * max(delta, 0.25))
    pick = near if near.any() else ok
    return float(z * np.median(se[pick])) if pick.any() else 0.0


def _keep_kind(rows: xr.Dataset) -> np.ndarray:
    """``frac``, ``loss`` or ``chi`` per trial, from its keep label."""
    return np.array([str(k).split("=")[0] for k in rows["keep"].values])


def _by_kind(rows: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    """``rows`` split by keep kind (frac=, loss=, chi=): series that must not be joined."""
    kind = _keep_kind(rows)
    return [(k, rows.isel(trial=np.flatnonzero(kind == k))) for k in dict.fromkeys(kind)]


def _averaged(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """The finite values of ``x`` sorted, each ``y`` averaged over equal x."""
    keys = np.unique(x[np.isfinite(x)])
    return (keys, *(np.array([np.nanmean(y[x == k]) if np.isfinite(y[x == k]).any()
                              else np.nan for k in keys]) for y in ys))


def _drop_curve(rows: xr.Dataset, x: np.ndarray, base: float,
                log_x: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, drop, SE) of one series, sorted by x, equal x averaged; x ≤ 0 left out on a log
    axis (a truncation that removes nothing sits at drop 0)."""
    drop, se = paired_drop(rows, base)
    x = np.where(x > 0, x, np.nan) if log_x else np.asarray(x, dtype=float)
    return _averaged(np.asarray(x, dtype=float), drop, se)


def _drop_axis(ax: Axes, drops: np.ndarray, delta: float, margin: float) -> None:
    """Symlog y axis of accuracy drop in points, linear within ±δ, limits from this panel's
    data (and the δ band); the tolerated region (drop ≤ δ) shaded, the sampling margin
    above δ hatched, the baseline (0) dashed."""
    lin = delta if delta > 0 else 1.0
    d = drops[np.isfinite(drops)]
    lo = min(float(d.min()) if d.size else 0.0, -0.3 * lin)
    hi = max(float(d.max()) if d.size else 0.0, delta + margin + 0.2 * lin)
    lo = lo * 1.4 if lo < -lin else lo - 0.2 * lin
    hi = min(hi * 1.4 if hi > lin else hi + 0.2 * lin, 110.0)
    ax.set_yscale("symlog", linthresh=lin, linscale=1.0)
    ax.set_ylim(lo, hi)
    ax.axhspan(lo, delta, color=BAND_COLOR, lw=0, zorder=0)
    if margin > 0:
        ax.axhspan(delta, delta + margin, facecolor="none", edgecolor=MARGIN_COLOR,
                   hatch="////", lw=0, zorder=0)
    ax.axhline(0, color="0.35", lw=0.9, ls="--", zorder=1)
    steps = (1, 3, 10, 30, 100) if max(hi, -lo) > 25 * lin else (1, 2, 5, 10, 20)
    ticks = [t for t in (0, 0.5 * lin, *(-lin * v for v in steps), *(lin * v for v in steps),
                         -0.5 * lin) if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("accuracy drop (points)")


def _drop_handles(delta: float, margin: float, z: float) -> list:
    """Legend handles of the baseline, the tolerated band and the sampling margin."""
    out: list = [Line2D([], [], color="0.35", lw=0.9, ls="--", label="baseline (no drop)"),
                 Patch(color=BAND_COLOR, label=f"drop ≤ δ = {delta:g} pt")]
    if margin > 0:
        out.append(Patch(facecolor="none", edgecolor=MARGIN_COLOR, hatch="////",
                         label=f"up to δ + {z:g}·SE ≈ {delta + margin:.2g} pt: "
                               "within δ given sampling error"))
    return out


def _ratio_axis(ax: Axes) -> None:
    """Log x axis of compression ratios, 2 to 5 ticks as 1×, 2×, … spanning most of the
    range (the first tick set that covers at least 60 % of it in log); call after plotting."""
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks: list[float] = []
    for cands in ((0.5, 0.75, 1, 1.5, 2, 3, 4), (0.5, 1, 2, 5, 10, 20, 50),
                  (1, 3, 10, 30, 100, 300, 1000), (1, 10, 100, 1000, 10000),
                  (1, 100, 10**4, 10**6)):
        inside = [t for t in cands if lo <= t <= hi]
        covers = (len(inside) >= 2 and hi > lo > 0
                  and math.log(inside[-1] / inside[0]) >= 0.6 * math.log(hi / lo))
        if inside and len(inside) <= 5 and (covers or cands[-1] > hi):
            ticks = inside
            break
    if len(ticks) < 2 and hi > lo > 0:  # a narrow range: three ticks inside it
        ticks = sorted({float(f"{t:.2g}") for t in np.geomspace(lo, hi, 5)[1:-1]})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g×"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _kind_handles(kinds: Sequence[str]) -> list[Line2D]:
    labels = {"frac": "frac= keeps (χ = f·χ$_{max}$)",
              "loss": "loss= keeps (norm loss ≤ ε per cut)", "chi": "chi= keeps"}
    return [Line2D([], [], color="0.3", ls=KEEP_STYLE[k]["ls"], marker="o",
                   mfc=KEEP_STYLE[k]["mfc"] or "0.3", label=labels[k])
            for k in dict.fromkeys(kinds) if k in KEEP_STYLE]


def _depth_layer_handles(fig: Figure, ax: Axes, names: Sequence[str],
                         colors: Mapping[str, tuple]) -> list[Line2D]:
    """Layer colours (by depth): legend handles for a few layers; a colour bar beside
    ``ax`` for many."""
    if len(names) <= 6:
        return [Line2D([], [], color=colors[n], marker="o", markersize=2, label=n)
                for n in names]
    sm = matplotlib.cm.ScalarMappable(cmap=matplotlib.colors.ListedColormap(
        [colors[n] for n in names]), norm=matplotlib.colors.Normalize(-0.5, len(names) - 0.5))
    bar = fig.colorbar(sm, ax=ax, pad=0.01, fraction=0.05, aspect=30)
    bar.set_ticks([0, len(names) - 1], labels=["first", "last"])
    bar.ax.tick_params(labelsize=5.5)
    bar.set_label("layer depth", fontsize=6)
    return []
