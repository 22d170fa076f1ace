"""Report and paper figures: one pure function per figure, xarray datasets in, Figure out.

Every figure uses the same seaborn style (:func:`style`), the colour-blind-safe
seaborn ``"colorblind"`` palette, and one mapping cut label → colour
(:func:`cut_colors`), so a cut has the same colour in every figure. Widths follow
journal columns: :data:`ONE_COLUMN` (3.4 in) and :data:`TWO_COLUMNS` (7.0 in).

Accuracy after truncation is plotted as the drop in points below the untruncated
baseline on a symlog axis (linear within ±δ), each panel with its own limits, over the
band of tolerated drops (≤ δ) and its sampling margin (δ + z·SE, the tolerance rule of
:mod:`corranalysis.linkage`). Cuts with the same matrix are drawn once and χ_max = 1
cuts left out (:func:`cut_classes`); norm losses and kept fractions are fractions.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence

import matplotlib

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)  # headless by default; Jupyter keeps its inline backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FormatStrFormatter,
    LogLocator,
    NullFormatter,
)

from ..linkage import (  # noqa: E402
    Z_95,
    accuracy_drop,
    curves,
    distinct_cuts,
    kept_fraction,
    scope_trials,
    scoped_sweep,
    single_trials,
    trial_truncation,
    truncated_layers,
)

ONE_COLUMN = 3.4
TWO_COLUMNS = 7.0
PALETTE = "colorblind"
ALL_COLOR = "#222222"
#: The line of a truncation of all cuts of a layer at once (beside one line per cut).
ALL_CUTS_STYLE = {"color": ALL_COLOR, "ls": "-", "marker": "o"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MODE_STYLE = {"dense": {"color": sns.color_palette(PALETTE)[0], "marker": "o", "ls": "-"},
              "projected": {"color": sns.color_palette(PALETTE)[3], "marker": "s", "ls": "--"},
              "local": {"color": sns.color_palette(PALETTE)[2], "marker": "^", "ls": ":"}}
_RC = {"axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
       "legend.fontsize": 7, "legend.title_fontsize": 7, "font.size": 8,
       "lines.linewidth": 1.2, "lines.markersize": 3.5, "pdf.fonttype": 42,
       "ps.fonttype": 42, "figure.dpi": 100}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The figures' seaborn style (whitegrid, paper context), applied only inside the block."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", rc=_RC), \
            plt.rc_context(_RC):
        yield


def styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator: build the figure inside :func:`style`."""
    def wrapper(*args, **kwargs) -> Figure:
        with style():
            return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------- colours


def cut_colors(cuts: Sequence[str]) -> dict[str, dict]:
    """Line style per cut label (colour, linestyle, marker), fixed by the order of ``cuts``.

    Colours come from seaborn's colour-blind palette; past its 10 colours the
    linestyle and marker change too, so every cut stays distinguishable (all cuts at
    once: :data:`ALL_CUTS_STYLE`, dark grey).
    """
    colors = sns.color_palette(PALETTE)
    out: dict[str, dict] = {}
    for i, cut in enumerate(dict.fromkeys(str(c) for c in cuts)):
        j = i // len(colors)
        out[cut] = {"color": colors[i % len(colors)], "ls": LINESTYLES[j % len(LINESTYLES)],
                    "marker": MARKERS[(i + j) % len(MARKERS)]}
    return out


def layer_colors(layers: Sequence[str]) -> dict[str, tuple]:
    """One colour per layer from the colour-blind-safe sequential ``viridis`` map (by depth)."""
    layers = list(dict.fromkeys(str(n) for n in layers))
    cmap = plt.get_cmap("viridis")
    n = max(len(layers) - 1, 1)
    return {name: cmap(0.9 * i / n) for i, name in enumerate(layers)}


def _palette(palette: Mapping[str, dict] | None, cuts: Sequence[str]) -> Mapping[str, dict]:
    return palette if palette is not None else cut_colors(cuts)


