"""Models as users have them: the same model saved as ``.pt``, ``.safetensors``, ``.npz`` and
``.onnx`` gives the same layers (names, kinds, forward order) and the same spectra."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import onnx
import pytest
import torch
import xarray as xr
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file
from test_kernels_bad_input import assert_damaged_copies_read_or_refused
from torch import nn

from corranalysis import InputError, compute_spectra, extract_kernels, load
from corranalysis.kernels import (
    READERS,
    load_into,
    load_state_dict,
    module_legs,
    natural_key,
    select_layers,
)
from corranalysis.models import create

FORMATS = (".pt", ".safetensors", ".npz", ".onnx")


class EmbedDeconv(nn.Module):
    """Tokens -> embedding -> mean -> linear -> a 4x4 map -> transposed convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.proj = nn.Linear(16, 64)
        self.deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.embed(tokens).mean(dim=1))
        return self.deconv(x.reshape(-1, 4, 4, 4))


def _cnn4() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return create("cnn4", 1, 10, image_size=28).eval(), torch.zeros(1, 1, 28, 28)


def _embed_deconv() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return EmbedDeconv().eval(), torch.zeros(1, 5, dtype=torch.long)


MODELS = {"cnn4": _cnn4, "embed_deconv": _embed_deconv}


def _save(model: nn.Module, example: torch.Tensor, path) -> None:
    """``model`` saved as ``path``'s format; the ``.pt`` as a training checkpoint."""
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".pt":
        torch.save({"model_state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    elif path.suffix == ".safetensors":
        save_file(sd, str(path))
    elif path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})
    else:  # the TorchScript exporter works offline (the dynamo one needs onnxscript)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), str(path), dynamo=False,
                              input_names=["x"], output_names=["y"])


def _saved(tmp_path, which: str) -> tuple[nn.Module, dict]:
    model, example = MODELS[which]()
    paths = {}
    for suffix in FORMATS:
        paths[suffix] = tmp_path / f"{which}{suffix}"
        _save(model, example, paths[suffix])
    return model, paths


