"""One meaning of ``model_sha256`` everywhere: the SHA-256 of the weight file's bytes; the
hash of the tensors is ``params_sha256``, and it is what tells a sweep's weights apart."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file
from test_retrain import PLAN, learnable
from test_sweep import tiny_cnn

from corranalysis.errors import InputError
from corranalysis.io import write_netcdf
from corranalysis.provenance import file_sha256, params_sha256
from corranalysis.retrain import plan_from_option, retrain
from corranalysis.sweep import sweep


def test_model_sha256_is_the_weight_files_checksum_on_sweeps_and_recovery(tmp_path):
    model = tiny_cnn()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == digest
    sw = sweep(model, learnable(seed=1), keeps="frac=0.5", checkpoint=path)
    rec = retrain(tiny_cnn(), PLAN, learnable(), learnable(seed=1), 0, checkpoint=path)
    for ds in (sw, rec):
        assert ds.attrs["model_sha256"] == digest
        assert ds.attrs["params_sha256"] == params_sha256(model) != digest


def test_without_a_file_only_the_params_hash_is_recorded():
    sw = sweep(tiny_cnn(), learnable(seed=1), keeps="frac=0.5")
    assert "model_sha256" not in sw.attrs and sw.attrs["params_sha256"] == params_sha256(tiny_cnn())


def test_same_weights_in_two_formats_share_params_not_model_sha256(tmp_path):
    model = tiny_cnn()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              tmp_path / "m.safetensors")
    a = sweep(model, learnable(seed=1), keeps="frac=0.5", checkpoint=tmp_path / "m.pt")
    b = sweep(model, learnable(seed=1), keeps="frac=0.5",
              checkpoint=tmp_path / "m.safetensors")
    assert a.attrs["params_sha256"] == b.attrs["params_sha256"]
    assert a.attrs["model_sha256"] != b.attrs["model_sha256"]


def test_a_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        sweep(tiny_cnn(), learnable(seed=1), keeps="frac=0.5", checkpoint=tmp_path / "no.pt")
    with pytest.raises(InputError, match="not a file"):
        retrain(tiny_cnn(), PLAN, learnable(), learnable(), 0, checkpoint=tmp_path / "no.pt")


def test_plan_auto_compares_params_and_reads_older_sweeps(tmp_path):
    model = tiny_cnn()
    sw = sweep(model, learnable(seed=1), keeps="frac=1,frac=0.5,frac=0.2")
    write_netcdf(sw, tmp_path / "new.nc")
    assert plan_from_option("auto", str(tmp_path / "new.nc"), 0.5, model)
    with pytest.raises(InputError, match="other weights"):
        plan_from_option("auto", str(tmp_path / "new.nc"), 0.5, tiny_cnn(seed=1))
    # written before params_sha256 existed: its model_sha256 was the params hash
    old = sw.copy()
    old.attrs["model_sha256"] = old.attrs.pop("params_sha256")
    write_netcdf(old, tmp_path / "old.nc")
    assert plan_from_option("auto", str(tmp_path / "old.nc"), 0.5, model)
    with pytest.raises(InputError, match="other weights"):
        plan_from_option("auto", str(tmp_path / "old.nc"), 0.5, tiny_cnn(seed=1))
