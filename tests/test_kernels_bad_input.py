"""Kernels: bad weights and files are refused with one message naming them; transposed
convolutions and tied weights are handled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from corranalysis import InputError, compute_spectra, extract_kernels
from corranalysis.kernels import (
    KINDS,
    check_kernel,
    kernel_modules,
    load_checkpoint,
    module_legs,
    select_layers,
)


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("shape", [(0, 3), (4, 0, 3, 3), (4, 3, 0)])
def test_a_kernel_with_a_leg_of_size_zero_is_refused(tmp_path, shape):
    np.savez(tmp_path / "k.npz", empty=np.zeros(shape))
    with pytest.raises(InputError, match=r"layer 'empty' in .*k\.npz has shape .*no elements"):
        extract_kernels(tmp_path / "k.npz")
    with pytest.raises(InputError, match="layer 'e' .*has shape .*at least one element"):
        extract_kernels({"e.weight": torch.zeros(shape)})


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_a_module_with_an_empty_kernel_is_refused():
    with pytest.raises(InputError, match=r"layer '0' has shape \(4, 0\)"):
        extract_kernels(nn.Sequential(nn.Linear(0, 4)))


def test_a_complex_kernel_is_refused_not_cast(tmp_path):
    np.savez(tmp_path / "c.npz", w=np.ones((3, 4)) * (1 + 1j))
    with pytest.raises(InputError, match="layer 'w' in .*c.npz is complex .*must be real"):
        extract_kernels(tmp_path / "c.npz")
    with pytest.raises(InputError, match="layer 'l' .*is complex"):
        extract_kernels({"l.weight": torch.ones(3, 4, dtype=torch.complex64)})


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint8, np.bool_])
def test_integer_and_bool_kernels_are_refused_naming_the_dtype(tmp_path, dtype):
    np.savez(tmp_path / "i.npz", w=np.ones((3, 4), dtype=dtype))
    with pytest.raises(InputError, match=rf"layer 'w' in .*has dtype {np.dtype(dtype)}: "
                                         "a kernel must be floating point"):
        extract_kernels(tmp_path / "i.npz")


def test_only_the_selected_arrays_are_checked(tmp_path):
    np.savez(tmp_path / "k.npz", good=np.ones((3, 4)), labels=np.ones((3, 4), dtype=np.int64))
    assert extract_kernels(tmp_path / "k.npz", layers="good").attrs["layers"] == ["good"]


def test_half_precision_kernels_are_read_as_float64(tmp_path):
    w = torch.randn(6, 5).to(torch.bfloat16)
    save_file({"a.weight": w, "b.weight": torch.randn(4, 6).half()},
              str(tmp_path / "h.safetensors"))
    tree = extract_kernels(tmp_path / "h.safetensors")
    assert tree["a"]["weight"].dtype == np.float64
    np.testing.assert_array_equal(tree["a"]["weight"].values, w.double().numpy())
    assert tree["a"].attrs["dtype"] == "bfloat16"


def test_check_kernel_accepts_numpy_and_torch_and_refuses_too_few_dims():
    check_kernel("a", np.ones((2, 3)))
    check_kernel("a", torch.ones(2, 3, dtype=torch.float16))
    with pytest.raises(InputError, match="layer 'v' has shape \\(5,\\): .*at least 2 dims"):
        check_kernel("v", np.ones(5))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_nan_kernels_in_weight_files_name_the_layer(tmp_path, suffix):
    w = torch.randn(4, 3, 3, 3)
    w[1, 2, 0, 0] = float("nan")
    w[0, 0, 0, 0] = float("inf")
    path = tmp_path / f"k{suffix}"
    if suffix == ".npz":
        np.savez(path, conv=w.numpy())
        layer = "conv"
    else:
        save_file({"features.conv.weight": w}, str(path))
        layer = "features.conv"
    with pytest.raises(InputError, match=rf"layer '{layer}' in .*k{suffix} has 2 NaN/Inf"):
        extract_kernels(path)


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("name,what", [("model.pt", "checkpoint"), ("k.npz", ".npz file"),
                                       ("k.safetensors", ".safetensors file"),
                                       ("m.onnx", "ONNX file")])
def test_an_empty_file_cannot_be_read_because_it_is_empty(tmp_path, name, what):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=f"{what} .* cannot be read: the file is empty$"):
        extract_kernels(tmp_path / name)


def test_a_truncated_checkpoint_gets_a_reason(tmp_path, small_cnn):
    torch.save(small_cnn.state_dict(), tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cannot be read: \S") as info:
        extract_kernels(tmp_path / "cut.pt")
    assert not str(info.value).endswith(": ")


# --------------------------------------------------------------------------- transposed
def test_conv_transpose_layers_name_their_legs_as_stored():
    model = nn.Sequential(nn.ConvTranspose1d(2, 5, 3), nn.ConvTranspose2d(4, 6, 3, groups=2),
                          nn.ConvTranspose3d(3, 2, (1, 2, 3)), nn.Conv2d(4, 6, 3))
    assert {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"} <= set(KINDS)
    tree = extract_kernels(model)
    assert tree.attrs["layers"] == ["0", "1", "2", "3"]
    assert tree["0"]["weight"].dims == ("in", "out", "k")
    grouped = tree["1"].to_dataset()
    assert grouped["weight"].dims == ("in", "out", "kh", "kw")
    assert grouped["weight"].shape == (4, 3, 3, 3)  # (in, out/groups, kh, kw)
    assert grouped.attrs["kind"] == "conv_transpose2d" and grouped.attrs["groups"] == 2
    assert grouped.attrs["legs"] == ["in", "out", "kh", "kw"]
    assert tree["2"]["weight"].dims == ("in", "out", "kd", "kh", "kw")
    assert tree["3"]["weight"].dims == ("out", "in", "kh", "kw")
    assert [module_legs(m) for m in model] == [
        ("in", "out", "k"), ("in", "out", "kh", "kw"), ("in", "out", "kd", "kh", "kw"),
        ("out", "in", "kh", "kw")]


def test_module_legs_of_a_module_without_a_kernel_is_an_error():
    assert module_legs(nn.Linear(3, 2)) == ("out", "in")
    with pytest.raises(InputError, match="ReLU has no kernel"):
        module_legs(nn.ReLU())


def test_conv_transpose_layers_are_selected_by_kind_and_loaded_into_models(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 6, 3))
    assert [n for n, _ in select_layers(model, kinds="conv_transpose2d")] == ["1"]
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 6, 3))
    tree = extract_kernels(tmp_path / "m.pt", model=fresh)
    assert tree["1"].attrs["kind"] == "conv_transpose2d"
    assert tree["1"]["weight"].dims == ("in", "out", "kh", "kw")


def test_the_cuts_of_a_conv_transpose_kernel_name_the_right_legs():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 3)
    ds = compute_spectra(extract_kernels(nn.Sequential(layer)), cuts="in|out,kh,kw;out|in,kh,kw",
                         device="cpu")
    w = layer.weight.detach().double().numpy()  # (in=4, out=6, 3, 3)
    s_in = np.linalg.svd(w.reshape(4, -1), compute_uv=False)
    s_out = np.linalg.svd(w.transpose(1, 0, 2, 3).reshape(6, -1), compute_uv=False)
    assert list(ds["cut"].values) == ["in|out,kh,kw", "in,kh,kw|out"]
    assert ds["chi_max"].values.tolist() == [[4, 6]]
    np.testing.assert_allclose(ds["singular_values"].values[0, 0, :4], s_in, rtol=1e-9)
    np.testing.assert_allclose(ds["singular_values"].values[0, 1, :6], s_out, rtol=1e-9)


# --------------------------------------------------------------------------- tied weights
class _Tied(nn.Module):
    """An encoder/decoder pair sharing one weight (the decoder registered twice, too)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 8, bias=False)
        self.hidden = nn.Linear(8, 8)
        self.decoder = nn.Linear(8, 8, bias=False)
        self.decoder.weight = self.encoder.weight
        self.head = self.hidden  # the same module under two paths

    def forward(self, x):
        return self.decoder(self.hidden(self.encoder(x)))


