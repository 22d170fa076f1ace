"""Sweeps: the trial grid, batch-major evaluation equal to the naive path, the dataset,
resuming after kill -9, and Dask workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.errors import InputError
from corranalysis.linkage import scope_trials, single_trials
from corranalysis.models import BasicBlock
from corranalysis.runtime import evaluate_variants
from corranalysis.sweep import _sweep as sweep_mod
from corranalysis.sweep import build_trials, default_keeps, sweep
from corranalysis.truncation import truncate

ROOT = Path(__file__).resolve().parents[1]


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


def tiny_resnet(seed: int = 0) -> nn.Module:
    """A stem conv, a block with a 1x1 downsample shortcut, one with identity, and a head."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        BasicBlock(8, 12, stride=2), BasicBlock(12, 12),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10),
    )
    for m in model.modules():  # non-trivial running stats so BatchNorm matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def loader(shape=(1, 8, 8), n=48, batch=16, seed=0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


KEEPS = "frac=1,frac=0.5,frac=0.2,loss=0.1"


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("make, shape", [(tiny_cnn, (1, 8, 8)), (tiny_resnet, (3, 8, 8))])
def test_batch_major_evaluation_equals_the_naive_one_exactly(make, shape):
    model = make()
    data = loader(shape)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    variants = []
    for name in layers:
        w = model.get_submodule(name).weight.detach()
        cut = "out|in,kh,kw" if w.ndim == 4 else "out|in"
        variants.append({name: truncate(w, cut, "chi=1").weight})
    variants.append({k: v for d in variants for k, v in d.items()})  # all layers at once
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base_fast, fast = evaluate_variants(model, data, variants, method="fast")
    base_naive, naive = evaluate_variants(model, data, variants, method="naive")
    assert base_fast == base_naive
    assert fast == naive  # accuracy *and* loss, bit for bit
    assert len({r.loss for r in fast}) > 1  # the variants do differ
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_sweep_fast_equals_naive_for_every_plan_mode():
    model, data = tiny_resnet(), loader((3, 8, 8))
    kw = dict(keeps=KEEPS, plans="layer,all-cuts,all-layers", layers="3.*,7")
    fast = sweep(model, data, **kw)
    naive = sweep(model, data, method="naive", **kw)
    xr.testing.assert_equal(fast, naive)
    assert fast.attrs["baseline_accuracy"] == naive.attrs["baseline_accuracy"]


# --------------------------------------------------------------------------- the dataset


def test_sweep_dataset_layout():
    model, data = tiny_cnn(), loader()
    ds = sweep(model, data, keeps=KEEPS, plans="layer,all-cuts,all-layers")
    assert ds.accuracy.dims == ("trial",)
    for v in ("accuracy", "loss", "norm_loss", "rel_error", "fidelity", "chi",
              "params_factorized"):
        assert v in ds
    assert {"scope", "layer", "cuts", "keep"} <= set(ds.coords)
    assert 0 <= ds.attrs["baseline_accuracy"] <= 1 and "version_torch" in ds.attrs
    # conv layers: 7 cuts, linear: 1 cut; 4 keeps; + all-cuts per layer; + all-layers per
    # cut label (7 conv cuts + out|in)
    n_layer = (7 + 7 + 1) * 4
    assert ds.sizes["trial"] == n_layer + 3 * 4 + 8 * 4
    cube = single_trials(ds).set_index(trial=["layer", "cuts", "keep"]).unstack("trial")
    assert cube.accuracy.dims == ("layer", "cuts", "keep")
    one = ds.where((ds.layer == "0") & (ds.keep == "frac=1"), drop=True)
    assert (one.accuracy == ds.attrs["baseline_accuracy"]).all() and (one.norm_loss == 0).all()
    single = single_trials(ds)
    lin = single.where((single.layer == "6") & (single.cuts == "out|in")
                       & (single.keep == "frac=0.2"), drop=True)
    assert int(lin.chi.item()) == 2 and int(lin.params_factorized.item()) == 2 * (10 + 128)


def test_the_scope_coordinate_says_what_each_trial_truncates():
    ds = sweep(tiny_cnn(), loader(), keeps="frac=0.5", plans="layer,all-cuts,all-layers")
    counts = {str(k): g.sizes["trial"] for k, g in ds.groupby("scope")}
    assert counts == {"layer": 7 + 7 + 1, "all-cuts": 3, "all-layers": 8}
    assert "all" not in set(ds.layer.values.tolist()) | set(ds.cuts.values.tolist())
    conv_cuts = single_trials(ds).where(single_trials(ds).layer == "0", drop=True).cuts
    all_cuts = scope_trials(ds, "all-cuts")
    assert all_cuts.layer.values.tolist() == ["0", "3", "6"]
    assert all_cuts.cuts.values[0] == ";".join(conv_cuts.values.tolist())
    assert all_cuts.cuts.values[2] == "out|in"
    all_layers = scope_trials(ds, "all-layers")
    by_cut = dict(zip(all_layers.cuts.values.tolist(), all_layers.layer.values.tolist(),
                      strict=True))
    assert by_cut["out|in,kh,kw"] == "0,3" and by_cut["out|in"] == "6"
    assert all_layers.n_layers.values.tolist() == [2] * 7 + [1]


