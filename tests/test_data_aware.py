"""Data-aware measures: input Grams, output error, data-aware truncation, early stopping.

The oracle for the output error is the layer's own operation run on its real inputs in
float64; the oracle for the data-aware truncation is the whitened SVD written out by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_files import DEBIAN, needs_fashion
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from corranalysis.errors import InputError
from corranalysis.retrain import retrain
from corranalysis.runtime import (
    StopRule,
    evaluate_variants,
    input_grams,
    load_trained,
    output_error,
    train,
)
from corranalysis.sweep import sweep
from corranalysis.truncation import apply_plan, resolve_plan, truncate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """cnn4 trained one epoch on 3,000 real Fashion-MNIST images, 400 test images."""
    if not DEBIAN.is_dir():
        pytest.skip("dataset-fashion-mnist absent")
    run = tmp_path_factory.mktemp("cnn4")
    train("cnn4", "fashion-mnist", epochs=1, out=run, train_size=3000, test_size=400,
          device="cpu", progress=False, data_dir=DEBIAN)
    return load_trained(run / "model.pt", train_size=1000, test_size=400, eval_batch_size=100,
                        data_dir=DEBIAN, device="cpu")


def _layer_inputs(model: nn.Module, data, name: str) -> torch.Tensor:
    seen = []
    handle = dict(model.named_modules())[name].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        for x, _ in data:
            model(x)
    handle.remove()
    return torch.cat(seen)


def conv_padding(model: nn.Module) -> tuple[int, ...]:
    return dict(model.named_modules())["features.5"].padding


@pytest.mark.parametrize("module", [
    nn.Conv2d(3, 5, 3, padding=1, stride=2),
    nn.Conv2d(3, 4, (3, 2), padding=(1, 0), dilation=(1, 2)),
    nn.Conv1d(3, 6, 5, padding=2),
    nn.Linear(7, 4),
], ids=["conv2d-strided", "conv2d-dilated", "conv1d", "linear"])
def test_the_input_gram_gives_the_output_error_of_the_layer_on_its_inputs(module):
    torch.manual_seed(0)
    shape = {nn.Conv2d: (12, 3, 9, 8), nn.Conv1d: (12, 3, 11), nn.Linear: (12, 7)}[type(module)]
    x = torch.randn(*shape)
    data = [(x[:6], torch.zeros(6, dtype=torch.long)), (x[6:], torch.zeros(6, dtype=torch.long))]
    gram = input_grams(nn.Sequential(module), data, ["0"], "cpu")["0"]
    w = module.weight.detach()
    new = w + 0.3 * torch.randn_like(w)
    f64 = module.double()
    with torch.no_grad():
        def run(weight):
            saved = f64.weight.detach().clone()
            f64.weight.copy_(weight.double())
            f64.bias.zero_()
            out = f64(x.double())
            f64.weight.copy_(saved)
            return out
        expected = float(((run(new) - run(w)) ** 2).sum() / (run(w) ** 2).sum())
    assert output_error(w, new, gram) == pytest.approx(expected, rel=1e-10)


@needs_fashion
def test_the_data_aware_truncation_is_the_whitened_svd_and_never_worse_on_the_data(trained):
    model = trained.model
    x = _layer_inputs(model, trained.test, "features.5")
    gram = input_grams(model, trained.test, ["features.5"], "cpu")["features.5"]
    w = dict(model.named_modules())["features.5"].weight.detach()
    m = w.double().reshape(w.shape[0], -1).numpy()
    lam, q = np.linalg.eigh(gram.numpy())
    half = q @ np.diag(np.sqrt(np.clip(lam, 0, None))) @ q.T
    u = np.linalg.svd(m @ half)[0]
    for chi in (1, 4, 16, 31):
        aware = truncate(w, "out|in,kh,kw", f"chi={chi}", gram=gram)
        plain = truncate(w, "out|in,kh,kw", f"chi={chi}")
        oracle = u[:, :chi] @ u[:, :chi].T @ m
        np.testing.assert_allclose(aware.weight.double().reshape(m.shape).numpy(), oracle,
                                   atol=1e-5 * np.abs(m).max())
        e_aware = output_error(w, aware.weight, gram)
        assert e_aware <= output_error(w, plain.weight, gram) + 1e-9
        # the measured output error on the real activations agrees with the Gram's
        with torch.no_grad():
            def conv(k):
                return F.conv2d(x.double(), k.double(), padding=conv_padding(model))
            direct = float(((conv(aware.weight) - conv(w)) ** 2).sum() / (conv(w) ** 2).sum())
        assert e_aware == pytest.approx(direct, rel=1e-4)
        # W~ is an orthogonal projection of W, so its norm loss is the discarded norm
        assert aware.metrics.norm_loss == pytest.approx(
            float(((aware.weight - w) ** 2).sum() / (w ** 2).sum()), rel=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), out=st.integers(2, 8), d=st.integers(2, 12),
       eps=st.sampled_from([0.0, 0.01, 0.1, 0.5]))
def test_a_loss_budget_of_the_data_aware_truncation_is_an_output_error_budget(seed, out, d, eps):
    g = np.random.default_rng(seed)
    w = torch.tensor(g.normal(size=(out, d)))
    a = g.normal(size=(3 * d, d)) * g.uniform(0.1, 3, size=d)
    gram = torch.tensor(a.T @ a)
    t = truncate(w, "out|in", f"loss={eps}", gram=gram)
    assert output_error(w, t.weight, gram) <= eps + 1e-9
    if t.metrics.chi[0] > 1:
        fewer = truncate(w, "out|in", f"chi={t.metrics.chi[0] - 1}", gram=gram)
        assert output_error(w, fewer.weight, gram) > eps


def test_a_data_aware_truncation_names_the_one_cut_it_works_on():
    w = torch.randn(4, 3, 3, 3)
    gram = torch.eye(27, dtype=torch.float64)
    with pytest.raises(InputError, match=r"one cut, out\|rest"):
        truncate(w, "in|out,kh,kw", "chi=2", gram=gram)
    with pytest.raises(InputError, match=r"does not fit .* expected \(27, 27\)"):
        truncate(w, "out|in,kh,kw", "chi=2", gram=torch.eye(5, dtype=torch.float64))
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    plan = {"0": {"cuts": ["out|in,kh,kw"], "keep": "chi=2", "truncation": "data-aware"}}
    with pytest.raises(InputError, match="needs the layer's input Gram"):
        apply_plan(model, plan)
    with pytest.raises(InputError, match="truncation 'whitened' is unknown; valid: svd, "
                                         "data-aware"):
        resolve_plan(model, {"0": {**plan["0"], "truncation": "whitened"}})


@needs_fashion
def test_a_sweep_reports_output_errors_and_data_aware_trials_on_real_data(trained):
    model = trained.model
    ds = sweep(model, trained.test, layers="features.5,classifier.*", cuts="out|in,kh,kw;out|in",
               keeps="frac=0.5,frac=0.1", truncations=("svd", "data-aware"),
               calibration=trained.train, device="cpu")
    assert set(ds.truncation.values) == {"svd", "data-aware"}
    assert ds.attrs["n_test"] == 400 and ds.sizes["image"] == 400
    assert (ds.n_images == 400).all() and not ds.stopped.any()
    np.testing.assert_allclose(ds.accuracy, (ds.correct == 1).sum("image") / 400)
    # the sweep's output error is the layer's, measured on the evaluation images
    row = ds.isel(trial=int(np.flatnonzero((ds.truncation == "svd").values
                                           & (ds.layer == "features.5").values)[1]))
    w = dict(model.named_modules())["features.5"].weight.detach()
    x = _layer_inputs(model, trained.test, "features.5")
    t = truncate(w, "out|in,kh,kw", str(row.keep.values))
    with torch.no_grad():
        def conv(k):
            return F.conv2d(x.double(), k.double(), padding=conv_padding(model))
        direct = float(((conv(t.weight) - conv(w)) ** 2).sum() / (conv(w) ** 2).sum())
    assert float(row.output_error) == pytest.approx(direct, rel=1e-4)
    # calibrated on training images, the data-aware trials still lose less on test inputs
    for layer in ("features.5",):
        for keep in ("frac=0.5", "frac=0.1"):
            pick = (ds.layer == layer) & (ds.keep == keep)
            aware = ds.output_error.where(pick & (ds.truncation == "data-aware"),
                                          drop=True).item()
            plain = ds.output_error.where(pick & (ds.truncation == "svd"), drop=True).item()
            assert aware < plain


@needs_fashion
def test_early_stopping_leaves_every_unstopped_trial_bit_identical(trained):
    model = trained.model
    kwargs = dict(layers="features.0,features.5", keeps="frac=0.9,frac=0.3,chi=1", device="cpu")
    full = sweep(model, trained.test, **kwargs)
    early = sweep(model, trained.test, stop_drop=1.0, **kwargs)
    stopped = early.stopped.values.astype(bool)
    assert stopped.any() and not stopped.all()
    np.testing.assert_array_equal(early.accuracy.values[~stopped], full.accuracy.values[~stopped])
    np.testing.assert_array_equal(early.correct.values[~stopped], full.correct.values[~stopped])
    base = float(full.attrs["baseline_accuracy"])
    for i in np.flatnonzero(stopped):
        n = int(early.n_images[i])
        assert n < 400 and (early.correct.values[i, n:] == -1).all()
        assert 100 * (base - float(full.accuracy[i])) > 1.0  # the full data agrees: a real drop
    with pytest.raises(InputError, match="stop_drop=-1"):
        sweep(model, trained.test, stop_drop=-1, **kwargs)


@needs_fashion
def test_stopping_within_the_drop_gives_paired_estimates_near_the_full_data(trained):
    model = trained.model
    kwargs = dict(layers="features.0,features.5", keeps="frac=0.9,frac=0.6,frac=0.3,chi=1",
                  device="cpu")
    delta = 3.0
    full = sweep(model, trained.test, **kwargs)
    early = sweep(model, trained.test, stop_drop=delta, stop_within=True, **kwargs)
    base = float(full.attrs["baseline_accuracy"])
    stopped = early.stopped.values.astype(bool)
    within = stopped & (100 * np.abs(base - early.accuracy.values) < delta)
    assert within.any() and not stopped.all()
    np.testing.assert_array_equal(early.accuracy.values[~stopped], full.accuracy.values[~stopped])
    base_correct = early.baseline_correct.values.astype(float)
    for i in np.flatnonzero(stopped):
        n = int(early.n_images[i])
        seen = early.correct.values[i, :n].astype(float)
        assert n < 400 and (early.correct.values[i, n:] == -1).all()
        # the paired estimate: the baseline on all images minus the difference on those seen
        assert float(early.accuracy[i]) == pytest.approx(
            base - (base_correct[:n] - seen).mean(), abs=1e-12)
    for i in np.flatnonzero(within):
        # the stated tolerance: the full data agrees the trial stays within the drop
        assert 100 * abs(base - float(full.accuracy[i])) <= delta
        assert 100 * abs(float(early.accuracy[i]) - float(full.accuracy[i])) < delta
    with pytest.raises(InputError, match="stop_within"):
        sweep(model, trained.test, stop_within=True, **kwargs)


def test_the_stop_rule_waits_for_evidence_beyond_the_drop():
    base = np.ones(1000, dtype=bool)
    worse = base.copy()
    worse[::5] = False  # 20 points worse
    rule = StopRule(drop=1.0)
    assert not rule.stops(base[:1], worse[:1])
    assert rule.stops(base[:200], worse[:200])
    near = base.copy()
    near[::80] = False  # 1.25 points worse: not certain beyond 1 point
    assert not rule.stops(base, near)
    within = StopRule(drop=1.0, within=True)
    assert not within.stops(base[:200], base[:200])  # no change seen yet is not certainty
    assert within.stops(base[:400], base[:400]) and not rule.stops(base[:400], base[:400])
    assert not within.stops(base, near)  # 1.25 points off: not within 1 point
    better = base.copy()
    better[:] = True
    worse_base = base.copy()
    worse_base[::50] = False  # the variant 2 points better: not within 1 point either way
    assert not within.stops(worse_base, better)
    model = nn.Sequential(nn.Linear(4, 2))
    x = torch.randn(64, 4)
    y = model(x).argmax(1).detach()
    data = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    broken = {"0": torch.zeros_like(model[0].weight)}
    base_r, [r] = evaluate_variants(model, data, [broken], "cpu", stop=StopRule(drop=5.0, z=1.0))
    assert base_r.n == 64 and r.n < 64 and r.correct.shape == (r.n,)


@needs_fashion
def test_retraining_keeps_a_data_aware_truncation_in_projected_mode(trained):
    import copy

    plan = {"features.5": {"cuts": ["out|in,kh,kw"], "keep": "frac=0.25",
                           "truncation": "data-aware"}}
    ds = retrain(copy.deepcopy(trained.model), plan, trained.train, trained.test, 1,
                 mode="projected", device="cpu")
    assert json.loads(ds.attrs["plan"])["features.5"]["truncation"] == "data-aware"
    assert float(ds.norm_loss.isel(epoch=-1).max()) < 1e-6  # still the same rank after training
    assert ds.seconds.values[0] == 0 and ds.seconds.values[-1] > 0