def _bare(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without its attributes (provenance names the file and the time)."""
    return ds.drop_attrs(deep=False)


# --------------------------------------------------------------------------- every format
@pytest.mark.parametrize("which", list(MODELS))
def test_the_same_model_in_every_format_gives_identical_spectra_given_the_model(tmp_path,
                                                                              which):
    model, paths = _saved(tmp_path, which)
    expected = compute_spectra(extract_kernels(model), device="cpu")
    for suffix, path in paths.items():
        fresh, _ = MODELS[which]()
        for p in fresh.parameters():
            torch.nn.init.zeros_(p)
        ds = compute_spectra(extract_kernels(path, model=fresh), device="cpu")
        xr.testing.assert_identical(_bare(ds), _bare(expected))
        assert ds.attrs["kernels_sha256"] == expected.attrs["kernels_sha256"], suffix
    assert list(expected["layer"].values) == (
        ["features.0", "features.3", "features.5", "features.8", "classifier.2"]
        if which == "cnn4" else ["embed", "proj", "deconv"])


def test_cnn4_files_without_the_model_give_identical_spectra_in_the_files_order(tmp_path):
    model, paths = _saved(tmp_path, "cnn4")
    expected = compute_spectra(extract_kernels(model), device="cpu")
    for suffix in (".pt", ".npz", ".onnx"):
        ds = compute_spectra(extract_kernels(paths[suffix]), device="cpu")
        xr.testing.assert_identical(_bare(ds), _bare(expected))
    # a .safetensors header is sorted by name and has no order of its own: natural order
    ds = compute_spectra(extract_kernels(paths[".safetensors"]), device="cpu")
    assert list(ds["layer"].values) == ["classifier.2", "features.0", "features.3",
                                        "features.5", "features.8"]
    assert ds["depth"].values.tolist() == [0, 1, 2, 3, 4]
    same_order = _bare(expected).sel(layer=list(ds["layer"].values),
                                     cut=list(ds["cut"].values))
    xr.testing.assert_identical(_bare(ds).drop_vars("depth"), same_order.drop_vars("depth"))


def test_files_without_the_model_name_embeddings_and_onnx_knows_a_transposed_conv(tmp_path):
    _, paths = _saved(tmp_path, "embed_deconv")
    for suffix, path in paths.items():
        tree = extract_kernels(path)
        assert sorted(tree.attrs["layers"]) == ["deconv", "embed", "proj"], suffix
        assert tree["embed"].attrs["kind"] == "embedding", suffix
        assert tree["embed"]["weight"].dims == ("token", "dim"), suffix
        assert tree["proj"].attrs["kind"] == "linear", suffix
    onnx_tree = extract_kernels(paths[".onnx"])
    assert onnx_tree.attrs["layers"] == ["embed", "proj", "deconv"]
    deconv = onnx_tree["deconv"].to_dataset()
    assert deconv.attrs["kind"] == "conv_transpose2d" and deconv.attrs["groups"] == 2
    assert deconv["weight"].dims == ("in", "out", "kh", "kw")
    assert deconv.attrs["stride"] == [2, 2]


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_loads_into_the_model_it_came_from(tmp_path, suffix):
    model, paths = _saved(tmp_path, "embed_deconv")
    fresh, _ = _embed_deconv()
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    load_into(fresh, paths[suffix])
    for (name, want), got in zip(model.state_dict().items(), fresh.state_dict().values(),
                                 strict=True):
        assert torch.equal(want, got), name
    assert set(load_state_dict(paths[suffix])) == set(model.state_dict())


def test_every_suffix_has_a_reader():
    assert set(FORMATS) <= set(READERS)


# --------------------------------------------------------------------------- names and order
def test_natural_key_sorts_numbers_as_numbers():
    names = ["layer.10", "layer.2", "layer.1.b", "embed", "layer.1.a", "Layer.3"]
    assert sorted(names, key=natural_key) == ["Layer.3", "embed", "layer.1.a", "layer.1.b",
                                              "layer.2", "layer.10"]


def test_safetensors_layers_come_in_natural_order_with_their_depth(tmp_path):
    sd = {f"encoder.layer.{i}.dense.weight": torch.randn(3, 3) for i in (10, 2, 1, 0)}
    sd["encoder.layer.2.dense.bias"] = torch.randn(3)
    save_file(sd, str(tmp_path / "m.safetensors"))
    tree = extract_kernels(tmp_path / "m.safetensors")
    names = [f"encoder.layer.{i}.dense" for i in (0, 1, 2, 10)]
    assert tree.attrs["layers"] == names
    assert [tree[n].attrs["depth"] for n in names] == [0, 1, 2, 3]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_layer_names_never_keep_the_weight_suffix(tmp_path, suffix, small_cnn):
    path = tmp_path / f"m{suffix}"
    _save(small_cnn, torch.zeros(1, 3, 8, 8), path)
    assert extract_kernels(path).attrs["layers"] == ["0", "2", "3", "6"]
    assert extract_kernels(path, layers="6").attrs["layers"] == ["6"]


def test_an_npz_holding_a_full_state_dict_is_read_skipping_its_1d_arrays(tmp_path, small_cnn):
    sd = small_cnn.state_dict()
    np.savez(tmp_path / "sd.npz", **{k: v.numpy() for k, v in sd.items()})
    tree = extract_kernels(tmp_path / "sd.npz")
    assert tree.attrs["layers"] == ["0", "2", "3", "6"]
    np.testing.assert_array_equal(tree["3"]["weight"].values, sd["3.weight"].double().numpy())
    # bare kernels beside a 1-D array: the array is skipped, the kernels keep the file's order
    np.savez(tmp_path / "bare.npz", z=np.ones((4, 3)), scale=np.ones(3), a=np.ones((2, 3, 5)))
    assert extract_kernels(tmp_path / "bare.npz").attrs["layers"] == ["z", "a"]


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_a_training_checkpoint_holding_the_state_dict_is_read(tmp_path, small_cnn, key):
    torch.save({key: small_cnn.state_dict(), "epoch": 7}, tmp_path / "ckpt.pt")
    assert extract_kernels(tmp_path / "ckpt.pt").attrs["layers"] == ["0", "2", "3", "6"]


# --------------------------------------------------------------------------- embeddings
def test_an_embedding_is_its_own_kind_with_token_and_dim_legs():
    model = nn.ModuleDict({"word_embeddings": nn.Embedding(30, 8), "dense": nn.Linear(8, 8)})
    tree = extract_kernels(model)
    emb = tree["word_embeddings"].to_dataset()
    assert emb.attrs["kind"] == "embedding" and emb.attrs["legs"] == ["token", "dim"]
    assert emb["weight"].dims == ("token", "dim") and emb["weight"].shape == (30, 8)
    assert module_legs(model["word_embeddings"]) == ("token", "dim")
    assert extract_kernels(model, kinds="embedding").attrs["layers"] == ["word_embeddings"]
    assert extract_kernels(model, kinds="linear").attrs["layers"] == ["dense"]
    assert [n for n, _ in select_layers(model, kinds="embedding")] == ["word_embeddings"]
    ds = compute_spectra(tree, device="cpu")
    assert ds.sel(layer="word_embeddings")["kind"].item() == "embedding"
    assert "token|dim" in ds["cut"].values.tolist()


def test_a_2d_array_named_like_an_embedding_is_one(tmp_path):
    save_file({"bert.embeddings.word_embeddings.weight": torch.randn(30, 8),
               "model.embed_tokens.weight": torch.randn(30, 8),
               "patch_embed.proj.weight": torch.randn(8, 12),
               "bert.embeddings.LayerNorm.weight": torch.ones(8)},
              str(tmp_path / "m.safetensors"))
    tree = extract_kernels(tmp_path / "m.safetensors")
    kinds = {n: tree[n].attrs["kind"] for n in tree.attrs["layers"]}
    assert kinds == {"bert.embeddings.word_embeddings": "embedding",
                     "model.embed_tokens": "embedding", "patch_embed.proj": "linear"}
    assert extract_kernels(tmp_path / "m.safetensors", kinds="linear").attrs["layers"] == [
        "patch_embed.proj"]


# --------------------------------------------------------------------------- ONNX by hand
def _onnx_file(path, nodes, arrays: dict[str, np.ndarray]) -> None:
    """An ONNX model of ``nodes`` with ``arrays`` as initialisers (never run)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, name) for name, a in arrays.items()])
    onnx.save(helper.make_model(graph), str(path))


