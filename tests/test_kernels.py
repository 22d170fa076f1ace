"""Kernels: a DataTree node per layer from modules, checkpoints, safetensors and npz."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from corranalysis import InputError, extract_kernels


def test_module_kernels_are_nodes_in_forward_order_with_layer_attrs(small_cnn):
    tree = extract_kernels(small_cnn)
    assert tree.attrs["layers"] == ["0", "2", "3", "6"]
    conv = tree["0"].to_dataset()
    assert conv["weight"].dims == ("out", "in", "kh", "kw")
    assert conv.attrs["module_type"] == "Conv2d"
    assert conv.attrs["padding"] == [1, 1]
    assert conv.attrs["n_params"] == 8 * 3 * 3 * 3
    grouped = tree["2"].to_dataset()
    assert grouped.attrs["groups"] == 2 and grouped.attrs["stride"] == [2, 2]
    assert grouped["weight"].shape == (8, 4, 3, 3)
    assert tree["6"].to_dataset()["weight"].dims == ("out", "in")
    assert [tree[n].attrs["depth"] for n in tree.attrs["layers"]] == [0, 1, 2, 3]
    np.testing.assert_array_equal(conv["weight"].values, small_cnn[0].weight.detach().double())


def test_conv1d_and_conv3d_have_their_spatial_legs():
    model = nn.Sequential(nn.Conv1d(2, 4, 5), nn.Conv3d(4, 4, (1, 2, 3)))
    tree = extract_kernels(model)
    assert tree["0"]["weight"].dims == ("out", "in", "k")
    assert tree["1"]["weight"].dims == ("out", "in", "kd", "kh", "kw")


def test_selection_by_glob_and_kind(small_cnn):
    assert extract_kernels(small_cnn, layers="[23]").attrs["layers"] == ["2", "3"]
    assert extract_kernels(small_cnn, kinds="linear").attrs["layers"] == ["6"]
    with pytest.raises(InputError, match=r"no selected layers.*available layers: 0 \(conv2d\)"):
        extract_kernels(small_cnn, layers="features.*")


def test_forward_order_can_be_traced_from_an_example_input():
    class Reversed(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 2)
            self.early = nn.Linear(3, 4)

        def forward(self, x):
            return self.late(self.early(x))

    tree = extract_kernels(Reversed(), example_input=torch.zeros(1, 3))
    assert tree.attrs["layers"] == ["early", "late"]


@pytest.mark.parametrize("wrap", [False, True])
def test_checkpoints_load_as_state_dicts(tmp_path, small_cnn, wrap):
    sd = small_cnn.state_dict()
    path = tmp_path / "model.pt"
    torch.save({"state_dict": sd} if wrap else sd, path)
    tree = extract_kernels(path)
    assert tree.attrs["layers"] == ["0", "2", "3", "6"]
    assert tree["3"]["weight"].dims == ("out", "in", "kh", "kw")


def test_safetensors_and_npz_sources(tmp_path, small_cnn):
    save_file({k: v.contiguous() for k, v in small_cnn.state_dict().items()},
              str(tmp_path / "m.safetensors"))
    assert extract_kernels(tmp_path / "m.safetensors").attrs["layers"] == ["0", "2", "3", "6"]
    np.savez(tmp_path / "k.npz", a=np.ones((4, 3)), b=np.ones((2, 3, 5)))
    tree = extract_kernels(tmp_path / "k.npz")
    assert tree["b"]["weight"].dims == ("out", "in", "k")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_MARKER",))


def test_a_pickle_needing_code_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(InputError, match="refused"):
        extract_kernels(path)
    assert not (tmp_path / "EVIL_MARKER").exists()


def test_bad_sources_get_one_clear_message(tmp_path, small_cnn):
    with pytest.raises(InputError, match="does not exist"):
        extract_kernels(tmp_path / "missing.pt")
    torch.save([torch.ones(2, 2)], tmp_path / "list.pt")
    with pytest.raises(InputError, match="not a state_dict"):
        extract_kernels(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        extract_kernels(tmp_path / "junk.pt")
    np.savez(tmp_path / "flat.npz", v=np.ones(5))
    with pytest.raises(InputError, match="'v'.*at least 2 dims"):
        extract_kernels(tmp_path / "flat.npz")


def test_nan_weights_name_the_layer(small_cnn):
    with torch.no_grad():
        small_cnn[3].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="layer '3' has 1 NaN/Inf"):
        extract_kernels(small_cnn)
