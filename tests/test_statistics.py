"""Honest statistics in the linkage: distinct cuts, partial correlations, censored
tolerances, the drop judged beyond sampling error, bootstrap intervals over test images,
norm loss against output error, data-aware against plain truncation, and seeds."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from scipy.stats import spearmanr
from scipy.stats import t as student_t
from test_linkage import fake_spectra, fake_sweep
from test_sweep import loader, tiny_cnn

from corranalysis.errors import InputError
from corranalysis.kernels import extract_kernels
from corranalysis.linkage import (
    accuracy_ci,
    across_seeds,
    distinct_cuts,
    failing,
    link,
    partial_spearman,
    scope_trials,
    single_trials,
    tolerance_interval,
)
from corranalysis.spectra import compute_spectra
from corranalysis.sweep import sweep

KEEPS = "frac=1,frac=0.5,frac=0.25,frac=0.1"
NEW = ["correct", "baseline_correct", "output_error", "n_images", "stopped", "truncation"]


@pytest.fixture(scope="module")
def real():
    """A sweep (svd and data-aware trials) and the spectra of a tiny CNN whose first conv
    has one input channel: its cuts out|in,kh,kw and out,in|kh,kw are one matrix."""
    model = tiny_cnn()
    sw = sweep(model, loader(), keeps=KEEPS, plans="layer", truncations=("svd", "data-aware"))
    return sw, compute_spectra(extract_kernels(model), device="cpu")


def image_sweep(points: dict[tuple[str, str], list[tuple[float, np.ndarray]]],
                baseline: np.ndarray, extra: dict | None = None) -> xr.Dataset:
    """A sweep with per-image results from (layer, cut) -> [(norm_loss, correct per image)]
    (correct: 1, 0, or -1 where a stopped trial was not evaluated)."""
    rows = [(layer, cut, f"frac={1 / (k + 1):g}", nl, c)
            for (layer, cut), pts in points.items() for k, (nl, c) in enumerate(pts)]
    layer, cuts, keep, nl, correct = map(list, zip(*rows, strict=True))
    correct = np.array(correct, dtype=np.int8)
    evaluated = correct >= 0
    n = len(rows)
    ds = xr.Dataset(
        {"accuracy": ("trial", (correct == 1).sum(1) / evaluated.sum(1)),
         "norm_loss": ("trial", nl), "chi": ("trial", np.ones(n)),
         "n_images": ("trial", evaluated.sum(1)), "stopped": ("trial", ~evaluated.all(1)),
         "correct": (("trial", "image"), correct),
         "baseline_correct": ("image", baseline.astype(np.int8)), **(extra or {})},
        coords={"trial": np.arange(n), "scope": ("trial", ["layer"] * n),
                "layer": ("trial", layer), "cuts": ("trial", cuts), "keep": ("trial", keep),
                "truncation": ("trial", ["svd"] * n)})
    ds.attrs.update(baseline_accuracy=float(baseline.mean()), n_test=baseline.size,
                    n_samples=baseline.size)
    return ds


def flipped(baseline: np.ndarray, lose: int, gain: int, seed: int = 0) -> np.ndarray:
    """``baseline`` with ``lose`` correct images wrong and ``gain`` wrong images right."""
    rng = np.random.default_rng(seed)
    out = baseline.copy()
    out[rng.choice(np.flatnonzero(baseline == 1), lose, replace=False)] = 0
    out[rng.choice(np.flatnonzero(baseline == 0), gain, replace=False)] = 1
    return out


BASE = np.r_[np.ones(1800, np.int8), np.zeros(200, np.int8)]  # 90 % of 2,000 images
NOISY = flipped(BASE, 100, 70)   # drop 1.5 points, but 170 images changed: within noise
CLEAR = flipped(BASE, 60, 0, 1)  # drop 3 points, every change a loss


def test_equivalent_and_trivial_cuts_are_excluded_from_the_statistics(real):
    sw, spectra = real
    out = link(sw, spectra, delta=2.0, z=0)
    first = out.sel(layer="0")  # kernel 6x1x3x3: the in leg has size 1
    assert str(first.equivalent_to.sel(cut="out,in|kh,kw").values) == "out|in,kh,kw"
    assert str(first.equivalent_to.sel(cut="out,in,kh|kw").values) == "out,kh|in,kw"
    assert bool(first.distinct.sel(cut="out|in,kh,kw"))
    assert not bool(first.distinct.sel(cut="out,in|kh,kw"))
    assert not bool(first.distinct.sel(cut="out,kh,kw|in"))  # chi_max = 1
    assert float(spectra.chi_max.sel(layer="0", cut="out,kh,kw|in")) == 1
    np.testing.assert_allclose(spectra.singular_values.sel(layer="0", cut="out,in|kh,kw"),
                               spectra.singular_values.sel(layer="0", cut="out|in,kh,kw"))
    assert bool(out.distinct.sel(layer="3").sum() == 7)
    # 3 distinct cuts of the first conv, 7 of the second, 1 of the linear layer
    assert set(out.n_pairs.values.ravel().tolist()) == {3 + 7 + 1}
    assert int(out.distinct.sum()) == 11
    # what happens on the duplicate and the trivial labels does not move the statistics
    dup = ((sw.layer == "0") & sw.cuts.isin(["out,in|kh,kw", "out,kh,kw|in"])).values
    spoiled = sw.copy(deep=True)
    spoiled["accuracy"].values[dup] = 0.0
    spoiled["correct"].values[dup] = 0
    again = link(spoiled, spectra, delta=2.0, z=0)  # 48 images: no drop is beyond noise
    assert float(again.tolerated_norm_loss.sel(layer="0", cut="out,in|kh,kw")) == 0.0
    for var in ("spearman_rho", "spearman_p", "partial_rho", "n_pairs"):
        xr.testing.assert_identical(again[var], out[var])
    # the spectra alone give the same classes: by leg sizes, or by identical spectra
    classes = distinct_cuts(spectra)
    by_values = distinct_cuts(spectra.drop_vars(["legs", "shape"]))
    xr.testing.assert_identical(classes, by_values)
    np.testing.assert_array_equal(classes.distinct.sel(layer=["0", "3"], cut=out.cut[:7]),
                                  out.distinct.sel(layer=["0", "3"], cut=out.cut[:7]))


def test_the_partial_correlation_is_the_residualised_rank_correlation():
    rng = np.random.default_rng(1)
    z = rng.normal(size=40)
    x, y = z + rng.normal(size=40), z + 0.5 * rng.normal(size=40)
    rho, p, n = partial_spearman(x, y, z)
    r = spearmanr(np.c_[x, y, z]).statistic  # the textbook formula from the three rhos
    expect = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert n == 40 and rho == pytest.approx(expect, abs=1e-12)
    t = expect * np.sqrt(37 / (1 - expect ** 2))
    assert p == pytest.approx(2 * student_t.sf(abs(t), 37), rel=1e-9)
    # x and y that depend only on z: strongly rank-correlated, partially not at all
    z = rng.normal(size=400)
    x, y = z + 0.3 * rng.normal(size=400), z + 0.3 * rng.normal(size=400)
    assert spearmanr(x, y).statistic > 0.8
    assert abs(partial_spearman(x, y, z)[0]) < 0.15
    assert np.isnan(partial_spearman(z ** 3, y, z)[0])  # x determined by z
    assert np.isnan(partial_spearman(x[:3], y[:3], z[:3])[0])  # too few pairs
    x[0] = np.nan
    assert partial_spearman(x, y, z)[2] == 399


def test_link_reports_the_shape_only_baseline_and_partial_correlations_beside_it(real):
    sw, spectra = real
    out = link(sw, spectra, delta=2.0)
    assert "log_chi_max" in out.measure.values and "normalized_entropy" in out.measure.values
    assert out.partial_rho.dims == ("measure", "target")
    assert np.isnan(out.partial_rho.sel(measure="log_chi_max")).all()  # itself, controlled
    ent = out.entropy / np.log(spectra.chi_max.sel(layer=out.layer, cut=out.cut))
    ok = out.distinct.values
    np.testing.assert_allclose(out.normalized_entropy.values[ok], ent.values[ok])
    m, t = "normalized_entropy", "tolerated_norm_loss"
    x, y = out[m].values[ok], out[t].values[ok]
    rho, p, _ = partial_spearman(x, y, out.log_chi_max.values[ok])
    assert float(out.partial_rho.sel(measure=m, target=t)) == pytest.approx(rho, nan_ok=True)
    assert float(out.spearman_rho.sel(measure=m, target=t)) == pytest.approx(
        spearmanr(x, y).statistic, nan_ok=True)


def test_a_tolerance_is_an_interval_between_the_last_passing_and_first_failing_trial():
    curves = {
        ("a", "x|y"): [(0.0, 0.90, 4), (0.02, 0.895, 2), (0.3, 0.50, 1)],   # [0.02, 0.3)
        ("a", "x,z|y"): [(0.0, 0.90, 4), (0.05, 0.70, 2), (0.4, 0.20, 1)],  # [0, 0.05)
        ("b", "x|y"): [(0.0, 0.90, 4), (0.1, 0.899, 2), (0.2, 0.891, 1)],   # [0.2, 1)
        ("b", "x,z|y"): [(0.1, 0.5, 4), (0.2, 0.5, 2), (0.3, 0.5, 1)],      # [0, 0.1)
    }
    ent = {key: 1.0 for key in curves}
    out = link(fake_sweep(curves), fake_spectra(["a", "b"], ["x|y", "x,z|y"], ent))
    low, high = out.tolerated_norm_loss, out.tolerated_norm_loss_high
    assert [float(low.sel(layer="a", cut="x|y")), float(high.sel(layer="a", cut="x|y"))] == \
        [0.02, 0.3]
    assert [float(low.sel(layer="a", cut="x,z|y")), float(high.sel(layer="a", cut="x,z|y"))] \
        == [0.0, 0.05]
    assert float(low.sel(layer="b", cut="x|y")) == pytest.approx(0.2)
    assert float(high.sel(layer="b", cut="x|y")) == 1.0  # nothing fails
    assert [float(low.sel(layer="b", cut="x,z|y")), float(high.sel(layer="b", cut="x,z|y"))] \
        == [0.0, 0.1]
    assert (low <= high).all()


def test_the_interval_brackets_where_a_denser_grid_finds_the_tolerance():
    # accuracy falls 1 point per 0.1 of norm loss: the true tolerance (delta = 2.5) is 0.25
    fine = np.linspace(0, 1, 101)
    rows = xr.Dataset({"norm_loss": ("trial", fine), "accuracy": ("trial", 0.9 - 0.1 * fine)})
    _, truth, _ = tolerance_interval(rows, 0.9, 2.5)
    for step in (2, 7, 10, 25):
        pos, low, high = tolerance_interval(rows.isel(trial=slice(None, None, step)), 0.9, 2.5)
        assert low <= truth < high
        assert low == pytest.approx(float(rows.norm_loss[::step][pos]))


def test_a_drop_within_sampling_noise_does_not_fail_a_trial():
    sw = image_sweep({("a", "x|y"): [(0.0, BASE), (0.2, NOISY), (0.5, CLEAR)]}, BASE)
    drop = 100 * (BASE.mean() - sw.accuracy.values)
    np.testing.assert_allclose(drop, [0.0, 1.5, 3.0])
    # by hand: paired differences, their mean and standard error, one-sided z = 1.645
    d = BASE.astype(float) - NOISY
    se = 100 * d.std(ddof=1) / np.sqrt(d.size)
    assert 100 * d.mean() - 1.645 * se < 1.0 < 100 * d.mean()
    assert failing(sw, delta=1.0).tolist() == [False, False, True]
    assert failing(sw, delta=1.0, z=0).tolist() == [False, True, True]  # the plain rule
    assert tolerance_interval(sw, delta=1.0)[1:] == (0.2, 0.5)
    assert tolerance_interval(sw, delta=1.0, z=0)[1:] == (0.0, 0.2)
    without = sw.drop_vars(["correct", "baseline_correct"])
    assert failing(without, delta=1.0).tolist() == [False, True, True]  # no images: plain
    spectra = fake_spectra(["a"], ["x|y"], {("a", "x|y"): 1.0})
    assert float(link(sw, spectra, delta=1.0).tolerated_norm_loss.squeeze()) == 0.2
    assert float(link(sw, spectra, delta=1.0, z=0).tolerated_norm_loss.squeeze()) == 0.0


def test_a_trial_stopped_early_is_judged_on_the_images_it_saw():
    stopped = np.full(BASE.size, -1, np.int8)
    seen = np.r_[np.arange(360), np.arange(1800, 1840)]  # 400 images, 360 of them correct
    stopped[seen] = BASE[seen]
    stopped[seen[:40]] = 0  # 40 of its 360 correct images lost: 10 points on 400
    sw = image_sweep({("a", "x|y"): [(0.0, BASE), (0.3, stopped)]}, BASE)
    assert int(sw.n_images[1]) == 400 and bool(sw.stopped[1])
    assert failing(sw, delta=1.0).tolist() == [False, True]
    ci = accuracy_ci(sw, n_boot=300)
    assert float(ci.accuracy_low[1]) < 0.8 < float(ci.accuracy_high[1])  # 320 / 400
    assert float(ci.accuracy_high[1]) < 0.85


def test_bootstrap_intervals_hold_the_point_estimate_and_repeat_with_the_seed():
    sw = image_sweep({("a", "x|y"): [(0.0, BASE), (0.2, NOISY), (0.5, CLEAR)],
                      ("b", "x|y"): [(0.0, BASE), (0.1, flipped(BASE, 30, 0, 2)),
                                     (0.4, flipped(BASE, 15, 0, 3))]}, BASE)
    spectra = fake_spectra(["a", "b"], ["x|y"], {("a", "x|y"): 1.0, ("b", "x|y"): 2.0})
    out = link(sw, spectra, delta=1.0, n_boot=300, seed=3)
    lo, hi = out.baseline_accuracy_ci.sel(bound="low"), out.baseline_accuracy_ci.sel(bound="high")
    assert float(lo) < 0.9 < float(hi)
    assert float(hi - lo) == pytest.approx(2 * 1.96 * np.sqrt(0.09 / 2000), rel=0.25)
    tol, ci = out.tolerated_norm_loss, out.tolerated_norm_loss_ci
    assert ((ci.sel(bound="low") <= tol) & (tol <= ci.sel(bound="high"))).all()
    # b: 1.5 points lost at 0.1 with no gains: fails in some resamples, passes in others
    assert float(ci.sel(layer="b", cut="x|y", bound="low")) == 0.0
    assert float(ci.sel(layer="b", cut="x|y", bound="high")) >= 0.1
    again = link(sw, spectra, delta=1.0, n_boot=300, seed=3)
    xr.testing.assert_identical(again.tolerated_norm_loss_ci, ci)
    xr.testing.assert_identical(again.baseline_accuracy_ci, out.baseline_accuracy_ci)
    acc = accuracy_ci(sw, n_boot=300, seed=3)
    assert acc.accuracy_low.dims == ("trial",) and list(acc.layer.values) == list(sw.layer.values)
    assert ((acc.accuracy_low <= sw.accuracy) & (sw.accuracy <= acc.accuracy_high)).all()
    xr.testing.assert_identical(acc, accuracy_ci(sw, n_boot=300, seed=3))
    assert not acc.accuracy_low.equals(accuracy_ci(sw, n_boot=300, seed=4).accuracy_low)
    assert acc.attrs["baseline_accuracy_low"] == float(lo)  # the same resamples
    none = link(sw, spectra, n_boot=0)
    assert np.isnan(none.tolerated_norm_loss_ci).all() and np.isnan(none.baseline_accuracy_ci).all()


def test_the_bootstrap_of_a_full_size_sweep_takes_well_under_ten_seconds():
    rng = np.random.default_rng(0)
    n_keep, n_image = 8, 2000
    base = (rng.random(n_image) < 0.9).astype(np.int8)
    points = {(f"l{i}", f"x{j}|y"): [(1 - (k + 1) / n_keep,
                                      np.where(rng.random(n_image) < 0.01 * k, 0, base))
                                     for k in range(n_keep)]
              for i in range(50) for j in range(5)}
    sw = image_sweep(points, base)
    assert sw.sizes == {"trial": 2000, "image": 2000}
    spectra = fake_spectra([f"l{i}" for i in range(50)], [f"x{j}|y" for j in range(5)],
                           {key: rng.random() for key in points})
    start = time.perf_counter()
    out = link(sw, spectra, n_boot=200)
    ci = accuracy_ci(sw, n_boot=200)
    assert time.perf_counter() - start < 10.0
    assert np.isfinite(out.tolerated_norm_loss_ci).all() and np.isfinite(ci.accuracy_low).all()


def test_an_old_sweep_without_per_image_results_still_links(real):
    sw, spectra = real
    old = single_trials(sw).drop_vars(NEW)
    for attr in ("n_test",):
        old.attrs.pop(attr)
    out = link(old, spectra, delta=2.0)
    assert out.attrs["n_test"] == sw.attrs["n_samples"] and out.attrs["per_image"] == 0
    for var in ("tolerated_norm_loss_ci", "baseline_accuracy_ci", "tolerated_output_error",
                "tolerated_norm_loss_aware"):
        assert np.isnan(out[var]).all(), var
    assert np.isfinite(out.drop_rho.sel(predictor="norm_loss", group="all"))
    assert np.isnan(out.drop_rho.sel(predictor="output_error")).all()
    assert int(out.n_pairs.max()) == 11
    assert np.isnan(accuracy_ci(old).accuracy_low).all()
    new = link(sw, spectra, delta=2.0, z=0)  # plain rule, same svd trials: same tolerances
    xr.testing.assert_equal(out.tolerated_norm_loss, new.tolerated_norm_loss)


def test_norm_loss_and_output_error_are_compared_as_predictors_of_the_drop():
    rng = np.random.default_rng(5)
    points, errors = {}, []
    for layer in ("a", "b"):
        pts = []
        for k in range(6):  # the drop follows the output error, not the norm loss
            pts.append((float(rng.random()), flipped(BASE, 10 * k, 0, k)))
            errors.append(0.1 * k)
        points[layer, "x|y"] = pts
    sw = image_sweep(points, BASE, {"output_error": ("trial", errors)})
    spectra = fake_spectra(["a", "b"], ["x|y"], {("a", "x|y"): 1.0, ("b", "x|y"): 2.0})
    out = link(sw, spectra)
    assert list(out.group.values) == ["a", "b", "all"]
    assert out.drop_rho.dims == ("predictor", "group")
    np.testing.assert_allclose(out.drop_rho.sel(predictor="output_error"), 1.0)
    assert (abs(out.drop_rho.sel(predictor="norm_loss")) < 1).all()
    assert out.drop_n.sel(group="all").values.tolist() == [12, 12]
    expect = spearmanr(sw.norm_loss.values[:6], 100 * (0.9 - sw.accuracy.values[:6]))
    assert float(out.drop_rho.sel(predictor="norm_loss", group="a")) == pytest.approx(
        expect.statistic)
    assert float(out.drop_p.sel(predictor="norm_loss", group="a")) == pytest.approx(expect.pvalue)


def test_data_aware_and_plain_truncation_are_compared_at_the_same_accuracy(real):
    sw, spectra = real
    assert set(single_trials(sw).truncation.values.tolist()) == {"svd"}
    aware = single_trials(sw, truncation="data-aware")
    assert aware.sizes["trial"] == 3 * 4
    assert scope_trials(sw, "layer", truncation=None).sizes["trial"] == sw.sizes["trial"]
    with pytest.raises(InputError, match="valid: svd, data-aware"):
        single_trials(sw, truncation="aware")
    out = link(sw, spectra, delta=2.0)
    assert out.aware_cut.values.tolist() == ["out|in,kh,kw", "out|in,kh,kw", "out|in"]
    for name, cut in zip(out.layer.values, out.aware_cut.values, strict=True):
        assert float(out.tolerated_norm_loss_svd.sel(layer=name)) == float(
            out.tolerated_norm_loss.sel(layer=name, cut=cut))
        rows = aware.isel(trial=np.flatnonzero(aware.layer.values == name))
        assert float(out.tolerated_norm_loss_aware.sel(layer=name)) == \
            tolerance_interval(rows, delta=2.0)[1]
    svd_only = link(sw.isel(trial=np.flatnonzero(sw.truncation.values == "svd")), spectra,
                    delta=2.0)
    assert np.isnan(svd_only.tolerated_norm_loss_aware).all()
    xr.testing.assert_identical(svd_only.tolerated_norm_loss, out.tolerated_norm_loss)


def seed_link(entropy: list[float]) -> xr.Dataset:
    """A link of five layers whose tolerances fall with the layer index."""
    layers = [f"l{i}" for i in range(5)]
    curves = {(name, "x|y"): [(0.0, 0.9, 4), (0.1 * (5 - i), 0.9, 2), (0.9, 0.5, 1)]
              for i, name in enumerate(layers)}
    ent = {(name, "x|y"): e for name, e in zip(layers, entropy, strict=True)}
    return link(fake_sweep(curves), fake_spectra(layers, ["x|y"], ent))


def test_across_seeds_says_which_correlations_hold_in_every_seed():
    rising = [0.1, 0.2, 0.3, 0.4, 0.5]  # tolerance falls as entropy rises: rho = -1
    same = [seed_link(rising), seed_link([0.2, 0.3, 0.4, 0.5, 0.6]), seed_link(rising)]
    out = across_seeds(same, [0, 1, 2])
    assert out.spearman_rho.dims == ("seed", "measure", "target")
    assert list(out.seed.values) == [0, 1, 2]
    key = {"measure": "entropy", "target": "tolerated_norm_loss"}
    assert bool(out.holds.sel(key))
    assert not bool(out.holds.sel(measure="log_chi_max", target="tolerated_norm_loss"))
    flipped_seed = across_seeds([*same[:2], seed_link(rising[::-1])], [0, 1, 2])
    assert not bool(flipped_seed.holds.sel(key))
    np.testing.assert_allclose(out.tolerated_norm_loss_mean.sel(cut="x|y"),
                               [0.5, 0.4, 0.3, 0.2, 0.1])
    assert (out.tolerated_norm_loss_min <= out.tolerated_norm_loss_max).all()
    # layers missing in one seed are NaN there; the others are kept
    part = across_seeds([same[0], same[1].isel(layer=[0, 1])], [7, 8])
    assert part.sizes["layer"] == 5 and list(part.group.values)[-1] == "all"
    assert np.isnan(part.tolerated_norm_loss.sel(seed=8, layer="l4")).all()
    assert float(part.tolerated_norm_loss_mean.sel(layer="l4", cut="x|y")) == pytest.approx(0.1)
    with pytest.raises(InputError, match="one seed per link"):
        across_seeds(same, [0, 1])
    with pytest.raises(InputError, match="distinct integers"):
        across_seeds(same, [0, 0, 1])
    with pytest.raises(InputError, match="output of corranalysis.link"):
        across_seeds([xr.Dataset()], [0])


def test_statistics_options_are_checked_with_the_input_named():
    sw = image_sweep({("a", "x|y"): [(0.0, BASE), (0.2, NOISY)]}, BASE)
    spectra = fake_spectra(["a"], ["x|y"], {("a", "x|y"): 1.0})
    with pytest.raises(InputError, match="z=-1"):
        link(sw, spectra, z=-1)
    with pytest.raises(InputError, match="n_boot"):
        link(sw, spectra, n_boot=-5)
    with pytest.raises(InputError, match="seed"):
        accuracy_ci(sw, seed=1.5)
    with pytest.raises(InputError, match="level"):
        accuracy_ci(sw, level=95)
    with pytest.raises(InputError, match="trials"):
        accuracy_ci(xr.Dataset())
