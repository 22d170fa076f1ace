"""Recovery figures: re-training after truncation, against the control (the untruncated model
re-trained the same way), with what re-truncating at the plan would do to the weights.

Accuracy is drawn as the drop in points below the untruncated model (symlog, the δ band), as
in every figure of the sweep; a mode's accuracy after re-truncating its weights at the plan's
χ is drawn dashed with open markers where it differs from its accuracy (dense re-training
and the control leave the low-rank structure; projected and local keep it).
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._axes import _drop_axis, _drop_handles, _grid
from ._style import ALL_COLOR, MODE_STYLE, TWO_COLUMNS, styled

#: Points by which a re-truncated accuracy must differ from the accuracy to be drawn apart.
_APART = 0.05
#: s_k/s_1 below this is a removed direction (float32 kernels keep ~1e-7 of it): not drawn.
_FLOOR = 1e-5


def recovery_modes(recovery: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    """``(mode, its part)`` of a recovery dataset, ``control`` first (the reference), then
    the others in the dataset's order; a dataset of one mode (no ``mode`` dimension) gives
    its ``mode`` attribute."""
    if "mode" not in recovery.dims:
        return [(str(recovery.attrs.get("mode", "dense")), recovery)]
    modes = [str(m) for m in recovery["mode"].values]
    modes.sort(key=lambda m: m != "control")
    return [(m, recovery.sel(mode=m)) for m in modes]


def _mode_style(mode: str) -> dict:
    return MODE_STYLE.get(mode, {"color": ALL_COLOR, "marker": "v", "ls": "-."})


def _retruncated_apart(part: xr.Dataset) -> bool:
    """Whether re-truncating this mode's weights at the plan changes its accuracy."""
    if "retruncated_accuracy" not in part:
        return False
    diff = 100 * np.abs(np.asarray(part["retruncated_accuracy"].values, float)
                        - np.asarray(part["accuracy"].values, float))
    return bool(np.nanmax(diff, initial=0.0) > _APART)


@styled
def recovery_figure(recovery: xr.Dataset, width: float = TWO_COLUMNS, *,
                    delta: float | None = 1.0) -> Figure:
    """(a) accuracy drop (points below the untruncated model, symlog) per epoch of
    re-training, one line per mode, the control (untruncated, re-trained the same way) in
    grey as the reference; dashed, open: the accuracy after re-truncating that epoch's
    weights at the plan's χ, where it differs. (b) the norm loss re-truncating would cause,
    all planned kernels together (drift from the start in older files without it). (c) the
    drop against wall time, where recorded."""
    delta = 1.0 if delta is None else float(delta)
    modes = recovery_modes(recovery)
    timed = "seconds" in recovery
    narrow = width < 5
    n = 3 if timed else 2
    fig, axes = plt.subplots(n if narrow else 1, 1 if narrow else n,
                             figsize=(width, 2.2 * n + 0.6 if narrow else 2.9),
                             layout="constrained")
    a, b = axes[0], axes[1]
    base = float(recovery.attrs.get("baseline_accuracy", np.nan))
    if not np.isfinite(base):  # no baseline recorded: the control's start, or the best seen
        base = float(np.nanmax(recovery["accuracy"].values))
    drops: list[np.ndarray] = []
    dashed = False
    structure = "network_norm_loss" in recovery
    for mode, part in modes:
        st = _mode_style(mode)
        kw = {"color": st["color"], "marker": st["marker"],
              "lw": 1.7 if mode == "control" else 1.2, "zorder": 4 if mode == "control" else 3}
        epochs = part["epoch"].values
        drop = 100 * (base - np.asarray(part["accuracy"].values, float))
        a.plot(epochs, drop, ls="-", **kw)
        drops.append(drop)
        apart = _retruncated_apart(part)
        if apart:
            again = 100 * (base - np.asarray(part["retruncated_accuracy"].values, float))
            a.plot(epochs, again, ls="--", mfc="white", **{**kw, "lw": 0.9})
            drops.append(again)
            dashed = True
        if timed:
            axes[2].plot(np.asarray(part["seconds"].values, float), drop, ls="-", **kw)
            if apart:
                axes[2].plot(np.asarray(part["seconds"].values, float), again, ls="--",
                             mfc="white", **{**kw, "lw": 0.9})
        if structure:
            b.plot(epochs, np.asarray(part["network_norm_loss"].values, float), ls="-", **kw)
        elif "drift" in part:
            drift = np.asarray(part["drift"].values, float)
            b.plot(epochs, drift.mean(axis=-1) if drift.ndim > 1 else drift, ls="-", **kw)
    every = np.concatenate(drops) if drops else np.zeros(0)
    for ax in (a, *(axes[2:] if timed else ())):
        _drop_axis(ax, every, delta, 0.0)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=ax is a))
    a.set_xlabel("epoch of re-training (0: the start)")
    a.set_title("(a) accuracy while re-training")
    if timed:
        axes[2].set_xlabel("wall time of re-training (s)")
        axes[2].set_title("(c) against wall time")
    b.set_xlabel("epoch of re-training")
    b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if structure:
        b.set_ylabel("norm loss (fraction of ‖W‖²)")
        b.set_title("(b) re-truncating at the plan discards")
        top = float(np.nanmax(recovery["network_norm_loss"].values, initial=0.0))
        b.set_ylim(0, max(top * 1.15, 0.01))
    else:
        b.set_ylabel(r"drift $\|W_e - \tilde W_0\| / \|\tilde W_0\|$ (1)")
        b.set_title("(b) drift from the truncated kernels")
    handles = [Line2D([], [], color=_mode_style(m)["color"], marker=_mode_style(m)["marker"],
                      lw=1.7 if m == "control" else 1.2,
                      label="control (untruncated, re-trained)" if m == "control" else m)
               for m, _ in modes]
    if dashed:
        handles.append(Line2D([], [], color="0.4", ls="--", marker="o", mfc="white", lw=0.9,
                              label="the same, re-truncated at the plan's χ"))
    fig.legend(handles=handles + _drop_handles(delta, 0.0, 0.0),
               loc="outside upper center", ncol=2 if narrow else 3, frameon=False)
    return fig