def _cut_legend(fig: Figure, palette: Mapping[str, dict], cuts: Sequence[str],
                title: str = "cut", extra: Sequence[Line2D] = ()) -> None:
    """One legend above the panels: the cuts (then ``extra`` handles, e.g. the baseline)."""
    handles = [Line2D([], [], color=palette[c]["color"], ls=palette[c]["ls"],
                      marker=palette[c]["marker"], label=c) for c in cuts] + list(extra)
    if handles:
        ncol = max(1, min(len(handles), int(fig.get_figwidth() // 1.6)))
        fig.legend(handles=handles, title=title, loc="outside upper center", ncol=ncol,
                   frameon=False)


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- spectra


@styled
def spectra_figure(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                   palette: Mapping[str, dict] | None = None,
                   width: float = TWO_COLUMNS) -> Figure:
    """Normalised singular values s_k/s_1 against k/χ_max per layer (log y), one line per
    distinct cut: cuts of a layer with the same matrix are drawn once (named in the panel),
    cuts with χ_max = 1 are left out. Layers and cuts of any size share the axes' scale."""
    cuts = [str(c) for c in spectra["cut"].values]
    pal = _palette(palette, cuts)
    names = _layers(spectra, layers)
    classes = cut_classes(spectra)
    fig, axes = _grid(len(names), width)
    shown: list[str] = []
    for ax, name in zip(axes, names, strict=True):
        present = [c for c in cuts if np.isfinite(float(spectra["chi_max"].sel(layer=name,
                                                                                cut=c)))]
        draw, merged, trivial = _layer_cuts(classes, name, present)
        values = []
        for cut in draw:
            s = np.asarray(spectra["singular_values"].sel(layer=name, cut=cut).values, float)
            chi_max = int(float(spectra["chi_max"].sel(layer=name, cut=cut)))
            s = s[:chi_max] / s[0]
            k = np.arange(1, chi_max + 1) / chi_max
            st = pal[cut]
            ax.plot(k, _log_floor(s, 0.0), color=st["color"], ls=st["ls"], marker=st["marker"],
                    markersize=2 if chi_max < 40 else 0)
            values.append(s)
            shown.append(cut)
        _log_axis(ax, "y")
        if values:
            _low_limit(ax, np.concatenate(values), q=2.0)
        ax.set_xlim(0, 1.02)
        ax.set_title(_layer_title(spectra, name))
        ax.set_xlabel("k / χ$_{max}$")
        ax.set_ylabel("$s_k / s_1$")
        _merge_note(ax, merged, trivial)
    _cut_legend(fig, pal, list(dict.fromkeys(shown)))
    return fig


def normalized_entropy(spectra: xr.Dataset) -> xr.DataArray:
    """S / ln χ_max per (layer, cut): the entropy as a fraction of its largest possible
    value, comparable across cuts of any size; NaN where χ_max ≤ 1 or the cut is absent."""
    chi = spectra["chi_max"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = spectra["entropy"] / np.log(chi.where(chi > 1))
    return out.rename("normalized_entropy").assign_attrs(
        long_name="normalised entropy S / ln χ_max", units="1")


_TRIVIAL_GREY, _MERGED_GREY = "0.78", "0.92"


@styled
def entropy_heatmap(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                    variable: str = "normalized_entropy", width: float = TWO_COLUMNS) -> Figure:
    """Heat map layer × cut of the normalised entropy S / ln χ_max (0: rank one, 1: flat
    spectrum; ``variable`` picks another spectra variable). Grey cells: χ_max = 1 (dark,
    "χ=1") and labels with the same matrix as an earlier column ("= n"); blank where a
    layer lacks the cut."""
    names = _layers(spectra, layers)
    data = (normalized_entropy(spectra) if variable == "normalized_entropy"
            else spectra[variable]).sel(layer=names).transpose("layer", "cut")
    cuts = [str(c) for c in data["cut"].values]
    classes = cut_classes(spectra).sel(layer=names)
    eq = classes["equivalent_to"].transpose("layer", "cut").values
    trivial = classes["trivial"].transpose("layer", "cut").values
    merged = (eq != np.array(cuts)[None, :]) & (eq != "") & ~trivial
    values = np.asarray(data.values, dtype=float)
    show = np.isfinite(values) & ~merged & ~trivial
    height = min(0.28 * len(names) + 1.9, 20.0)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    annot = len(names) <= 30 and len(cuts) <= 12
    normalised = variable == "normalized_entropy"
    units = data.attrs.get("units", "nats")
    shown = values[show]
    vmin = (math.floor(10 * float(shown.min())) / 10 if shown.size else 0.0) if normalised \
        else None
    label = ("normalised entropy S / ln χ$_{max}$ (1: flat spectrum)" if normalised
             else f"{data.attrs.get('long_name', variable)} ({units})")
    sns.heatmap(np.where(show, values, np.nan), ax=ax, cmap="viridis", annot=annot, fmt=".2f",
                annot_kws={"fontsize": 6}, mask=~show, vmin=vmin, vmax=1 if normalised else None,
                linewidths=0.4, linecolor="white", cbar_kws={"label": label},
                xticklabels=[f"{j + 1}: {c}" for j, c in enumerate(cuts)], yticklabels=names)
    for i, j in zip(*np.nonzero(trivial | merged), strict=True):
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=_TRIVIAL_GREY if trivial[i, j]
                               else _MERGED_GREY, edgecolor="white", lw=0.4))
        if annot:
            text = "χ=1" if trivial[i, j] else f"= {cuts.index(str(eq[i, j])) + 1}"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=6, color="0.3")
    ax.grid(False)
    ax.set_xlabel("cut (grey: χ$_{max}$ = 1, or \"= n\": the same matrix as cut n)")
    ax.set_ylabel("layer")
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=35)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    return fig


