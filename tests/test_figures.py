"""Figures: pure functions of the datasets, labelled, one colour per cut everywhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from test_report import example  # noqa: E402

from corranalysis.io import read_netcdf  # noqa: E402
from corranalysis.linkage import single_trials  # noqa: E402
from corranalysis.report import figures as F  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    run, _ = example(tmp_path_factory)
    return {n: read_netcdf(run / f"{n}.nc")
            for n in ("spectra", "sweep", "linkage", "recovery", "tensorize")}


def _line_colors(fig) -> dict[str, tuple]:
    """label → colour of the cut legend's handles (figure-level legend)."""
    out = {}
    for leg in fig.legends:
        for h, t in zip(leg.legend_handles, leg.get_texts(), strict=True):
            out[t.get_text()] = to_rgb(h.get_color())
    return out


def test_palette_is_colorblind_and_stable():
    cuts = [f"c{i}" for i in range(13)]
    pal = F.cut_colors(cuts)
    assert to_rgb(pal["c0"]["color"]) == to_rgb(sns.color_palette("colorblind")[0])
    styles = {(tuple(to_rgb(v["color"])), v["ls"], v["marker"]) for k, v in pal.items()}
    assert len(styles) == len(pal)  # 13 cuts all distinguishable
    assert F.cut_colors(cuts) == pal


def test_every_figure_is_labelled_and_sized(datasets):
    for stem, draw in F.figure_makers(datasets).items():
        fig = draw()
        assert fig.get_figwidth() in (F.ONE_COLUMN, F.TWO_COLUMNS), stem
        plot_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        for ax in plot_axes:
            if ax.lines or ax.collections:
                assert ax.get_xlabel() and ax.get_ylabel(), (stem, ax.get_title())
        assert fig.legends or any(ax.get_legend() for ax in fig.axes) or stem == "entropy", stem
        plt.close(fig)


def test_one_colour_per_cut_across_figures(datasets):
    pal = F.cut_colors([str(c) for c in datasets["spectra"]["cut"].values])
    figs = [F.spectra_figure(datasets["spectra"], palette=pal),
            F.accuracy_vs_norm_loss(datasets["sweep"], palette=pal),
            F.norm_loss_figure(datasets["spectra"], palette=pal)]
    for fig in figs:
        colors = {k: v for k, v in _line_colors(fig).items() if k in pal}
        assert colors, "cut legend missing"
        for cut, rgb in colors.items():
            assert rgb == pytest.approx(to_rgb(pal[cut]["color"]))
        plt.close(fig)


def test_central_figure_shows_each_layer_and_cut(datasets):
    sw = datasets["sweep"]
    fig = F.accuracy_vs_norm_loss(sw)
    single = single_trials(sw)
    layers = list(dict.fromkeys(single["layer"].values.tolist()))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [f"layer {n}" for n in layers]
    n_lines = sum(len(ax.lines) for ax in fig.axes)
    pairs = {(a, b) for a, b in zip(single["layer"].values, single["cuts"].values, strict=True)}
    assert n_lines == len(pairs) + 2 * len(layers)  # + baseline and baseline − δ per panel
    assert fig.axes[0].get_ylabel() == "test accuracy (%)"
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_layer_subset_and_one_column_width(datasets):
    fig = F.spectra_figure(datasets["spectra"], layers=["3"], width=F.ONE_COLUMN)
    assert [ax.get_title() for ax in fig.axes] == ["layer 3\nconv2d 8x6x3x3"]
    assert fig.get_figwidth() == F.ONE_COLUMN
    plt.close(fig)


def test_figures_cope_with_partial_sweeps(datasets):
    sw = datasets["sweep"]
    only_single = single_trials(sw)
    fig = F.combined_truncations(only_single)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no all-cuts trials in the sweep" in texts
    assert "no all-layers trials in the sweep" in texts
    plt.close(fig)
    recovery = datasets["recovery"].sel(mode="dense", drop=True)
    fig = F.recovery_figure(recovery)
    assert len(fig.axes[0].lines) >= 1
    plt.close(fig)


def test_entropy_heatmap_blanks_missing_cuts(datasets):
    spectra = datasets["spectra"]
    fig = F.entropy_heatmap(spectra)
    mesh = fig.axes[0].collections[0]
    values = np.ma.getmaskarray(mesh.get_array())
    assert values.sum() == int((~np.isfinite(spectra["entropy"].values)).sum())
    plt.close(fig)


def test_one_column_versions_of_every_figure(datasets):
    for stem, draw in F.figure_makers(datasets, width=F.ONE_COLUMN).items():
        fig = draw()
        assert fig.get_figwidth() == F.ONE_COLUMN, stem
        fig.canvas.draw()  # lays out without error at the narrow width
        plt.close(fig)


def test_the_tensorize_figure_draws_each_cut_and_all_cuts_of_the_layer(datasets):
    sw, tz = datasets["sweep"], datasets["tensorize"]
    fig = F.tensorize_figure(tz, sw)
    lines = {line.get_label(): line for line in fig.axes[0].lines
             if line.get_label().startswith("truncate ")}
    cuts = {c for n, c in zip(single_trials(sw).layer.values, single_trials(sw).cuts.values,
                              strict=True) if n == "3"}
    assert set(lines) == {f"truncate {c}" for c in cuts} | {"truncate all cuts"}
    assert to_rgb(lines["truncate all cuts"].get_color()) == to_rgb(F.ALL_CUTS_STYLE["color"])
    plt.close(fig)