def _spectrum_panel(ax: Axes, recovery: xr.Dataset, name: str,
                    modes: list[tuple[str, xr.Dataset]]) -> list[Line2D]:
    """Normalised spectra s_k/s_1 of layer ``name``: the untruncated kernel (the control's
    start) and every other mode's last epoch; the kept χ marked. Returns the panel's
    handles."""
    row = recovery.sel(layer=name)
    chi = int(np.asarray(row["chi"].values).ravel()[0])
    chi_max = int(np.asarray(row["chi_max"].values).ravel()[0])
    k = np.asarray(recovery["k"].values, float)
    handles = []
    curves = []
    for mode, part in modes:
        sv = part["singular_values"].sel(layer=name)
        st = _mode_style(mode)
        picks = ([(0, "untruncated (the control's start)", st["color"], "-")]
                 if mode == "control" else
                 [(-1, f"{mode}, epoch {int(part['epoch'].values[-1])}", st["color"], "-")])
        for e, label, color, ls in picks:
            s = np.asarray(sv.isel(epoch=e).values, float)
            s = s / s[0] if np.isfinite(s[0]) and s[0] > 0 else s
            s = np.where(s > _FLOOR, s, np.nan)  # removed directions: off the log axis
            ax.plot(k, s, color=color, ls=ls, lw=1.1 if ls == "-" else 1.4, marker=".",
                    markersize=3 if len(k) <= 40 else 0)
            curves.append(s)
            handles.append(Line2D([], [], color=color, ls=ls, label=label))
    ax.axvline(chi + 0.5, color="k", lw=0.8, ls="--", zorder=1)
    ax.text(chi + 0.5, 0.03, f" χ = {chi}", transform=ax.get_xaxis_transform(), fontsize=6,
            va="bottom", ha="left")
    ax.set_yscale("log")
    finite = np.concatenate(curves)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        ax.set_ylim(max(float(finite.min()) / 1.5, _FLOOR), 1.3)
    ax.set_xlim(0.5, chi_max + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("k")
    ax.set_ylabel("$s_k / s_1$")
    cut = str(row["cut"].values) if "cut" in row.coords else ""
    ax.set_title(f"{name}\n" + (f"{cut} · " if cut else "") + f"χ {chi} of {chi_max}")
    if "norm_loss" in recovery and "epoch" in recovery["norm_loss"].dims:
        lines = []
        for mode, part in modes:
            nl = float(np.asarray(part["norm_loss"].sel(layer=name).isel(epoch=-1).values))
            lines.append(f"{mode}: {nl:.2g}")
        ax.text(0.98, 0.03, "re-truncation norm loss\n" + "\n".join(lines),
                transform=ax.transAxes, fontsize=5.5, ha="right", va="bottom", color="0.25",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
    return handles


@styled
def recovery_spectra_figure(recovery: xr.Dataset, width: float = TWO_COLUMNS) -> Figure:
    """The planned kernels' spectra after re-training: s_k/s_1 across each layer's plan cut
    for the untruncated kernel (the control's start) and each other mode's last epoch, with the
    kept χ marked and the norm loss re-truncating would cause. Dense re-training refills
    the tail beyond χ; projected and local keep it empty."""
    modes = recovery_modes(recovery)
    names = [str(n) for n in recovery["layer"].values]
    fig, axes = _grid(len(names), width, row_height=2.0 if width >= 5 else 2.2)
    handles: dict[str, Line2D] = {}
    for ax, name in zip(axes, names, strict=True):
        for h in _spectrum_panel(ax, recovery, name, modes):
            handles.setdefault(h.get_label(), h)
    handles["χ"] = Line2D([], [], color="k", ls="--", lw=0.8, label="χ kept by the plan")
    fig.legend(handles=list(handles.values()), loc="outside upper center",
               ncol=min(len(handles), 2 if width < 5 else 3), frameon=False)
    return fig


__all__ = ["recovery_figure", "recovery_modes", "recovery_spectra_figure"]