@styled
def norm_loss_figure(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                     palette: Mapping[str, dict] | None = None,
                     width: float = TWO_COLUMNS) -> Figure:
    """Norm loss against kept fraction χ/χ_max per layer (log y, each panel its own range),
    one line per distinct cut; the last few values near full rank (down to 1e-11) run off
    the bottom rather than squash the rest."""
    cuts = [str(c) for c in spectra["cut"].values]
    pal = _palette(palette, cuts)
    names = _layers(spectra, layers)
    classes = cut_classes(spectra)
    fig, axes = _grid(len(names), width)
    shown: list[str] = []
    k = np.asarray(spectra["k"].values, dtype=float)
    for ax, name in zip(axes, names, strict=True):
        present = [c for c in cuts if np.isfinite(float(spectra["chi_max"].sel(layer=name,
                                                                                cut=c)))]
        draw, merged, trivial = _layer_cuts(classes, name, present)
        values = []
        for cut in draw:
            chi_max = float(spectra["chi_max"].sel(layer=name, cut=cut))
            nl = np.asarray(spectra["norm_loss"].sel(layer=name, cut=cut).values, dtype=float)
            ok = k <= chi_max
            st = pal[cut]
            ax.plot(k[ok] / chi_max, _log_floor(nl[ok]), color=st["color"], ls=st["ls"],
                    marker=st["marker"], markersize=2 if ok.sum() < 40 else 0)
            values.append(_log_floor(nl[ok]))
            shown.append(cut)
        _log_axis(ax, "y")
        if values:
            _low_limit(ax, np.concatenate(values))
        ax.set_xlim(0, 1.02)
        ax.set_title(_layer_title(spectra, name))
        ax.set_xlabel("kept fraction χ/χ$_{max}$")
        ax.set_ylabel("norm loss (of ‖W‖²)")
        _merge_note(ax, merged, trivial)
    _cut_legend(fig, pal, list(dict.fromkeys(shown)))
    return fig


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
    """Log x axis of compression ratios, at most 4 ticks as 1×, 2×, …; call after plotting."""
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    for cands in ((0.5, 0.75, 1, 1.5, 2, 3, 4), (0.5, 1, 2, 5, 10, 20, 50),
                  (1, 3, 10, 30, 100, 300, 1000), (1, 10, 100, 1000, 10000)):
        ticks = [t for t in cands if lo <= t <= hi]
        if len(ticks) <= 4 and (len(ticks) >= 2 or cands[-1] > hi):
            break
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g×"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _kind_handles(kinds: Sequence[str]) -> list[Line2D]:
    labels = {"frac": "frac= keeps (χ = f·χ$_{max}$)",
              "loss": "loss= keeps (norm loss ≤ ε per cut)", "chi": "chi= keeps"}
    return [Line2D([], [], color="0.3", ls=KEEP_STYLE[k]["ls"], marker="o",
                   mfc=KEEP_STYLE[k]["mfc"] or "0.3", label=labels[k])
            for k in dict.fromkeys(kinds) if k in KEEP_STYLE]


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