def test_onnx_gemm_and_matmul_weights_are_read_as_out_by_in(tmp_path):
    rng = np.random.default_rng(0)
    w_in_out = rng.standard_normal((6, 4)).astype(np.float32)   # Gemm transB=0: (in, out)
    w_out_in = rng.standard_normal((3, 4)).astype(np.float32)   # Gemm transB=1: (out, in)
    w_mm = rng.standard_normal((3, 5)).astype(np.float32)       # MatMul X·W: (in, out)
    nodes = [
        helper.make_node("Gemm", ["x", "B0"], ["h0"], name="fc_a"),
        helper.make_node("Gemm", ["h0", "B1"], ["h1"], name="fc_b", transB=1),
        helper.make_node("Relu", ["h1"], ["h2"], name="act"),
        helper.make_node("MatMul", ["h2", "W2"], ["y"], name="head"),
    ]
    _onnx_file(tmp_path / "m.onnx", nodes, {"B0": w_in_out, "B1": w_out_in, "W2": w_mm})
    tree = extract_kernels(tmp_path / "m.onnx")
    assert tree.attrs["layers"] == ["fc_a", "fc_b", "head"]
    np.testing.assert_array_equal(tree["fc_a"]["weight"].values, w_in_out.T)
    np.testing.assert_array_equal(tree["fc_b"]["weight"].values, w_out_in)
    np.testing.assert_array_equal(tree["head"]["weight"].values, w_mm.T)
    assert {tree[n].attrs["kind"] for n in tree.attrs["layers"]} == {"linear"}
    assert tree["fc_a"]["weight"].dims == ("out", "in")


def test_onnx_layers_take_torch_module_paths_and_tied_weights_count_once(tmp_path):
    rng = np.random.default_rng(1)
    conv = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    table = rng.standard_normal((20, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "onnx::Conv_5"], ["c"], name="/layer1/layer1.0/conv1/Conv",
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Identity", ["tok.weight"], ["tied"], name="/Identity"),
        helper.make_node("Gather", ["tok.weight", "ids"], ["e"], name="/tok/Gather"),
        helper.make_node("MatMul", ["e", "tied"], ["y"], name="/head/MatMul"),
    ]
    _onnx_file(tmp_path / "m.onnx", nodes, {"onnx::Conv_5": conv, "tok.weight": table})
    tree = extract_kernels(tmp_path / "m.onnx")
    assert tree.attrs["layers"] == ["layer1.0.conv1", "tok"]
    assert tree["layer1.0.conv1"].attrs["padding"] == [1, 1]
    assert tree["layer1.0.conv1"].attrs["stride"] == [2, 2]
    assert tree["tok"].attrs["kind"] == "embedding"
    np.testing.assert_array_equal(tree["tok"]["weight"].values, table)
    assert extract_kernels(tmp_path / "m.onnx", kinds="conv2d").attrs["layers"] == [
        "layer1.0.conv1"]
    assert set(load_state_dict(tmp_path / "m.onnx")) == {"layer1.0.conv1.weight", "tok.weight"}


