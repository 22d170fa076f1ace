"""Report and paper figures: one pure function per figure, xarray datasets in, Figure out.

Every figure uses the same seaborn style (:func:`style`), the colour-blind-safe
seaborn ``"colorblind"`` palette, and one mapping cut label → colour
(:func:`cut_colors`), so a cut has the same colour in every figure. Widths follow
journal columns: :data:`ONE_COLUMN` (3.4 in) and :data:`TWO_COLUMNS` (7.0 in).
Accuracies are plotted in percent; norm losses and kept fractions are fractions.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
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
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

from ..linkage import (  # noqa: E402
    accuracy_ci,
    curves,
    kept_fraction,
    scope_trials,
    single_trials,
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


# --------------------------------------------------------------------------- spectra


@styled
def spectra_figure(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                   palette: Mapping[str, dict] | None = None,
                   width: float = TWO_COLUMNS) -> Figure:
    """Singular values s_k against k per layer (log scale), one line per cut."""
    cuts = [str(c) for c in spectra["cut"].values]
    pal = _palette(palette, cuts)
    names = _layers(spectra, layers)
    fig, axes = _grid(len(names), width)
    shown: list[str] = []
    for ax, name in zip(axes, names, strict=True):
        for cut in cuts:
            s = spectra["singular_values"].sel(layer=name, cut=cut).values
            s = _log_floor(np.asarray(s, dtype=float), 0.0)
            if not np.isfinite(s).any():
                continue
            k = spectra["k"].values
            st = pal[cut]
            ax.plot(k, s, color=st["color"], ls=st["ls"], marker=st["marker"],
                    markersize=2 if np.isfinite(s).sum() < 40 else 0)
            shown.append(cut)
        _log_axis(ax, "y")
        ax.set_title(_layer_title(spectra, name))
        ax.set_xlabel("index k")
        ax.set_ylabel("singular value $s_k$ (weight u.)")
    _cut_legend(fig, pal, list(dict.fromkeys(shown)))
    return fig


@styled
def entropy_heatmap(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                    variable: str = "entropy", width: float = TWO_COLUMNS) -> Figure:
    """Heat map layer × cut of the entanglement entropy (nats); blank where a cut does not exist."""
    names = _layers(spectra, layers)
    data = spectra[variable].sel(layer=names).transpose("layer", "cut")
    cuts = [str(c) for c in data["cut"].values]
    height = min(0.28 * len(names) + 1.8, 20.0)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    units = spectra[variable].attrs.get("units", "nats")
    annot = len(names) <= 30 and len(cuts) <= 12
    sns.heatmap(data.values, ax=ax, cmap="viridis", annot=annot, fmt=".2f",
                annot_kws={"fontsize": 6}, mask=~np.isfinite(data.values),
                xticklabels=cuts, yticklabels=names, linewidths=0.4, linecolor="white",
                cbar_kws={"label": f"{data.attrs.get('long_name', variable)} ({units})"})
    ax.grid(False)
    ax.set_xlabel("cut")
    ax.set_ylabel("layer")
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=35)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    return fig


@styled
def norm_loss_figure(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                     palette: Mapping[str, dict] | None = None,
                     width: float = TWO_COLUMNS) -> Figure:
    """Norm loss against kept fraction χ/χ_max per layer (log scale), one line per cut."""
    cuts = [str(c) for c in spectra["cut"].values]
    pal = _palette(palette, cuts)
    names = _layers(spectra, layers)
    fig, axes = _grid(len(names), width, sharey=True)
    shown: list[str] = []
    for ax, name in zip(axes, names, strict=True):
        for cut in cuts:
            chi_max = float(spectra["chi_max"].sel(layer=name, cut=cut))
            if not np.isfinite(chi_max):
                continue
            nl = np.asarray(spectra["norm_loss"].sel(layer=name, cut=cut).values, dtype=float)
            k = np.asarray(spectra["k"].values, dtype=float)
            ok = k <= chi_max
            st = pal[cut]
            ax.plot(k[ok] / chi_max, _log_floor(nl[ok]), color=st["color"], ls=st["ls"],
                    marker=st["marker"], markersize=2 if ok.sum() < 40 else 0)
            shown.append(cut)
        _log_axis(ax, "y")
        ax.set_xlim(0, 1.02)
        ax.set_title(_layer_title(spectra, name))
        ax.set_xlabel("kept fraction χ/χ$_{max}$")
        ax.set_ylabel("norm loss (of ‖W‖²)")
    _cut_legend(fig, pal, list(dict.fromkeys(shown)))
    return fig


# --------------------------------------------------------------------------- sweep


def _accuracy_panels(single: xr.Dataset, x: str, log_x: bool, xlabel: str,
                     sweep: xr.Dataset, layers: Sequence[str] | None,
                     palette: Mapping[str, dict] | None, delta: float | None,
                     width: float) -> Figure:
    """Test accuracy against ``single[x]``: a panel per layer, a line per cut."""
    groups = curves(single)
    cuts = list(dict.fromkeys(cut for _, cut in groups))
    pal = _palette(palette, cuts)
    names = [n for n in dict.fromkeys(name for name, _ in groups)
             if layers is None or n in {str(v) for v in layers}]
    base = float(sweep.attrs["baseline_accuracy"])
    fig, axes = _grid(max(len(names), 1), width, sharey=True)
    if not names:
        _empty(axes[0], "no single-layer trials in the sweep")
        return fig
    shown: list[str] = []
    ci = accuracy_ci(single) if "correct" in single and single.sizes["trial"] else None
    for ax, name in zip(axes, names, strict=True):
        for cut, rows in ((c, r) for (n, c), r in groups.items() if n == name):
            xs, ys = _curve(rows, x)
            st = pal[cut]
            ax.plot(_log_floor(xs) if log_x else xs, ys, color=st["color"], ls=st["ls"],
                    marker=st["marker"])
            if ci is not None:  # the 95 % bootstrap interval over test images
                band = ci.sel(trial=rows["trial"].values)
                lo = _curve(rows.assign(accuracy=band["accuracy_low"]), x)[1]
                hi = _curve(rows.assign(accuracy=band["accuracy_high"]), x)[1]
                ax.fill_between(_log_floor(xs) if log_x else xs, lo, hi, color=st["color"],
                                alpha=0.15, lw=0)
            shown.append(cut)
        _baseline(ax, base, delta)
        if log_x:
            _log_axis(ax, "x")
        else:
            ax.set_xlim(0, 1.02)
        ax.set_title(f"layer {name}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
    _cut_legend(fig, pal, list(dict.fromkeys(shown)), extra=_baseline_handles(delta))
    return fig


@styled
def accuracy_vs_norm_loss(sweep: xr.Dataset, layers: Sequence[str] | None = None,
                          palette: Mapping[str, dict] | None = None, delta: float | None = 1.0,
                          width: float = TWO_COLUMNS) -> Figure:
    """Test accuracy against norm loss per layer, one line per cut (single-cut truncations).

    The study's central figure. Dashed: the untruncated baseline; dotted: baseline − δ.
    Trials with zero norm loss sit on the baseline and are not drawn on the log axis.
    """
    return _accuracy_panels(single_trials(sweep), "norm_loss", True, _nl_label(width), sweep,
                            layers, palette, delta, width)


@styled
def accuracy_vs_kept_fraction(sweep: xr.Dataset, spectra: xr.Dataset | None = None,
                              layers: Sequence[str] | None = None,
                              palette: Mapping[str, dict] | None = None,
                              delta: float | None = 1.0, width: float = TWO_COLUMNS) -> Figure:
    """Test accuracy against kept fraction χ/χ_max per layer, one line per cut."""
    single = single_trials(sweep)
    single = single.assign(kept=("trial", kept_fraction(single, spectra)))
    return _accuracy_panels(single, "kept", False, "kept fraction χ/χ$_{max}$", sweep, layers,
                            palette, delta, width)


@styled
def combined_truncations(sweep: xr.Dataset, palette: Mapping[str, dict] | None = None,
                         delta: float | None = 1.0, width: float = TWO_COLUMNS) -> Figure:
    """Left: all cuts of one layer at once (a line per layer). Right: one cut in all layers
    at once (a line per cut). Test accuracy against norm loss (mean over truncated layers)."""
    base = float(sweep.attrs["baseline_accuracy"])
    all_cuts = curves(scope_trials(sweep, "all-cuts"))
    all_layers = curves(scope_trials(sweep, "all-layers"))
    cuts = list(dict.fromkeys(cut for _, cut in all_layers))
    pal = _palette(palette, cuts)
    narrow = width < 5
    fig, (left, right) = plt.subplots(2 if narrow else 1, 1 if narrow else 2,
                                      figsize=(width, 5.0 if narrow else 2.8),
                                      sharey=True, layout="constrained")
    if all_cuts:
        names = list(dict.fromkeys(name for name, _ in all_cuts))
        colors = layer_colors(names)
        for (name, _), rows in all_cuts.items():
            x, y = _curve(rows, "norm_loss")
            left.plot(_log_floor(x), y, color=colors[name], marker="o", label=f"layer {name}")
        left.legend(title="all cuts of", loc="lower left", ncol=1 + len(names) // 8,
                    fontsize=6 if narrow else None)
        _baseline(left, base, delta)
        _log_axis(left, "x")
    else:
        _empty(left, "no all-cuts trials in the sweep")
    left.set_title("all cuts of one layer at once")
    if all_layers:
        for (_, cut), rows in all_layers.items():
            x, y = _curve(rows, "norm_loss")
            st = pal[cut]
            right.plot(_log_floor(x), y, color=st["color"], ls=st["ls"], marker=st["marker"],
                       label=cut)
        right.legend(title="cut, in all layers", loc="lower left", ncol=1 + len(cuts) // 8,
                     fontsize=6 if narrow else None)
        _baseline(right, base, delta)
        _log_axis(right, "x")
    else:
        _empty(right, "no all-layers trials in the sweep")
    right.set_title("one cut in all layers at once")
    left.set_xlabel(_nl_label(width, " of the layer"))
    right.set_xlabel(_nl_label(width, ", mean over layers"))
    left.set_ylabel("test accuracy (%)")
    right.set_ylabel("test accuracy (%)")
    return fig


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
                  layers: Sequence[str] | None = None) -> dict[str, Callable[[], Figure]]:
    """A function drawing each figure the ``datasets`` allow, by file stem, in report order.

    ``datasets``: any of ``spectra``, ``sweep``, ``linkage``, ``recovery``,
    ``tensorize``, ``metrics``. ``width``: force one width (default: each figure's own,
    two columns for the multi-panel ones, one column for the rest).
    """
    spectra, sw = datasets.get("spectra"), datasets.get("sweep")
    cuts: list[str] = []
    for ds in (spectra, datasets.get("linkage")):
        if ds is not None:
            cuts += [str(c) for c in ds["cut"].values]
    if sw is not None:  # the trials along one cut
        cuts += [cut for scope in ("layer", "all-layers")
                 for _, cut in curves(scope_trials(sw, scope))]
    pal = cut_colors(list(dict.fromkeys(cuts)))
    delta = float(datasets["linkage"].attrs.get("delta_points", 1.0)) \
        if "linkage" in datasets else 1.0
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
    if sw is not None:
        makers += [
            ("accuracy_vs_norm_loss",
             lambda: accuracy_vs_norm_loss(sw, layers, pal, delta, width=two)),
            ("accuracy_vs_kept_fraction",
             lambda: accuracy_vs_kept_fraction(sw, spectra, layers, pal, delta, width=two)),
            ("combined_truncations", lambda: combined_truncations(sw, pal, delta, width=two)),
        ]
    if "linkage" in datasets:
        makers.append(("tolerance", lambda: tolerance_figure(datasets["linkage"], pal,
                                                             width=two)))
        makers.append(("depth", lambda: depth_figure({"this model": datasets["linkage"]},
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
    "accuracy_vs_norm_loss", "combined_truncations", "cut_colors", "depth_figure",
    "entropy_heatmap", "layer_role",
    "figure_makers", "layer_colors", "norm_loss_figure", "recovery_figure", "save_figure",
    "spectra_figure", "style", "tensorize_figure", "tolerance_figure", "training_figure",
]