# --------------------------------------------------------------------------- compression


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
    colors = sns.color_palette(PALETTE)
    fixed = {"truncation (SVD)": colors[0], "truncation (data-aware)": colors[2]}
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
    points = {**_compression_points(sweep, total), **_extra_points(extra, total, base)}
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
            is_extra = not method.startswith("truncation")
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
    handles = [Line2D([], [], color=colors[m], marker="*" if not m.startswith("truncation")
                      else "o", ls="-" if m.startswith("truncation") else "none",
                      label=f"{m}{', Pareto front' if m.startswith('truncation') else ''}")
               for m in points if points[m][3].size]
    fig.legend(handles=handles + _drop_handles(delta, margin, z), loc="outside upper center",
               ncol=2 if width < 5 else 3, frameon=False)
    return fig


# --------------------------------------------------------------------------- central


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
    points = {**_compression_points(sweep, tot),
              **_extra_points(extra, tot, base)}
    method_colors = _method_colors(list(points))
    cdrops = []
    for method, (_, _, net, dr) in points.items():
        col = method_colors[method]
        if not dr.size:
            continue
        if method.startswith("truncation"):
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


# --------------------------------------------------------------------------- linkage

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


# --------------------------------------------------------------------------- recovery


@styled
def recovery_figure(recovery: xr.Dataset, width: float = TWO_COLUMNS) -> Figure:
    """(a) test accuracy per epoch of re-training, one line per mode (dense / projected /
    local); (b) the same against wall time, where recorded; (c) drift of the truncated
    kernels from the truncated start."""
    modes = ([str(m) for m in recovery["mode"].values] if "mode" in recovery.dims
             else [str(recovery.attrs.get("mode", "dense"))])
    timed = "seconds" in recovery
    fig, axes = plt.subplots(1, 3 if timed else 2, figsize=(width, 2.6 if width > 5 else 1.9),
                             layout="constrained")
    a, b = axes[0], axes[-1]
    base = recovery.attrs.get("baseline_accuracy")
    for mode in modes:
        part = recovery.sel(mode=mode) if "mode" in recovery.dims else recovery
        st = MODE_STYLE.get(mode, {"color": ALL_COLOR, "marker": "^", "ls": "-."})
        epochs = part["epoch"].values
        a.plot(epochs, 100 * part["accuracy"].values, label=mode, **st)
        if timed:
            axes[1].plot(part["seconds"].values, 100 * part["accuracy"].values, label=mode,
                         **st)
        if "drift" in part:
            drift = part["drift"].values
            b.plot(epochs, drift.mean(axis=-1) if drift.ndim > 1 else drift, label=mode, **st)
    if base is not None:
        _baseline(a, float(base))
        a.legend(handles=[*a.get_legend_handles_labels()[0], *_baseline_handles(None)],
                 loc="best")
    a.set_xlabel("epoch of re-training (0 = truncated)")
    a.set_ylabel("test accuracy (%)")
    a.set_title("(a) recovery")
    a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if timed:
        axes[1].set_xlabel("wall time of re-training (s)")
        axes[1].set_ylabel("test accuracy (%)")
        axes[1].set_title("(b) recovery against time")
        if base is not None:
            _baseline(axes[1], float(base))
    b.set_xlabel("epoch of re-training")
    b.set_ylabel(r"drift $\|W_e - \tilde W_0\| / \|\tilde W_0\|$ (1)")
    b.set_title(f"({'c' if timed else 'b'}) drift from the truncated kernels")
    b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    b.legend(loc="best")
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


# --------------------------------------------------------------------------- tensorize


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


# --------------------------------------------------------------------------- training


@styled
def training_figure(metrics: xr.Dataset, width: float = ONE_COLUMN) -> Figure:
    """Training and test accuracy per epoch of the original training."""
    fig, ax = plt.subplots(figsize=(width, 2.3), layout="constrained")
    colors = sns.color_palette(PALETTE)
    for i, var in enumerate(("train_accuracy", "test_accuracy")):
        if var in metrics:
            ax.plot(metrics["epoch"].values, 100 * metrics[var].values, marker="o",
                    color=colors[i + 1], label=var.split("_")[0])
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0.5, max(float(metrics["epoch"].max()), 1.0) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="lower right")
    ax.set_title("training")
    return fig


# --------------------------------------------------------------------------- all figures


