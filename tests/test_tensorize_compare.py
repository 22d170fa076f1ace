"""Plain truncation kept factorised (``svd``), tensorize runs that resume, timing, and the
equal-budget comparison of all methods."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from data_files import Interrupted, KillingLoader, diagonal_pixels
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.errors import InputError
from corranalysis.io import read_netcdf
from corranalysis.models import create
from corranalysis.runtime import time_steps
from corranalysis.tensorize import apply, load, plan, validate_spec
from corranalysis.tensorize.compare import compare
from corranalysis.tensorize.factorized import (
    CONV_CUTS,
    FactorizedConv2d,
    FactorizedLinear,
    cut_size,
    norm_loss_at,
)
from corranalysis.tensorize.run import STATE_FILE, tensorize_run
from corranalysis.truncation import truncate

SIDE = 8


@pytest.mark.parametrize("cut", CONV_CUTS)
def test_a_factorised_conv_computes_the_truncated_kernel_exactly(cut: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1).double()
    chi = min(cut_size(tuple(conv.weight.shape), cut)) // 2
    layer = FactorizedConv2d(conv, cut, chi).double()
    err = layer.load_dense(conv.weight, conv.bias)
    truncated = truncate(conv.weight.detach(), cut, f"chi={chi}")
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    want = F.conv2d(x, truncated.weight, conv.bias, stride=2, padding=1)
    torch.testing.assert_close(layer(x), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.dense_weight(), truncated.weight, rtol=1e-10, atol=1e-12)
    assert err == pytest.approx(truncated.metrics.rel_error)


def test_a_factorised_linear_at_full_rank_is_the_dense_layer() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(7, 5).double()
    layer = FactorizedLinear(7, 5, 5).double()
    assert layer.load_dense(lin.weight, lin.bias) == pytest.approx(0.0, abs=1e-12)
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-10, atol=1e-12)


def test_svd_picks_the_cut_of_least_norm_loss_within_the_budget() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1))
    (p,) = plan(model, validate_spec({"0": {"method": "svd", "compression": 4}}))
    w, budget = model[0].weight, p.params_before / 4
    options = {}
    for cut in CONV_CUTS:
        a, b = cut_size(tuple(w.shape), cut)
        chi = min(a, b, int((budget - 24) // (a + b)))
        options[cut] = norm_loss_at(w, cut, chi)
    assert p.extra["cut"] == min(options, key=options.get)
    assert p.params_after <= budget
    with pytest.raises(InputError, match="svd cut 'out\\|in' does not apply"):
        plan(model, validate_spec({"0": {"method": "svd", "rank": 2, "cut": "out|in"}}))
    with pytest.raises(InputError, match="cannot reach compression"):
        plan(model, validate_spec({"0": {"method": "svd", "compression": 1e6}}))


def test_time_steps_measures_without_changing_the_model() -> None:
    torch.manual_seed(0)
    model = create("fc2", 1, 4, image_size=SIDE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(16, 1, SIDE, SIDE), torch.randint(0, 4, (16,))
    t = time_steps(model, x, y, x, repeats=3)
    assert t.step_seconds > 0 and t.inference_seconds > 0 and t.batch == 16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------- runs on a small real model
def _data(n: int, seed: int) -> TensorDataset:
    return diagonal_pixels(n, seed, SIDE)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cnn4.pt"
    torch.save(create("cnn4", 1, 4, image_size=SIDE).state_dict(), path)
    return path


def _loaders(kill_at: int | None = None):
    from types import SimpleNamespace

    info = SimpleNamespace(in_channels=1, num_classes=4, image_size=SIDE)
    train = KillingLoader(_data(64, 1), batch_size=16, shuffle=True,
                          generator=torch.Generator().manual_seed(0), kill_at=kill_at)
    return train, DataLoader(_data(40, 2), batch_size=20), info


SPEC = {"features.[1-9]*": {"method": "svd", "compression": 3}}


def test_a_killed_tensorize_run_resumes_and_equals_an_uninterrupted_one(tmp_path, checkpoint):
    kw = dict(epochs=3, seed=0, device="cpu", log=lambda s: None)
    straight = tensorize_run(checkpoint, "cnn4", None, SPEC, out=tmp_path / "a",
                             loaders=_loaders(), **kw)
    out = tmp_path / "b"
    # pass 1 takes the timing batch; passes 2, 3 are epochs 1, 2; pass 4 (epoch 3) dies
    with pytest.raises(Interrupted):
        tensorize_run(checkpoint, "cnn4", None, SPEC, out=out, loaders=_loaders(kill_at=4),
                      **kw)
    assert (out / STATE_FILE).is_file() and not (out / "tensorize.nc").exists()
    resumed = tensorize_run(checkpoint, "cnn4", None, SPEC, out=out, loaders=_loaders(), **kw)
    assert resumed.attrs["resumed_at_epochs"] == [3] or list(
        resumed.attrs["resumed_at_epochs"]) == [3]
    assert resumed.accuracy.values.tolist() == straight.accuracy.values.tolist()
    assert resumed.train_loss.values[1:].tolist() == pytest.approx(
        straight.train_loss.values[1:].tolist(), abs=0)
    assert not (out / STATE_FILE).exists()
    # finished: the same call recomputes nothing
    mtime = (out / "tensorize.nc").stat().st_mtime_ns
    again = tensorize_run(checkpoint, "cnn4", None, SPEC, out=out, loaders=_loaders(), **kw)
    assert (out / "tensorize.nc").stat().st_mtime_ns == mtime
    assert again.accuracy.values.tolist() == straight.accuracy.values.tolist()
    for key in ("step_seconds", "dense_step_seconds", "inference_seconds"):
        assert straight.attrs[key] > 0
    # the saved model rebuilds on a fresh base (the best cut was chosen on the trained
    # weights, not re-chosen on random ones) and predicts as it was evaluated
    model, spec = load(out / "tensorized.pt")
    assert all(set(e) >= {"cut", "rank"} for e in spec.values())
    x = _data(40, 2).tensors[0]
    acc = (model.eval()(x).argmax(1) == _data(40, 2).tensors[1]).float().mean().item()
    assert acc == pytest.approx(float(resumed.accuracy[-1]))


def test_compare_runs_every_method_at_each_budget_and_records_what_cannot_be_reached(
        tmp_path, checkpoint) -> None:
    data = (_data(64, 1), _data(40, 2))
    out = tmp_path / "cmp"
    ds = compare(checkpoint, "cnn4", data, layers="features.[1-9]*", out=out,
                 compressions=(2, 200), methods=("svd", "tucker", "cp", "mpo"), epochs=1,
                 batch_size=16, device="cpu", log=lambda s: None)
    assert set(ds.method.values) == {"svd", "tucker", "cp", "mpo"}
    reach = ds.reachable.to_series()
    assert reach[[f"{m}_2x" for m in ("svd", "tucker", "cp", "mpo")]].all()
    unreachable = ds.sel(variant=~ds.reachable)
    assert unreachable.sizes["variant"] >= 1
    assert all("cannot reach" in str(n) for n in unreachable.note.values)
    ok = ds.sel(variant=ds.reachable)
    assert (ok.params_after <= ok.params_before / ok.target + 1e-9).all()
    assert ok.accuracy.notnull().all() and (ok.step_seconds > 0).all()
    assert read_netcdf(out / "compare.nc").sizes == ds.sizes
    # a rerun recomputes no variant
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("variants/*/tensorize.nc")}
    compare(checkpoint, "cnn4", data, layers="features.[1-9]*", out=out,
            compressions=(2, 200), methods=("svd", "tucker", "cp", "mpo"), epochs=1,
            batch_size=16, device="cpu", log=lambda s: None)
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # gathering what has finished runs nothing and lists the rest as not run
    part = compare(checkpoint, "cnn4", data, layers="features.[1-9]*", out=out,
                   compressions=(2, 3), methods=("svd", "tucker", "cp", "mpo"), epochs=1,
                   batch_size=16, device="cpu", log=lambda s: None, finished_only=True)
    assert not (out / "variants" / "svd_3x").exists()
    assert list(part.reachable.sel(variant=["svd_2x", "svd_3x"]).values) == [True, False]
    assert str(part.note.sel(variant="svd_3x").values).startswith("not run")


@pytest.mark.parametrize("kw, match", [
    ({"compressions": (1,)}, "give numbers > 1"),
    ({"methods": ("svd", "tt")}, "is not compared"),
    ({"layers": "nothing.*"}, "matches no layer"),
])
def test_compare_refuses_bad_input_before_writing(tmp_path, checkpoint, kw, match) -> None:
    args = {"layers": "features.[1-9]*", "compressions": (2,), "methods": ("svd",), **kw}
    with pytest.raises(InputError, match=match):
        compare(checkpoint, "cnn4", (_data(64, 1), _data(40, 2)), out=tmp_path / "o",
                device="cpu", log=lambda s: None, **args)
    assert not (tmp_path / "o").exists()


def test_apply_with_svd_keeps_the_model_and_compresses(checkpoint) -> None:
    base = create("cnn4", 1, 4, image_size=SIDE)
    base.load_state_dict(torch.load(checkpoint))
    new, table = apply(base.eval(), SPEC)
    assert (table.compression >= 3).all() and set(table.method) == {"svd"}
    assert isinstance(new.features[3], FactorizedConv2d)
    assert isinstance(base.features[3], nn.Conv2d)
