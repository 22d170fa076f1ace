"""Figures: pure functions of the datasets, labelled, one colour per cut everywhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from test_report import example  # noqa: E402

from corranalysis.io import read_netcdf  # noqa: E402
from corranalysis.linkage import (  # noqa: E402
    curves,
    failing,
    scope_trials,
    single_trials,
)
from corranalysis.report import figures as F  # noqa: E402


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    run, _ = example(tmp_path_factory)
    return {n: read_netcdf(run / f"{n}.nc")
            for n in ("spectra", "sweep", "linkage", "recovery", "tensorize")}


def _line_colors(fig) -> dict[str, tuple]:
    """label → colour of the cut legend's line handles (figure-level legend)."""
    out = {}
    for leg in fig.legends:
        for h, t in zip(leg.legend_handles, leg.get_texts(), strict=True):
            if isinstance(h, Line2D):
                out[t.get_text()] = to_rgb(h.get_color())
    return out


def _data_lines(ax) -> list[Line2D]:
    """The lines of ``ax`` that carry data (not the baseline, spans or empty handles)."""
    return [ln for ln in ax.lines if len(ln.get_xdata()) > 0
            and not (ln.get_linestyle() == "--" and ln.get_color() == "0.35")]


def _distinct(linkage: xr.Dataset, layer: str) -> list[str]:
    """The cuts of ``layer`` a figure draws: distinct (one per matrix) and χ_max > 1."""
    row = linkage.sel(layer=layer)
    return [str(c) for c in row["cut"].values if bool(row["distinct"].sel(cut=c))]


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
    n_lines = sum(len(_data_lines(ax)) for ax in fig.axes)
    pairs = {(a, b) for a, b, nl in zip(single["layer"].values, single["cuts"].values,
                                        single["norm_loss"].values, strict=True) if nl > 0}
    assert n_lines == len(pairs)  # without a link to merge by, every truncating cut is drawn
    assert fig.axes[0].get_ylabel() == "accuracy drop (points)"
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_central_figure_plots_the_drop_on_symlog_with_the_delta_band(datasets):
    sw, lk = datasets["sweep"], datasets["linkage"]
    fig = F.accuracy_vs_norm_loss(sw, delta=1.0, cuts=lk)
    base = float(sw.attrs["baseline_accuracy"])
    single = single_trials(sw)
    for ax in fig.axes:
        name = ax.get_title().removeprefix("layer ")
        assert ax.get_yscale() == "symlog"
        lo, hi = ax.get_ylim()
        assert lo < 0 < 1.0 < hi  # baseline, δ and some room: per-panel limits
        # the tolerated band runs from the bottom to δ; the sampling margin above it
        spans = [p for p in ax.patches if p.get_height() > 0]
        assert any(np.isclose(p.get_y() + p.get_height(), 1.0) for p in spans)
        lines = _data_lines(ax)
        assert len(lines) == len(_distinct(lk, name))  # one per distinct cut
        for line in lines:  # every point is a real trial's drop in points
            drops = 100 * (base - single["accuracy"].values[single["layer"].values == name])
            assert np.isin(np.round(line.get_ydata(), 9), np.round(drops, 9)).any()
        top = max(float(np.nanmax(ln.get_ydata())) for ln in lines)
        assert hi >= top  # nothing cut off at the top
    assert "within δ given sampling error" in " ".join(
        t.get_text() for leg in fig.legends for t in leg.get_texts())
    plt.close(fig)


def test_the_sampling_se_is_the_one_of_the_tolerance_rule(datasets):
    sw = datasets["sweep"]
    drop, se = F.paired_drop(sw)
    assert np.isfinite(se).all() and (se >= 0).all()
    for delta in (0.5, 1.0, 3.0):  # D − z·SE > δ is exactly linkage.failing
        z = 1.645
        expect = failing(sw, delta=delta, z=z)
        assert ((drop - z * se > delta) == expect).all()
    # by hand: 4 images, the variant loses two and gains one
    tiny = xr.Dataset({"accuracy": ("trial", [0.5]),
                       "correct": (("trial", "image"), [[0, 0, 1, 1]]),
                       "baseline_correct": ("image", [1, 1, 0, 1])},
                      attrs={"baseline_accuracy": 0.75})
    d = np.array([1, 1, -1, 0])
    drop, se = F.paired_drop(tiny)
    assert drop[0] == pytest.approx(25.0)
    assert se[0] == pytest.approx(100 * d.std(ddof=1) / 2)


