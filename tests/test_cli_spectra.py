"""``corranalysis spectra``: writes netCDF and a table; bad input exits 2 writing nothing."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from corranalysis import load


def test_spectra_of_a_checkpoint_writes_netcdf_and_prints_a_table(tmp_path, small_cnn, run_cli):
    ckpt = tmp_path / "model.pt"
    torch.save(small_cnn.state_dict(), ckpt)
    code, output = run_cli("spectra", ckpt, "--out", tmp_path / "s.nc", "--layers", "0,6")
    assert code == 0, output
    ds = load(tmp_path / "s.nc")
    assert list(ds["layer"].values) == ["0", "6"]
    assert "entropy min" in output and "8x3x3x3" in output


def test_explicit_cut_labels_and_fine_grained_legs(tmp_path, small_cnn, run_cli):
    ckpt = tmp_path / "model.pt"
    torch.save(small_cnn.state_dict(), ckpt)
    code, output = run_cli("spectra", ckpt, "--out", tmp_path / "s.nc", "--cuts",
                           "out,kh|in,kw;out|in,kh,kw", "--kinds", "conv2d")
    assert code == 0, output
    assert list(load(tmp_path / "s.nc")["cut"].values) == ["out,kh|in,kw", "out|in,kh,kw"]
    code, output = run_cli("spectra", ckpt, "--out", tmp_path / "b.nc", "--legs", "binary",
                           "--cuts", "contiguous")
    assert code == 0, output
    assert "out.0|" in str(load(tmp_path / "b.nc")["cut"].values[0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_MARKER",))


def test_bad_input_exits_2_with_one_message_and_no_output(tmp_path, small_cnn, run_cli,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "model.pt"
    torch.save(small_cnn.state_dict(), ckpt)
    nan_ckpt = tmp_path / "nan.pt"
    sd = small_cnn.state_dict()
    sd["3.weight"][0, 0, 0, 0] = float("inf")
    torch.save(sd, nan_ckpt)
    torch.save({"w": _Evil()}, tmp_path / "evil.pt", pickle_module=pickle)
    torch.save([1, 2], tmp_path / "list.pt")
    np.savez(tmp_path / "flat.npz", v=np.ones(3))
    out = tmp_path / "s.nc"
    cases = [
        (["spectra", tmp_path / "missing.pt", "--out", out], "does not exist"),
        (["spectra", tmp_path / "list.pt", "--out", out], "not a state_dict"),
        (["spectra", tmp_path / "evil.pt", "--out", out], "refused"),
        (["spectra", tmp_path / "flat.npz", "--out", out], "at least 2 dims"),
        (["spectra", nan_ckpt, "--out", out], "layer '3'"),
        (["spectra", ckpt, "--out", out, "--layers", "nope*"], "no selected layers"),
        (["spectra", ckpt, "--out", out, "--cuts", "out,zz|in"], "valid legs"),
        (["spectra", ckpt, "--out", out, "--cuts", "out|"], "malformed"),
        (["spectra", ckpt, "--out", out, "--legs", "ternary"], "natural, prime, binary"),
        (["spectra", ckpt, "--out", tmp_path / "no" / "s.nc"], "does not exist"),
    ]
    for args, message in cases:
        code, output = run_cli(*args)
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert "Traceback" not in output
    assert not out.exists()
    assert not (tmp_path / "EVIL_MARKER").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
