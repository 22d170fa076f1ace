"""Training on a tiny synthetic data set: files, resume equality, overwrite refusal, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import xarray as xr
from data_files import Interrupted, KillingLoader, diagonal_pixels
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.errors import InputError
from corranalysis.kernels import load_into, load_state_dict
from corranalysis.models import create
from corranalysis.runtime import evaluate, train

SIDE = 8
INFO = SimpleNamespace(in_channels=1, num_classes=4, image_size=SIDE)


def _data(n: int, seed: int) -> TensorDataset:
    return diagonal_pixels(n, seed, SIDE)


def loaders(kill_at: int | None = None):
    train_ds, test_ds = _data(96, 1), _data(40, 2)
    gen = torch.Generator().manual_seed(0)
    if kill_at is None:
        tl = DataLoader(train_ds, batch_size=16, shuffle=True, generator=gen)
    else:
        tl = KillingLoader(train_ds, batch_size=16, shuffle=True, generator=gen, kill_at=kill_at)
    return tl, DataLoader(test_ds, batch_size=25), INFO


KW = dict(lr=0.05, batch_size=16, progress=False, device="cpu")


def _run(out: Path, epochs: int = 2, kill_at: int | None = None, **kw):
    return train("cnn4", "synthetic", epochs=epochs, out=out, loaders=loaders(kill_at),
                 **{**KW, **kw})


def test_train_writes_run(tmp_path):
    out = tmp_path / "run"
    run = _run(out, epochs=2, warmup=0.0)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.nc", "model.pt", "run.json"]
    assert json.loads((out / "run.json").read_text()) == json.loads(json.dumps(run))
    assert run["model"] == "cnn4" and run["epochs_completed"] == 2
    assert (run["in_channels"], run["num_classes"], run["image_size"]) == (1, 4, SIDE)
    assert run["config"]["epochs"] == 2 and run["config"]["optimizer"] == "sgd"
    assert run["device"] == "cpu" and run["amp"] is False
    assert {"torch", "numpy", "python"} <= set(run["package_versions"])
    assert 0 <= run["test_accuracy"] <= 1 and run["wall_seconds"] > 0
    ds = xr.open_dataset(out / "metrics.nc", engine="h5netcdf")
    assert list(ds.epoch.values) == [1, 2]
    assert set(ds.data_vars) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                 "lr", "epoch_seconds"}
    assert ds.lr.values[0] == pytest.approx(0.05) and ds.lr.values[1] == pytest.approx(0.025)
    assert ds.test_accuracy.values[-1] == pytest.approx(run["test_accuracy"])
    ds.close()
    # the weights reproduce the recorded test accuracy
    model = load_into(create("cnn4", 1, 4, image_size=SIDE), out / "model.pt")
    result = evaluate(model, loaders()[1], "cpu")
    acc, loss = result.accuracy, result.loss
    assert acc == pytest.approx(run["test_accuracy"]) and loss == pytest.approx(run["test_loss"])
    # rerunning a complete run does nothing and returns the same record
    mtime = (out / "model.pt").stat().st_mtime_ns
    assert _run(out, epochs=2, warmup=0.0) == run
    assert (out / "model.pt").stat().st_mtime_ns == mtime


def test_training_learns_and_is_deterministic(tmp_path):
    a = _run(tmp_path / "a", epochs=3, optimizer="adam", lr=5e-3)
    _run(tmp_path / "b", epochs=3, optimizer="adam", lr=5e-3)
    assert a["test_accuracy"] > 0.8 and a["history"][-1]["train_loss"] < 0.8
    sa, sb = load_state_dict(tmp_path / "a/model.pt"), load_state_dict(tmp_path / "b/model.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_after_interruption_equals_straight_run(tmp_path):
    straight = _run(tmp_path / "straight", epochs=3)
    out = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        _run(out, epochs=3, kill_at=3)  # dies as epoch 3 starts, after epoch 2's checkpoint
    assert (out / "checkpoint.pt").is_file() and not (out / "run.json").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed = _run(out, epochs=3)  # the same call again
    assert resumed["resumed_at_epochs"] == [3]
    assert not (out / "checkpoint.pt").exists()
    s1 = load_state_dict(tmp_path / "straight/model.pt")
    s2 = load_state_dict(out / "model.pt")
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    for h1, h2 in zip(straight["history"], resumed["history"], strict=True):
        h1.pop("epoch_seconds"), h2.pop("epoch_seconds")
        assert h1 == h2


def test_adam_step_schedule_and_label_smoothing(tmp_path):
    run = _run(tmp_path / "r", epochs=4, optimizer="adam", lr=1e-3, schedule="step",
               label_smoothing=0.1, warmup=0.0)
    assert [h["lr"] for h in run["history"]] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])


def test_different_run_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    first = _run(out, epochs=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(InputError, match=r"holds a different run \(lr 0.05 vs 0.1\).*--overwrite"):
        _run(out, epochs=1, lr=0.1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    second = _run(out, epochs=1, lr=0.1, overwrite=True)
    assert second["config"]["lr"] == 0.1 and first["config"]["lr"] == 0.05


@pytest.mark.parametrize("kw, match", [
    (dict(optimizer="rmsprop"), "optimizer 'rmsprop' is unknown; valid: sgd, adam, adamw"),
    (dict(schedule="linear"), "schedule 'linear' is unknown"),
    (dict(epochs=0), "epochs 0 is invalid"),
    (dict(lr=-1.0), "lr -1.0 is invalid"),
    (dict(device="tpu"), "device 'tpu' is unknown"),
])
def test_bad_arguments_write_nothing(tmp_path, kw, match):
    out = tmp_path / "run"
    with pytest.raises(InputError, match=match):
        _run(out, **kw)
    assert not out.exists()


def test_unknown_model_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="model 'cnn5' is unknown; valid: cnn4, fc2"):
        train("cnn5", "synthetic", epochs=1, out=tmp_path / "r", loaders=loaders(), **KW)
    assert not (tmp_path / "r").exists()


def test_evaluate_matches_manual_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 4)).train()
    test = loaders()[1]
    result = evaluate(model, test, "cpu")
    acc, loss = result.accuracy, result.loss
    x, y = test.dataset.tensors
    with torch.no_grad():
        logits = model(x)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert model.training
    with pytest.raises(InputError, match="empty"):
        evaluate(model, [], "cpu")


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_formats_and_mismatch(tmp_path):
    model = create("cnn4", 1, 10)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("plain.pt", "wrapped.pt"):
        other = load_into(create("cnn4", 1, 10), tmp_path / name)
        assert torch.equal(other.features[0].weight, model.features[0].weight)
    with pytest.raises(InputError, match=r"shape mismatches 2 \(features.0.weight \(32, 1, 3, 3\) "
                                         r"vs model \(32, 3, 3, 3\), classifier.2.weight"):
        load_into(create("cnn4", 3, 10, image_size=32), tmp_path / "plain.pt")
    with pytest.raises(InputError) as err:
        load_into(create("lenet5", 1, 10), tmp_path / "plain.pt")
    msg = str(err.value)
    assert "missing keys 6 (classifier.1.weight, classifier.1.bias" in msg
    assert "unexpected keys 6 (features.5.weight, features.5.bias" in msg
    assert "shape mismatches 4 (features.0.weight (32, 1, 3, 3) vs model (6, 1, 5, 5)" in msg
    with pytest.raises(InputError, match=r"missing keys 122 \(conv1.weight, .* and 117 more\)"):
        load_into(create("resnet18", 1, 10), tmp_path / "plain.pt")


def test_checkpoint_needing_code_is_refused(tmp_path):
    torch.save({"model": SimpleNamespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="arbitrary code"):
        load_state_dict(tmp_path / "evil.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str) -> int:
    from corranalysis.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_unknown_model_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code = _cli("train", "--model", "nope", "--dataset", "fashion-mnist", "--epochs", "1",
                "--out", out)
    assert code == 2
    assert "model 'nope' is unknown; valid: cnn4" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture
def stub_data(monkeypatch):
    """A stand-in ``corranalysis.data`` serving the synthetic set as ``fashion-mnist``."""
    info = SimpleNamespace(name="fashion-mnist", in_channels=1, image_size=SIDE, num_classes=4,
                           mean=(0.0,), std=(1.0,))
    from corranalysis.runtime import _load, _train

    for module in (_load, _train):
        monkeypatch.setattr(module, "DATASETS", {"fashion-mnist": info})
        monkeypatch.setattr(module, "make_loaders", lambda name, **kw: loaders())
    monkeypatch.setattr(_train, "dataset_checksum", lambda name, data_dir=None: "stub-checksum")


def test_cli_train_then_evaluate(tmp_path, capsys, stub_data):
    out = tmp_path / "run"
    assert _cli("train", "--model", "cnn4", "--dataset", "fashion-mnist", "--epochs", "2",
                "--out", out, "--device", "cpu", "--no-progress", "--threads", "1") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["dataset_checksum"] == "stub-checksum" and run["config"]["batch_size"] == 32
    capsys.readouterr()
    # --model and --dataset come from run.json beside the checkpoint
    assert _cli("evaluate", out / "model.pt", "--json", "--device", "cpu") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == pytest.approx(run["test_accuracy"])
    assert printed["loss"] == pytest.approx(run["test_loss"])
    # the same command with another config is refused, nothing changes
    before = (out / "model.pt").read_bytes()
    assert _cli("train", "--model", "cnn4", "--dataset", "fashion-mnist", "--epochs", "3",
                "--out", out, "--no-progress") == 2
    assert "holds a different run (epochs 2 vs 3)" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before


def test_cli_unknown_dataset_and_bad_checkpoint_exit_2(tmp_path, capsys, stub_data):
    assert _cli("train", "--model", "cnn4", "--dataset", "imagenet", "--epochs", "1",
                "--out", tmp_path / "r") == 2
    assert "data set 'imagenet' is unknown; valid: fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    torch.save(create("cnn4", 3, 10).state_dict(), tmp_path / "c.pt")
    assert _cli("evaluate", tmp_path / "c.pt", "--model", "cnn4", "--dataset",
                "fashion-mnist") == 2
    assert "does not fit model CNN4" in capsys.readouterr().err
    assert _cli("evaluate", tmp_path / "c.pt", "--dataset", "fashion-mnist") == 2
    assert "give --model" in capsys.readouterr().err


def test_cli_defaults_are_the_runtimes(tmp_path):
    """The train verb shows and uses the runtime's one set of defaults."""
    import inspect

    from corranalysis.cli.train import train_cmd
    from corranalysis.runtime import BATCH_SIZE, DEFAULT_OPTIM

    shown = {name: getattr(p.default, "default", p.default)
             for name, p in inspect.signature(train_cmd).parameters.items()}
    for key, value in DEFAULT_OPTIM.as_dict().items():
        assert shown[key] == value, key
    assert shown["batch_size"] == BATCH_SIZE
    api = inspect.signature(train).parameters
    assert {k: api[k].default for k in DEFAULT_OPTIM.as_dict()} == DEFAULT_OPTIM.as_dict()
