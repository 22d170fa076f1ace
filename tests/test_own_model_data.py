"""Your own model and your own data through every stage: an embedding's legs ``token|dim``
in plans and sweeps, torch Datasets and DataLoaders wherever a data set is taken, weight
files of every format in ``load_trained``, and the CLI on an ``.npz`` data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import save_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import corranalysis as ca
from corranalysis.errors import InputError
from corranalysis.retrain import retrain
from corranalysis.runtime import evaluate, load_trained, train
from corranalysis.sweep import sweep
from corranalysis.truncation import Plan, resolve_plan, truncate, truncated

TOKENS, DIM, SIDE = 8, 4, 6


class Mixed(nn.Module):
    """Pixels quantised to tokens -> embedding -> conv -> a linear head tied to the
    embedding (one Parameter under ``embed.weight`` and ``head.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(TOKENS, DIM)
        self.conv = nn.Conv2d(DIM, DIM, 3, padding=1)
        self.head = nn.Linear(DIM, TOKENS, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = (x[:, 0].clamp(0, 1) * (TOKENS - 1)).round().long()
        h = self.embed(tokens).permute(0, 3, 1, 2)
        return self.head(torch.relu(self.conv(h)).mean((2, 3)))


def _images(n: int, seed: int, classes: int = TOKENS, side: int = SIDE) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, 1, side, side, generator=g) * 0.3
    x[torch.arange(n), 0, y % side, y % side] += 1.0  # learnable: a bright pixel
    return TensorDataset(x, y)


@pytest.fixture
def mixed_file(tmp_path):
    torch.manual_seed(0)
    model = Mixed()
    path = tmp_path / "mixed.safetensors"
    save_model(model, str(path))  # the tied weight is stored once
    return model, path


# ------------------------------------------------------------------ embedding legs
def test_an_embedding_is_truncated_and_swept_on_the_cut_its_spectra_name(mixed_file):
    model, path = mixed_file
    test = _images(40, 1)
    trained = load_trained(path, Mixed(), test, device="cpu")
    net = trained.model
    assert net.head.weight is net.embed.weight  # the tie survives: filled from its twin
    assert torch.equal(net.embed.weight, model.embed.weight)
    spectra = ca.compute_spectra(ca.extract_kernels(path))
    assert "token|dim" in spectra.cut.values

    plan = {"embed": {"cuts": ["token|dim"], "keep": "chi=2"}}
    entry = resolve_plan(net, plan).entries["embed"]
    assert entry.cuts == ("token|dim",) and entry.kind == "embedding"
    assert json.loads(Plan({"embed": entry}).to_json()) == {
        "embed": {"cuts": ["token|dim"], "keep": "chi=2"}}  # plan JSON as before
    before = net.embed.weight.detach().clone()
    with truncated(net, plan) as metrics:
        assert metrics["embed"].cuts == ("token|dim",) and metrics["embed"].chi == (2,)
        assert torch.linalg.matrix_rank(net.embed.weight.detach()) == 2
        truncated_acc = evaluate(net, trained.test, "cpu").accuracy
    assert torch.equal(net.embed.weight, before)
    with pytest.raises(InputError, match=r"legs: token, dim"):
        resolve_plan(net, {"embed": {"cuts": ["out|in"], "keep": "chi=2"}})
    with pytest.raises(InputError, match=r"data-aware truncation takes one cut.*token, dim"):
        resolve_plan(net, {"embed": {"cuts": ["token|dim"], "keep": "chi=2",
                                     "truncation": "data-aware"}})
    w = net.embed.weight.detach()
    by_kind = truncate(w, "token|dim", "chi=2", kind="embedding")
    assert torch.equal(by_kind.weight, truncated_embedding(w, 2))

    ds = sweep(net, test, keeps="chi=2,frac=1", device="cpu")
    assert set(ds.cuts.values) <= set(spectra.cut.values)
    emb = ds.where(ds.layer == "embed", drop=True)
    assert list(emb.cuts.values) == ["token|dim", "token|dim"]
    assert float(emb.accuracy[0]) == pytest.approx(truncated_acc)
    assert float(emb.accuracy[1]) == pytest.approx(ds.attrs["baseline_accuracy"])  # all kept
    only = sweep(net, test, layers="embed", cuts="token|dim", keeps="chi=1", device="cpu")
    assert list(only.cuts.values) == ["token|dim"] and np.isnan(only.output_error).all()


def truncated_embedding(w: torch.Tensor, chi: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
    return ((u[:, :chi] * s[:chi]) @ vh[:chi]).to(w.dtype)


def test_a_transposed_convolution_is_still_cut_on_its_stored_legs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ConvTranspose2d(4, 3, 3),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    plan = resolve_plan(net, {"1": {"cuts": ["in|out,kh,kw"], "keep": "chi=2",
                                    "transposed": True}})  # older plan JSON still reads
    assert plan.entries["1"].transposed and plan.entries["1"].kind == "conv_transpose2d"
    w = net[1].weight.detach()
    got = plan.entries["1"].truncate(w).weight
    want = truncated_embedding(w.reshape(4, -1), 2).reshape(w.shape)
    assert torch.allclose(got, want, atol=1e-6)
    ds = sweep(net, _images(12, 2, classes=3), layers="1", keeps="chi=1", device="cpu")
    chi_max = ca.compute_spectra(ca.extract_kernels(net))["chi_max"].sel(layer="1")
    assert set(ds.cuts.values) == set(chi_max.cut.values[np.isfinite(chi_max.values)])


# ------------------------------------------------------------------ Datasets in the API
def test_train_on_a_pair_of_datasets_records_a_checksum_and_resumes_from_it(tmp_path):
    train_ds, test_ds = _images(64, 1, classes=4, side=8), _images(24, 2, classes=4, side=8)
    kw = dict(epochs=1, out=tmp_path / "run", batch_size=16, device="cpu", progress=False)
    run = train("cnn4", (train_ds, test_ds), **kw)
    text = (tmp_path / "run" / "run.json").read_text()
    assert run["dataset"] == "given Datasets" and run["dataset_format"] == "datasets"
    assert len(run["dataset_checksum"]) == 64
    assert run["config"]["dataset_checksum"] == run["dataset_checksum"]
    assert " at 0x" not in text and "TensorDataset" not in text  # no memory address
    assert train("cnn4", (train_ds, test_ds), **kw)["created"] == run["created"]  # complete
    with pytest.raises(InputError, match="holds a different run .*dataset_checksum"):
        train("cnn4", (train_ds, _images(24, 3, classes=4, side=8)), **kw)

    alone = load_trained(tmp_path / "run" / "model.pt", device="cpu")  # from run.json
    assert alone.test is None and alone.info.num_classes == 4 and alone.info.image_size == 8
    again = load_trained(tmp_path / "run" / "model.pt", dataset=(train_ds, test_ds),
                         device="cpu")
    assert again.dataset == "given Datasets"
    assert evaluate(again.model, again.test, "cpu").accuracy == pytest.approx(
        run["test_accuracy"])

    g = torch.Generator().manual_seed(0)
    loaders = (DataLoader(train_ds, batch_size=16, shuffle=True, generator=g),
               DataLoader(test_ds, batch_size=10))
    run2 = train("cnn4", loaders, **{**kw, "out": tmp_path / "run2"})
    assert run2["dataset"] == "given DataLoaders" and len(run2["dataset_checksum"]) == 64
    assert (run2["in_channels"], run2["num_classes"], run2["image_size"]) == (1, 4, 8)
    with pytest.raises(InputError, match="not evaluation data alone"):
        train("cnn4", test_ds, **{**kw, "out": tmp_path / "run3"})
    assert not (tmp_path / "run3").exists()


def test_sweep_takes_a_dataset_as_its_loader(small_cnn):
    test = _images(30, 4, classes=10, side=8)
    x = torch.cat([test.tensors[0]] * 3, dim=1)  # three channels for small_cnn
    test = TensorDataset(x, test.tensors[1])
    kw = dict(layers="0", cuts="out|in,kh,kw", keeps="chi=1,chi=4", device="cpu")
    given = sweep(small_cnn, test, **kw)
    loader = sweep(small_cnn, DataLoader(test, batch_size=30), **kw)
    xr.testing.assert_equal(given.accuracy, loader.accuracy)
    assert given.attrs["n_test"] == 30


def test_retrain_takes_datasets_and_refuses_one_of_each(small_cnn):
    base = _images(48, 5, classes=10, side=8)
    train_ds = TensorDataset(torch.cat([base.tensors[0]] * 3, 1), base.tensors[1])
    test = _images(20, 6, classes=10, side=8)
    test_ds = TensorDataset(torch.cat([test.tensors[0]] * 3, 1), test.tensors[1])
    plan = {"6": {"cuts": ["out|in"], "keep": "chi=2"}}
    ds = retrain(small_cnn, plan, train_ds, test_ds, 1, device="cpu", batch_size=16)
    assert ds.sizes["epoch"] == 2 and ds.attrs["n_test"] == 20
    with pytest.raises(InputError, match="not one of each"):
        retrain(small_cnn, plan, train_ds, DataLoader(test_ds), 1, device="cpu")


def test_load_trained_names_every_weight_format(tmp_path):
    with pytest.raises(InputError, match=r"does not exist; give the path of a weight file "
                                         r"\(\.pt, \.safetensors, \.npz or \.onnx\)"):
        load_trained(tmp_path / "missing.safetensors", "cnn4")


# ------------------------------------------------------------------ the CLI
def test_the_cli_trains_on_an_npz_file_and_sweeps_the_result(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(60) % 3, np.arange(15) % 3
    x_train = rng.integers(0, 60, (60, 8, 8), dtype=np.uint8)
    x_test = rng.integers(0, 60, (15, 8, 8), dtype=np.uint8)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x[np.arange(len(y)), y * 2, y * 2] = 255
    npz = tmp_path / "own.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    code, out = run_cli("train", "--model", "cnn4", "--dataset", npz, "--epochs", 1,
                        "--out", tmp_path / "run", "--batch-size", 16, "--device", "cpu",
                        "--no-progress")
    assert code == 0, out
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dataset"] == str(npz) and run["dataset_format"] == "npz"
    assert (run["in_channels"], run["num_classes"], run["image_size"]) == (1, 3, 8)
    code, out = run_cli("sweep", tmp_path / "run" / "model.pt", "--out", tmp_path / "s.nc",
                        "--layers", "features.0", "--keeps", "chi=1,frac=1", "--device", "cpu",
                        "--no-progress")
    assert code == 0, out
    ds = ca.load(tmp_path / "s.nc")
    assert ds.sizes["trial"] == 14 and ds.attrs["n_test"] == 15
    code, out = run_cli("train", "--help")
    assert "imagefolder:PATH" in out and "PATH.npz" in out
