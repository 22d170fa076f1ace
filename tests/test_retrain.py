"""Recovery (re-training a truncated model) and the sweep / retrain CLI verbs."""

from __future__ import annotations

import copy
import json
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_sweep import loader, tiny_cnn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.cli import main
from corranalysis.errors import InputError
from corranalysis.provenance import file_sha256
from corranalysis.retrain import auto_plan, retrain
from corranalysis.runtime import Optim, evaluate
from corranalysis.sweep import sweep
from corranalysis.truncation import truncated

PLAN = {"0": {"cuts": ["out|in,kh,kw"], "keep": "chi=1"},
        "3": {"cuts": ["out,in|kh,kw"], "keep": "frac=0.2"}}


def learnable(n=96, seed=0, shape=(1, 8, 8)) -> DataLoader:
    """Labels that a tiny CNN can learn: the class is the brightest of 10 pixel groups."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = x.flatten(1)[:, :60].reshape(n, 10, 6).mean(-1).argmax(1)
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)


def test_epoch_zero_is_the_truncated_start_and_epochs_are_recorded():
    model = tiny_cnn()
    with truncated(model, PLAN):
        start = evaluate(model, learnable(seed=1))
    ds = retrain(model, PLAN, learnable(), learnable(seed=1), epochs=2, optim=Optim(lr=0.05))
    assert list(ds.epoch.values) == [0, 1, 2] and ds.accuracy.dims == ("epoch",)
    assert float(ds.accuracy[0]) == start.accuracy and np.isnan(ds.train_loss[0])
    assert float(ds.norm_loss.isel(epoch=0).max()) < 1e-10  # float32 round-off only
    assert (ds.drift.isel(epoch=0) == 0).all()
    assert ds.attrs["truncated_accuracy"] == start.accuracy
    assert ds.attrs["mode"] == "dense"


def test_dense_moves_off_the_compressed_structure_projected_stays_on_it():
    dense = retrain(tiny_cnn(), PLAN, learnable(), learnable(seed=1), epochs=2,
                    optim=Optim(lr=0.05))
    model = tiny_cnn()
    proj = retrain(model, PLAN, learnable(), learnable(seed=1), epochs=2, optim=Optim(lr=0.05),
                   mode="projected")
    assert float(dense.norm_loss.isel(epoch=-1).max()) > 1e-6
    assert float(proj.norm_loss.max()) < 1e-10
    assert float(proj.drift.isel(epoch=-1).min()) > 0  # it did train
    w = model[0].weight.detach().reshape(6, -1)
    assert torch.linalg.matrix_rank(w) == 1  # chi=1 at out|in,kh,kw kept


def test_training_recovers_accuracy():
    model = tiny_cnn()
    ds = retrain(model, PLAN, learnable(n=192), learnable(n=192), epochs=4, optim=Optim(lr=0.05))
    assert float(ds.accuracy[-1]) > float(ds.accuracy[0])


def test_auto_plan_compresses_every_layer_it_can_within_the_budget():
    sw = sweep(tiny_cnn(), loader(), keeps="frac=1,frac=0.5,frac=0.1")
    plan = auto_plan(sw, 0.2)  # 353 of 1,766 parameters: more than the classifier must give
    tried = [json.loads(str(p)) for p in sw.plan.values]
    assert len(plan) >= 2
    assert all({name: entry} in tried for name, entry in plan.items())
    with pytest.raises(InputError, match="larger budget"):
        auto_plan(sw, 0.01)


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "frozen"}, "dense, projected, local"),
    ({"optim": {"optimizer": "lbfgs"}}, "sgd, adam"),
    ({"epochs": -1}, "epochs"),
])
def test_retrain_bad_arguments(kwargs, words):
    args = {"epochs": 1, **kwargs}
    with pytest.raises(InputError, match=words):
        if "optim" in args:
            args["optim"] = Optim(**args["optim"])
        retrain(tiny_cnn(), PLAN, learnable(), learnable(), **args)


# --------------------------------------------------------------------------- CLI


@dataclass
class _Info:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 8


def factory(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    return tiny_cnn()


@pytest.fixture
def fake_data(monkeypatch):
    """A stand-in ``corranalysis.data`` with one tiny synthetic data set ``tiny``."""
    from corranalysis.runtime import _load

    mod = types.SimpleNamespace(DATASETS={"tiny": _Info(), "rgb": _Info(in_channels=3)})

    def make_loaders(name, *, batch_size=256, eval_batch_size=1000, data_dir=None,
                     train_size=None, test_size=None, seed=0, device="cpu", download=True):
        shape = (mod.DATASETS[name].in_channels, 8, 8)
        return learnable(shape=shape), learnable(seed=1, n=test_size or 96, shape=shape), \
            mod.DATASETS[name]

    monkeypatch.setattr(_load, "DATASETS", mod.DATASETS)
    monkeypatch.setattr(_load, "make_loaders", make_loaders)
    return mod


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(tiny_cnn().state_dict(), path)
    return path


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return int(exc.value.code)


MODEL = "test_retrain:factory"


def test_cli_sweep_then_retrain_auto(fake_data, checkpoint, tmp_path):
    out = tmp_path / "sweep.nc"
    assert run_cli(["sweep", checkpoint, "--model", MODEL, "--dataset", "tiny", "--keeps",
                    "frac=1,frac=0.5,frac=0.1", "--plans", "layer,all-layers", "--out", out,
                    "--no-progress"]) == 0
    sw = xr.open_dataset(out, engine="h5netcdf").load()
    api = sweep(tiny_cnn(), learnable(seed=1), keeps="frac=1,frac=0.5,frac=0.1",
                plans="layer,all-layers")
    xr.testing.assert_equal(sw.drop_attrs(), api.drop_attrs())
    rec = tmp_path / "recovery.nc"
    assert run_cli(["retrain", checkpoint, "--model", MODEL, "--dataset", "tiny", "--plan",
                    "auto", "--sweep", out, "--budget", "0.5", "--epochs", "1", "--out", rec,
                    "--no-progress"]) == 0
    ds = xr.open_dataset(rec, engine="h5netcdf").load()
    assert ds.accuracy.dims == ("mode", "epoch") and list(ds["mode"].values) == [
        "control", "dense", "projected"]
    assert ds.attrs["model_sha256"] == sw.attrs["model_sha256"] == file_sha256(checkpoint)
    assert ds.attrs["budget"] == 0.5 and ds.attrs["compression"] > 1


def test_cli_retrain_with_a_plan_file(fake_data, checkpoint, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("'3':\n  cuts: ['out|in,kh,kw']\n  keep: frac=0.2\n")
    rec = tmp_path / "rec.nc"
    assert run_cli(["retrain", checkpoint, "--model", MODEL, "--dataset", "tiny", "--plan",
                    plan, "--epochs", "1", "--mode", "projected", "--out", rec,
                    "--no-progress"]) == 0
    assert xr.open_dataset(rec, engine="h5netcdf").sizes["epoch"] == 2


@pytest.mark.parametrize("case", ["bad-plan", "unknown-layer", "bad-checkpoint", "bad-shape",
                                  "unknown-cut", "bad-keep"])
def test_cli_bad_input_exits_2_and_writes_nothing(fake_data, checkpoint, tmp_path, case,
                                                  capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("{3: [unclosed\n" if case == "bad-plan" else
                    "features.9: {cuts: ['out|in'], keep: frac=0.2}\n")
    ckpt = checkpoint
    if case == "bad-checkpoint":
        ckpt = tmp_path / "other.pt"
        other = copy.deepcopy(tiny_cnn())
        other[6] = nn.Linear(128, 7)
        torch.save(other.state_dict(), ckpt)
    out = tmp_path / "out"
    out.mkdir()
    common = [ckpt, "--model", MODEL, "--dataset", "rgb" if case == "bad-shape" else "tiny",
              "--out", out / "x.nc", "--no-progress"]
    if case in ("bad-plan", "unknown-layer"):
        args = ["retrain", *common, "--plan", plan, "--epochs", "1"]
    else:
        args = ["sweep", *common, "--keeps", "chi=0" if case == "bad-keep" else "frac=0.5"]
        if case == "unknown-cut":
            args += ["--cuts", "out|depth"]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert {"bad-plan": "does not parse", "unknown-layer": "unknown layer",
            "bad-checkpoint": "does not fit", "bad-shape": "do not fit",
            "unknown-cut": "valid cuts", "bad-keep": "chi must be"}[case] in err
    assert list(out.iterdir()) == []