def figure_makers(datasets: Mapping[str, xr.Dataset], width: float | None = None,
                  layers: Sequence[str] | None = None, *,
                  total_params: float | None = None) -> dict[str, Callable[[], Figure]]:
    """A function drawing each figure the ``datasets`` allow, by file stem, in the order of
    the report's sections (``central``, on the report's first screen, leads the sweep's).

    ``datasets``: any of ``spectra``, ``sweep``, ``linkage``, ``recovery``,
    ``tensorize``, ``metrics``, and ``comparison`` or ``compare`` (extra points of the
    compression figures, see :func:`compression_figure`). ``width``: force one width (default: each
    figure's own, two columns for the multi-panel ones, one column for the rest).
    ``total_params``: the whole network's parameters (default: the truncated kernels').
    """
    spectra, sw, lk = datasets.get("spectra"), datasets.get("sweep"), datasets.get("linkage")
    cuts: list[str] = []
    for ds in (spectra, lk):
        if ds is not None:
            cuts += [str(c) for c in ds["cut"].values]
    if sw is not None:  # the trials along one cut
        cuts += [cut for scope in ("layer", "all-layers")
                 for _, cut in curves(scope_trials(sw, scope))]
    pal = cut_colors(list(dict.fromkeys(cuts)))
    delta = float(lk.attrs.get("delta_points", 1.0)) if lk is not None else 1.0
    z = float(lk.attrs.get("z", Z_95)) if lk is not None else Z_95
    merge = lk if lk is not None else spectra
    extra = datasets.get("comparison", datasets.get("compare"))
    two = width or TWO_COLUMNS
    one = width or ONE_COLUMN
    makers: list[tuple[str, Callable[[], Figure]]] = []
    if "metrics" in datasets:
        makers.append(("training", lambda: training_figure(datasets["metrics"], width=one)))
    if spectra is not None:
        makers += [
            ("spectra", lambda: spectra_figure(spectra, layers, pal, width=two)),
            ("entropy", lambda: entropy_heatmap(spectra, layers, width=two)),
            ("norm_loss", lambda: norm_loss_figure(spectra, layers, pal, width=two)),
        ]
    sized = sw is not None and "params_dense" in sw and "params_factorized" in sw
    if sized and lk is not None:  # the first screen's figure leads the sweep's
        makers.append(("central", lambda: central_figure(sw, lk, width=two,
                                                         total_params=total_params,
                                                         extra=extra)))
    if sw is not None:
        makers += [
            ("accuracy_vs_norm_loss",
             lambda: accuracy_vs_norm_loss(sw, layers, pal, delta, width=two, cuts=merge, z=z)),
            ("accuracy_vs_kept_fraction",
             lambda: accuracy_vs_kept_fraction(sw, spectra, layers, pal, delta, width=two,
                                               z=z)),
            ("combined_truncations",
             lambda: combined_truncations(sw, pal, delta, width=two, z=z)),
        ]
    if sized:
        makers.append(("compression",
                       lambda: compression_figure(sw, layers, delta, width=two, extra=extra,
                                                  total_params=total_params, z=z)))
    if lk is not None:
        makers.append(("tolerance", lambda: tolerance_figure(lk, pal, width=two)))
        makers.append(("depth", lambda: depth_figure({"this model": lk},
                                                     width=one if width else ONE_COLUMN)))
    if "recovery" in datasets:
        makers.append(("recovery", lambda: recovery_figure(datasets["recovery"], width=two)))
    if "tensorize" in datasets and sw is not None:
        makers.append(("tensorize", lambda: tensorize_figure(datasets["tensorize"], sw, pal,
                                                             width=one)))
    return dict(makers)


def save_figure(fig: Figure, stem: str | object, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[str]:
    """Write ``fig`` as ``stem.<fmt>`` for each format (PDF/SVG are vector) at its exact
    size (the width stays a journal column width); close it."""
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        with style():
            fig.savefig(path, dpi=dpi, bbox_inches=None,
                        metadata={"Creator": "corranalysis"} if fmt in ("pdf", "png") else None)
        paths.append(path)
    plt.close(fig)
    return paths


__all__ = [
    "ALL_CUTS_STYLE", "ONE_COLUMN", "TWO_COLUMNS", "accuracy_vs_kept_fraction",
    "accuracy_vs_norm_loss", "central_figure", "combined_truncations", "compression_figure",
    "cut_classes", "cut_colors", "depth_figure", "entropy_heatmap", "figure_makers",
    "layer_colors", "layer_role", "network_ratio", "norm_loss_figure", "normalized_entropy",
    "paired_drop", "pareto_front", "recovery_figure", "save_figure", "spectra_figure",
    "style", "tensorize_figure", "tolerance_figure", "training_figure", "truncated_params",
]