def test_frac_and_loss_keeps_are_separate_series_and_all_layers_says_which_layers(datasets):
    sw = datasets["sweep"]
    fig = F.combined_truncations(sw)
    left, right = fig.axes[:2]
    for ax, scope in ((left, "all-cuts"), (right, "all-layers")):
        groups = curves(scope_trials(sw, scope))
        kinds = sum(len({str(k).split("=")[0] for k in rows["keep"].values})
                    for rows in groups.values())
        lines = _data_lines(ax)
        assert len(lines) == kinds  # frac= and loss= never joined into one line
        for line in lines:
            x = np.asarray(line.get_xdata(), float)
            assert (np.diff(x[np.isfinite(x)]) > 0).all()
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert "out|in (only 6 has it)" in labels  # only the linear layer has this cut
    assert "out|in,kh,kw (2 of 3 layers: 0, 3)" in labels
    plt.close(fig)


def test_spectra_are_normalised_and_equivalent_cuts_drawn_once(datasets):
    spectra, lk = datasets["spectra"], datasets["linkage"]
    fig = F.spectra_figure(spectra)
    for ax in fig.axes:
        name = ax.get_title().split("\n")[0].removeprefix("layer ")
        lines = _data_lines(ax)
        assert len(lines) == len(_distinct(lk, name))
        for line in lines:
            x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
            assert y[0] == pytest.approx(1.0) and x[-1] == pytest.approx(1.0)  # s_1/s_1; χ_max
            assert (np.diff(y[np.isfinite(y)]) <= 1e-12).all()
    first = fig.axes[0]  # conv 6x1x3x3: in = 1, so cuts differing by `in` coincide
    note = " ".join(t.get_text() for t in first.texts)
    assert "out|in,kh,kw ≡ out,in|kh,kw" in note and "not drawn: out,kh,kw|in" in note
    assert first.get_xlabel() == "k / χ$_{max}$"
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


def test_entropy_heatmap_is_normalised_greys_trivial_and_merges_equivalent_cuts(datasets):
    spectra = datasets["spectra"]
    fig = F.entropy_heatmap(spectra)
    ax = fig.axes[0]
    shown = np.ma.masked_invalid(np.ma.filled(ax.collections[0].get_array(), np.nan))
    chi = spectra["chi_max"].transpose("layer", "cut").values
    with np.errstate(divide="ignore", invalid="ignore"):
        expect = spectra["entropy"].transpose("layer", "cut").values / np.log(chi)
    ok = ~np.ma.getmaskarray(shown).ravel()
    assert np.allclose(np.asarray(shown).ravel()[ok], expect.ravel()[ok])
    assert (np.asarray(shown).ravel()[ok] <= 1 + 1e-12).all()
    classes = F.cut_classes(spectra)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("χ=1") == int(classes["trivial"].sum()) > 0
    cuts = np.array([str(c) for c in spectra["cut"].values])
    eq = classes["equivalent_to"].values
    merged = (eq != cuts[None, :]) & (eq != "") & ~classes["trivial"].values
    assert sum(t.startswith("= ") for t in texts) == int(merged.sum()) > 0
    absent = ~np.isfinite(chi)  # blank, not grey: the layer has no such cut
    assert int(absent.sum()) + int(merged.sum()) + int(classes["trivial"].sum()) == int(
        np.ma.getmaskarray(shown).sum())
    plt.close(fig)


def test_norm_loss_panels_are_not_squashed_by_one_tiny_value(datasets):
    spectra = datasets["spectra"].copy(deep=True)
    name, cut = "3", "out|in,kh,kw"
    chi_max = int(spectra["chi_max"].sel(layer=name, cut=cut))
    spectra["norm_loss"].loc[{"layer": name, "cut": cut, "k": chi_max - 1}] = 1e-11
    fig = F.norm_loss_figure(spectra, layers=[name])
    ax = fig.axes[0]
    lo, _ = ax.get_ylim()
    assert lo > 1e-8  # the axis does not reach down to the single 1e-11
    assert any("1e-11" in t.get_text() for t in ax.texts)  # but says where it went
    assert ax.get_ylim() != F.norm_loss_figure(datasets["spectra"], layers=["0"]).axes[0] \
        .get_ylim()  # each panel its own range
    plt.close("all")