# --------------------------------------------------------------------------- provenance
@pytest.mark.parametrize("suffix", FORMATS)
def test_source_sha256_is_the_checksum_of_the_file_read(tmp_path, suffix):
    model, example = _embed_deconv()
    path = tmp_path / f"m{suffix}"
    _save(model, example, path)
    ds = compute_spectra(extract_kernels(path), device="cpu")
    assert ds.attrs["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with_model = extract_kernels(path, model=_embed_deconv()[0])
    assert with_model.attrs["source_sha256"] == ds.attrs["source_sha256"]
    assert compute_spectra(extract_kernels(model), device="cpu").attrs["source_sha256"] == ""


# --------------------------------------------------------------------------- bad files
def test_bad_onnx_files_get_one_error_naming_the_file(tmp_path):
    model, example = _cnn4()
    good = tmp_path / "good.onnx"
    _save(model, example, good)
    data = good.read_bytes()
    cases = {
        "empty.onnx": b"",
        "junk.onnx": b"\xff\xfe not an onnx model \x00\x01" * 10,
        "half.onnx": data[: len(data) // 2],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=rf"ONNX file '.*{name}' (cannot be read|has no)"
                           ) as info:
            extract_kernels(tmp_path / name)
        assert "\n" not in str(info.value) and not str(info.value).endswith(": ")
    _onnx_file(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])], {})
    with pytest.raises(InputError, match=r"relu.onnx' has no layer with a kernel: .*Gemm.*"
                                         r"\(its operators: Relu\)"):
        extract_kernels(tmp_path / "relu.onnx")


def test_damaged_onnx_files_are_read_or_refused_in_one_line(tmp_path):
    model, example = _embed_deconv()
    path = tmp_path / "m.onnx"
    _save(model, example, path)
    assert_damaged_copies_read_or_refused(path)


def test_an_npz_without_kernels_names_the_file_and_what_a_kernel_is(tmp_path):
    np.savez(tmp_path / "flat.npz", bias=np.ones(5), scale=np.float64(2.0))
    with pytest.raises(InputError, match=r"flat.npz has no kernels among its arrays \('bias' "
                                         r"\(5,\), 'scale' \(\)\): a kernel is an array with "
                                         r"at least 2 dims"):
        extract_kernels(tmp_path / "flat.npz")


# --------------------------------------------------------------------------- CLI
def test_the_cli_reads_onnx_selects_kinds_and_prints_full_names_when_piped(tmp_path, run_cli):
    model, paths = _saved(tmp_path, "embed_deconv")
    code, output = run_cli("spectra", paths[".onnx"], "--out", tmp_path / "e.nc",
                           "--kinds", "embedding,conv_transpose2d", "--no-progress")
    assert code == 0, output
    ds = load(tmp_path / "e.nc")
    assert list(ds["layer"].values) == ["embed", "deconv"]
    assert ds.attrs["source_sha256"] == hashlib.sha256(paths[".onnx"].read_bytes()).hexdigest()
    long = {f"encoder.layer.{i}.attention.self.query_key_value_projection.weight":
            torch.randn(6, 4) for i in range(12)}
    save_file(long, str(tmp_path / "long.safetensors"))
    code, output = run_cli("spectra", tmp_path / "long.safetensors", "--out",
                           tmp_path / "l.nc", "--no-progress")
    assert code == 0, output
    for name in long:
        assert name.removesuffix(".weight") in output, output
    assert "…" not in output


def test_the_cli_fits_an_onnx_file_into_the_named_model(tmp_path, run_cli):
    _, paths = _saved(tmp_path, "cnn4")
    code, output = run_cli("spectra", paths[".onnx"], "--model", "cnn4", "--out",
                           tmp_path / "c.nc", "--layers", "classifier.*,features.0",
                           "--no-progress")
    assert code == 0, output
    assert list(load(tmp_path / "c.nc")["layer"].values) == ["features.0", "classifier.2"]


class _Tied(nn.Module):
    """A language-model-like pair: the head shares the embedding's table."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(20, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.tok(ids)))


@pytest.mark.parametrize("suffix", [".safetensors", ".onnx"])
def test_a_tied_weight_stored_once_fits_the_model_with_both_keys(tmp_path, suffix):
    from safetensors.torch import save_model

    torch.manual_seed(0)
    model = _Tied().eval()
    path = tmp_path / f"tied{suffix}"
    if suffix == ".safetensors":
        save_model(model, str(path))  # stores the shared table once
        assert len(load_state_dict(path)) == len(model.state_dict()) - 1
    else:  # torch.onnx keeps the table for Gather, and a transposed copy for the head's MatMul
        _save(model, torch.zeros(1, 4, dtype=torch.long), path)
    fresh = _Tied()
    tree = extract_kernels(path, model=fresh)
    assert tree.attrs["layers"] == ["tok", "mix"]
    assert torch.equal(fresh.head.weight, model.tok.weight)
    assert tree["tok"].attrs["kind"] == "embedding"