def test_default_keeps_reach_one_singular_value_and_add_loss_budgets():
    keeps = default_keeps(36)
    fracs = [k.value for k in keeps if k.kind == "frac"]
    assert fracs[0] == 1.0 and np.ceil(fracs[-1] * 36) == 1 and np.ceil(fracs[-2] * 36) > 1
    assert any(k.kind == "loss" for k in keeps)


def test_cut_labels_apply_to_the_layers_they_fit():
    trials = build_trials(tiny_cnn(), cuts=["out|in"], keeps="chi=1")
    assert {t.layer for t in trials} == {"6"}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, words", [
    ({"layers": "features.*"}, "available layers: 0 (conv2d), 3 (conv2d), 6 (linear)"),
    ({"cuts": ["out|depth"]}, "valid cuts: 0: out|in,kh,kw"),
    ({"keeps": "frac=0"}, "(0, 1]"),
    ({"keeps": "chi=7"}, "exceeds chi_max"),
    ({"keeps": "loss=1"}, "[0, 1)"),
    ({"plans": "everything"}, "valid: layer, all-cuts, all-layers"),
])
def test_bad_input_is_an_input_error_and_writes_nothing(tmp_path, kwargs, words):
    out = tmp_path / "sweep.nc"
    with pytest.raises(InputError, match=words.replace("(", ".").replace(")", ".")
                       .replace("[", ".").replace("|", ".").replace("*", ".")):
        sweep(tiny_cnn(), loader(), out=out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_data_that_does_not_fit_the_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"inputs of shape \(3, 8, 8\) do not fit"):
        sweep(tiny_cnn(), loader((3, 8, 8)), keeps="frac=0.5", out=tmp_path / "s.nc")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- resume, workers

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from corranalysis.sweep import _sweep as S
    from test_sweep import tiny_cnn, loader, KEEPS
    inner = S.run_chunk
    def slow(*a, **k):
        time.sleep(0.4)
        return inner(*a, **k)
    S.run_chunk = slow
    S.sweep(tiny_cnn(), loader(), keeps=KEEPS, chunk_size=2, out={out!r}, resume=True)
""")


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_equal(a, b)
    skip = {"created", "git_commit"}
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {
        k: v for k, v in b.attrs.items() if k not in skip}


def test_resume_after_kill_9_recomputes_nothing_and_equals_an_uninterrupted_run(
        tmp_path, monkeypatch):
    out = tmp_path / "sweep.nc"
    parts = Path(f"{out}.parts")
    script = SCRIPT.format(tests=str(ROOT / "tests"), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("chunk-*.nc"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in parts.glob("chunk-*.nc")}
    assert len(finished) >= 3 and not out.exists()

    calls: list[list[int]] = []
    inner = sweep_mod.run_chunk

    def counting(source, trials, indices, *a, **k):
        calls.append(list(indices))
        return inner(source, trials, indices, *a, **k)

    monkeypatch.setattr(sweep_mod, "run_chunk", counting)
    resumed = sweep(tiny_cnn(), loader(), keeps=KEEPS, chunk_size=2, out=out, resume=True)
    n_chunks = -(-resumed.sizes["trial"] // 2)
    assert len(calls) == n_chunks - len(finished)
    assert out.exists() and not parts.exists()
    fresh = sweep(tiny_cnn(), loader(), keeps=KEEPS, chunk_size=2)
    _same(xr.open_dataset(out, engine="h5netcdf").load().drop_attrs(), fresh.drop_attrs())
    _same(resumed, fresh)


def test_resume_refuses_parts_of_another_sweep(tmp_path):
    out = tmp_path / "s.nc"
    parts = Path(f"{out}.parts")
    parts.mkdir()
    (parts / "manifest.json").write_text('{"fingerprint": "something else"}')
    with pytest.raises(InputError, match="different sweep"):
        sweep(tiny_cnn(), loader(), keeps="frac=0.5", out=out, resume=True)


def test_two_dask_workers_give_the_serial_result(tmp_path):
    pytest.importorskip("distributed")
    kw = dict(keeps=KEEPS, plans="layer,all-layers", chunk_size=5)
    serial = sweep(tiny_resnet(), loader((3, 8, 8)), **kw)
    spread = sweep(tiny_resnet(), loader((3, 8, 8)), workers=2, out=tmp_path / "s.nc", **kw)
    _same(spread, serial)