def test_pareto_front_and_network_ratio():
    ratio = np.array([1.0, 2.0, 2.0, 3.0, 0.9, np.nan])
    drop = np.array([0.0, 0.5, 0.2, 4.0, -0.1, 0.0])
    front = F.pareto_front(ratio, drop)
    assert front.tolist() == [4, 0, 2, 3]  # 1 is beaten by 2 (same ratio, less drop)
    trials = xr.Dataset({"params_dense": ("trial", [100, 50]),
                         "params_factorized": ("trial", [20, 60])})
    assert F.network_ratio(trials, 1000).tolist() == pytest.approx([1000 / 920, 1000 / 1010])


def test_compression_figure_has_a_front_per_layer_and_takes_extra_points(datasets):
    sw = datasets["sweep"]
    extra = xr.Dataset({"accuracy": ("point", [0.7, 0.6]), "params": ("point", [120, 40]),
                        "params_dense": ("point", [432, 432])},
                       coords={"method": ("point", ["tucker", "tucker"]),
                               "layer": ("point", ["3", "3"])})
    fig = F.compression_figure(sw, extra=extra, total_params=1000)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["whole network (every trial)", "layer 0", "layer 3", "layer 6"]
    layer3 = fig.axes[2]
    xs = np.concatenate([c.get_offsets()[:, 0] for c in layer3.collections
                         if len(c.get_offsets())])
    assert np.isin(np.round([432 / 120, 432 / 40], 9), np.round(xs, 9)).all()
    assert layer3.get_xscale() == "log" and layer3.get_yscale() == "symlog"
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "tucker" in labels and "truncation (SVD), Pareto front" in labels
    single = single_trials(sw)
    rows = single.isel(trial=np.flatnonzero(single["layer"].values == "6"))
    fronts = [ln for ln in fig.axes[3].lines if ln.get_drawstyle().startswith("steps")]
    ratio = rows["params_dense"].values / rows["params_factorized"].values
    assert fronts and np.nanmax(fronts[0].get_xdata()) == pytest.approx(ratio.max())
    plt.close(fig)


def test_the_first_screen_figure_answers_in_three_panels(datasets):
    sw, lk = datasets["sweep"], datasets["linkage"]
    fig = F.central_figure(sw, lk)
    a, b, c = fig.axes[:3]
    assert [a.get_title()[:3], b.get_title()[:3], c.get_title()[:3]] == ["(a)", "(b)", "(c)"]
    assert a.get_yscale() == c.get_yscale() == "symlog"
    median = [ln for ln in b.lines if ln.get_color() == "0.2"][0]
    assert np.allclose(median.get_ydata(), lk["layer_tolerated_norm_loss"].values,
                       equal_nan=True)
    n_cut_lines = sum(len(_distinct(lk, str(n))) for n in lk["layer"].values)
    assert len(_data_lines(a)) == n_cut_lines
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


def test_compression_figure_reads_a_comparison_with_epochs_and_unreachable_variants(datasets):
    sw = datasets["sweep"]
    compare = xr.Dataset(
        {"accuracy": (("variant", "epoch"), [[0.3, 0.7], [np.nan, np.nan], [0.2, 0.65]]),
         "params_before": ("variant", [998, 998, 998]),
         "params_after": ("variant", [200, 0, 100])},
        coords={"method": ("variant", ["mpo", "cp", "adtn"])},
        attrs={"baseline_accuracy": 0.8})
    fig = F.compression_figure(sw, extra=compare, total_params=998)
    whole = fig.axes[0]
    xs = np.concatenate([c.get_offsets()[:, 0] for c in whole.collections
                         if len(c.get_offsets())])
    ys = np.concatenate([c.get_offsets()[:, 1] for c in whole.collections
                         if len(c.get_offsets())])
    for ratio, drop in ((998 / 200, 10.0), (998 / 100, 15.0)):  # fine-tuned, own baseline
        assert np.isclose(xs, ratio).any() and np.isclose(ys[np.isclose(xs, ratio)], drop).all()
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "mpo" in labels and "adtn" in labels and "cp" not in labels  # nothing to show
    plt.close(fig)