def test_tied_weights_are_listed_once_under_their_first_path(tmp_path):
    model = _Tied()
    assert list(kernel_modules(model)) == ["encoder", "hidden"]
    assert [n for n, _ in select_layers(model)] == ["encoder", "hidden"]
    assert extract_kernels(model).attrs["layers"] == ["encoder", "hidden"]
    traced = extract_kernels(model, example_input=torch.zeros(1, 8))
    assert traced.attrs["layers"] == ["encoder", "hidden"]
    torch.save(model.state_dict(), tmp_path / "tied.pt")
    assert extract_kernels(tmp_path / "tied.pt").attrs["layers"] == ["encoder", "hidden"]


def test_equal_but_separate_weights_are_not_tied(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight.copy_(model[0].weight)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert extract_kernels(tmp_path / "m.pt").attrs["layers"] == ["0", "1"]
    assert list(kernel_modules(model)) == ["0", "1"]


@pytest.mark.parametrize("suffix", [".pt", ".npz", ".safetensors"])
def test_damaged_weight_files_are_read_or_refused_in_one_line(tmp_path, small_cnn, suffix):
    path = tmp_path / f"m{suffix}"
    sd = {k: v.contiguous() for k, v in small_cnn.state_dict().items()}
    if suffix == ".pt":
        torch.save(sd, path)
    elif suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in sd.items() if v.ndim >= 2})
    else:
        save_file(sd, str(path))
    assert_damaged_copies_read_or_refused(path)


def assert_damaged_copies_read_or_refused(path) -> None:
    """About 150 damaged copies of the weight file ``path`` (bytes flipped, tails cut): each
    is read, or refused with a one-line InputError."""
    data = path.read_bytes()
    for i, offset in enumerate(range(0, len(data), max(1, len(data) // 150))):
        damaged = bytearray(data[: len(data) - i] if i % 3 == 0 else data)
        if offset < len(damaged):
            damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            extract_kernels(path)
        except InputError as exc:
            assert "\n" not in str(exc) and not str(exc).endswith(": "), str(exc)


def test_a_damaged_checkpoint_gets_one_message_and_no_torch_warning(tmp_path):
    import warnings

    path = tmp_path / "odd.pt"
    path.write_bytes(b"\x80\x68garbage")  # a pickle header with an unknown protocol
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(InputError, match="odd.pt.*cannot be read"):
            load_checkpoint(path)
