"""Spectra figures: normalised singular values, normalised entropy, norm-loss curves."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._axes import (
    _grid,
    _layer_cuts,
    _layer_title,
    _layers,
    _log_axis,
    _log_floor,
    _low_limit,
    _merge_note,
    cut_classes,
)
from ._style import (
    TWO_COLUMNS,
    _cut_legend,
    _palette,
    styled,
)


def _cut_curve_panels(spectra: xr.Dataset, layers: Sequence[str] | None,
                      palette: Mapping[str, dict] | None, width: float,
                      curve: Callable[[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]],
                      xlabel: str, ylabel: str, q: float = 5.0) -> Figure:
    """A panel per layer (log y, its own lower limit), a line per distinct cut from
    ``curve(layer, cut) -> (x, y drawn, y for the limit)``, cuts with the same matrix drawn
    once and χ_max = 1 cuts left out (both named in the panel)."""
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
            x, y, limit = curve(name, cut)
            st = pal[cut]
            ax.plot(x, y, color=st["color"], ls=st["ls"], marker=st["marker"],
                    markersize=2 if len(x) < 40 else 0)
            values.append(limit)
            shown.append(cut)
        _log_axis(ax, "y")
        if values:
            _low_limit(ax, np.concatenate(values), q=q)
        ax.set_xlim(0, 1.02)
        ax.set_title(_layer_title(spectra, name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _merge_note(ax, merged, trivial)
    _cut_legend(fig, pal, list(dict.fromkeys(shown)))
    return fig


@styled
def spectra_figure(spectra: xr.Dataset, layers: Sequence[str] | None = None,
                   palette: Mapping[str, dict] | None = None,
                   width: float = TWO_COLUMNS) -> Figure:
    """Normalised singular values s_k/s_1 against k/χ_max per layer (log y), one line per
    distinct cut: cuts of a layer with the same matrix are drawn once (named in the panel),
    cuts with χ_max = 1 are left out. Layers and cuts of any size share the axes' scale."""

    def curve(name: str, cut: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.asarray(spectra["singular_values"].sel(layer=name, cut=cut).values, float)
        chi_max = int(float(spectra["chi_max"].sel(layer=name, cut=cut)))
        s = s[:chi_max] / s[0]
        return np.arange(1, chi_max + 1) / chi_max, _log_floor(s, 0.0), s

    return _cut_curve_panels(spectra, layers, palette, width, curve, "k / χ$_{max}$",
                             "$s_k / s_1$", q=2.0)


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
    k = np.asarray(spectra["k"].values, dtype=float)

    def curve(name: str, cut: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chi_max = float(spectra["chi_max"].sel(layer=name, cut=cut))
        nl = np.asarray(spectra["norm_loss"].sel(layer=name, cut=cut).values, dtype=float)
        ok = k <= chi_max
        return k[ok] / chi_max, _log_floor(nl[ok]), _log_floor(nl[ok])

    return _cut_curve_panels(spectra, layers, palette, width, curve,
                             "kept fraction χ/χ$_{max}$", "norm loss (of ‖W‖²)")