def test_the_recovery_figure_draws_the_control_and_what_re_truncation_would_do(datasets):
    rec = datasets["recovery"]
    fig = F.recovery_figure(rec, delta=1.0)
    a, b = fig.axes[:2]
    assert a.get_yscale() == "symlog"  # drop in points, as every figure of the sweep
    base = rec.attrs["baseline_accuracy"]
    lines = [ln for ln in a.lines if len(ln.get_xdata()) == rec.sizes["epoch"]]
    control = [ln for ln in lines if ln.get_marker() == "D" and ln.get_linestyle() == "-"]
    assert np.allclose(control[0].get_ydata(), 100 * (base - rec.accuracy.sel(mode="control")))
    dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
    apart = [m for m, part in F.recovery_modes(rec)
             if 100 * np.abs(part.retruncated_accuracy - part.accuracy).max() > 0.05]
    assert len(dashed) == len(apart) and "projected" not in apart  # kept truncated
    assert sorted(np.round(np.concatenate([ln.get_ydata() for ln in b.lines]), 9)) == sorted(
        np.round(rec.network_norm_loss.values.ravel(), 9))
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "control (untruncated, re-trained)" in labels
    assert "the same, re-truncated at the plan's χ" in labels
    plt.close(fig)


def test_the_recovery_spectra_show_each_planned_kernel_and_its_chi(datasets):
    rec = datasets["recovery"]
    fig = F.recovery_spectra_figure(rec)
    assert len(fig.axes) == rec.sizes["layer"]
    for ax, name in zip(fig.axes, rec.layer.values, strict=True):
        chi = int(rec.chi.sel(layer=name).values.ravel()[0])
        vlines = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert vlines and vlines[0].get_xdata()[0] == chi + 0.5
        assert ax.get_yscale() == "log" and ax.get_title().startswith(str(name))
        assert any("re-truncation norm loss" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_the_comparison_figure_draws_drops_fronts_and_what_could_not_be_reached(
        tmp_path_factory):
    run, _ = example(tmp_path_factory)
    ds = read_netcdf(run / "compare_tiny" / "compare.nc")
    fig = F.comparison_figure(ds)
    ax, tx = fig.axes[:2]
    assert ax.get_yscale() == "symlog" and ax.get_xscale() == "log"
    assert tx.get_yscale() == "log"
    base = ds.attrs["baseline_accuracy"]
    ok = ds.reachable.values.astype(bool)
    drops = 100 * (base - F.final_accuracy(ds)[ok])
    ys = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_linestyle() == "-"])
    assert np.isin(np.round(drops, 9), np.round(ys, 9)).all()
    fell = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(fell) == 1 and len(fell[0].get_xdata()) == int(ds.fell_below_start.sum())
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "not reachable: cp_5x" in labels and "ADTN" in labels
    plt.close(fig)


def test_compression_figures_take_the_fine_tuned_variants_of_a_comparison(tmp_path_factory,
                                                                          datasets):
    from corranalysis.report._tensorization import comparison_points

    run, _ = example(tmp_path_factory)
    ds = read_netcdf(run / "compare_tiny" / "compare.nc")
    points = comparison_points({"tiny": ds}, layers=["3"])
    assert points.sizes["point"] == int(ds.reachable.sum())
    assert set(points.layer.values) == {"3"}  # the comparison targets layer 3 alone
    fig = F.compression_figure(datasets["sweep"], extra=points, total_params=1000)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "truncation (svd, best cut), fine-tuned" in labels  # a point, not a front
    assert "ADTN, fine-tuned" in labels
    layer3 = fig.axes[[a.get_title() for a in fig.axes].index("layer 3")]
    xs = np.concatenate([c.get_offsets()[:, 0] for c in layer3.collections
                         if len(c.get_offsets())])
    assert np.isclose(xs, 440 / 40).any()  # ADTN at its own compression of the layer
    plt.close(fig)


def test_ratio_axes_span_wide_ranges_with_few_ticks():
    from corranalysis.report.figures._axes import _ratio_axis

    fig, ax = plt.subplots()
    ax.plot([1.6, 900], [0, 1])
    _ratio_axis(ax)
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert 2 <= len(ticks) <= 5 and max(ticks) / min(ticks) >= 100  # most of 1.6–900
    plt.close(fig)
