"""The runtime: defaults that converge on real data, the one loop's hooks, fast CLI help."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from data_files import DEBIAN, needs_fashion
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.errors import InputError
from corranalysis.runtime import DEFAULT_OPTIM, Optim, fit, load_trained, lr_factor, train


@needs_fashion
@pytest.mark.parametrize("name", ["cnn4", "lenet5", "fc2"])
def test_each_small_zoo_model_learns_real_data_with_the_default_settings(name, tmp_path):
    run = train(name, "fashion-mnist", epochs=2, out=tmp_path / name, train_size=3000,
                test_size=1000, device="cpu", progress=False, data_dir=DEBIAN)
    losses = [h["train_loss"] for h in run["history"]]
    assert all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0] < math.log(10)  # below chance level, and still falling
    assert run["test_accuracy"] > 0.7
    assert run["config"]["lr"] == DEFAULT_OPTIM.lr and run["config"]["warmup"] > 0


def test_warmup_rises_linearly_then_the_schedule_decays():
    optim = Optim(lr=0.1, warmup=0.25, schedule="cosine")
    factors = [lr_factor(optim, s, 8) for s in range(8)]
    assert factors[:2] == [0.5, 1.0]  # 2 warm-up steps
    assert factors[2] == 1.0 and factors[2:] == sorted(factors[2:], reverse=True)
    assert lr_factor(Optim(warmup=0.0, schedule="constant"), 5, 8) == 1.0
    with pytest.raises(InputError, match="warmup 1.5 is invalid"):
        Optim(warmup=1.5)
    with pytest.raises(InputError, match="optimizer 'lion' is unknown; valid: sgd, adam"):
        Optim(optimizer="lion")


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16)


def test_fit_runs_steps_calls_its_hooks_and_records_the_start():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    steps, epochs = [], []
    done = fit(model, _data(), steps=6, test_data=_data(seed=1), device="cpu", progress=False,
               optim=Optim(lr=0.5, warmup=0.0),
               record_start=True, after_step=lambda m: steps.append(1),
               on_epoch=lambda e, m: epochs.append(e) or {"norm": float(m.weight.detach().norm())})
    assert len(steps) == 6 and epochs == [0, 1, 2]  # 4 steps, then 2 of the second epoch
    assert done.history["epoch"] == [0, 1, 2] and math.isnan(done.history["train_loss"][0])
    assert len(done.history["norm"]) == 3 and done.history["test_accuracy"][-1] > 0.5


def test_fit_resumes_from_its_state_file_to_the_same_weights(tmp_path):
    def run(epochs, state):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        fit(model, _data(), epochs=epochs, device="cpu", progress=False, checkpoint=state,
            identity={"run": "x"}, optim=Optim(lr=0.1))
        return model

    straight = run(3, None)
    part = tmp_path / "state.pt"
    # an interrupted run: the state after epoch 2 of a 3-epoch run
    torch.manual_seed(0)
    model = nn.Linear(4, 2)

    class Stop(Exception):
        pass

    def stop(history):
        if history["epoch"][-1] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(model, _data(), epochs=3, device="cpu", progress=False, checkpoint=part,
            identity={"run": "x"}, optim=Optim(lr=0.1), after_epoch=stop)
    resumed = run(3, part)
    assert torch.equal(resumed.weight, straight.weight)
    with pytest.raises(InputError, match="different run"):
        fit(nn.Linear(4, 2), _data(), epochs=3, device="cpu", progress=False, checkpoint=part,
            identity={"run": "y"}, optim=Optim(lr=0.1))


def test_load_trained_sizes_the_model_from_the_run_record(tmp_path):
    from corranalysis.models import create

    torch.save(create("fc2", 1, 4, image_size=8).state_dict(), tmp_path / "model.pt")
    (tmp_path / "run.json").write_text(json.dumps({"model": "fc2", "in_channels": 1,
                                                   "num_classes": 4, "image_size": 8}))
    trained = load_trained(tmp_path / "model.pt", device="cpu")
    assert trained.model_spec == "fc2" and trained.test is None
    assert trained.model.classifier[3].out_features == 4 and not trained.model.training
    with pytest.raises(InputError, match="does not fit model FC2"):
        load_trained({"classifier.1.weight": torch.zeros(3, 3)}, "fc2", device="cpu")


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom corranalysis.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules, 'xarray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "Usage" in out and out.strip().endswith("TORCH False False")
