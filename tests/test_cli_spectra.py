"""``corranalysis spectra``: writes netCDF and a table; bad input exits 2 writing nothing."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
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


def _conv_and_linear(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10))
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)
    return ckpt


def test_the_readme_example_on_conv_and_linear_layers_shows_a_dash_for_the_linear_layer(
        tmp_path, run_cli):
    ckpt = _conv_and_linear(tmp_path)
    code, output = run_cli("spectra", ckpt, "--cuts", "out,kh|in,kw", "--out", tmp_path / "s.nc")
    assert code == 0, output
    assert "Traceback" not in output
    ds = load(tmp_path / "s.nc")
    assert np.isnan(ds["entropy"].sel(layer="3")).all()
    linear_row = next(line for line in output.splitlines() if "10x8" in line)
    assert linear_row.count("–") == 3 and " 0 " in linear_row


def test_an_output_naming_the_input_is_refused_and_the_input_is_unchanged(tmp_path, run_cli,
                                                                          monkeypatch):
    ckpt = _conv_and_linear(tmp_path)
    before = ckpt.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (ckpt, "model.pt", tmp_path / "." / "model.pt"):
        code, output = run_cli("spectra", ckpt, "--out", out, "--overwrite")
        assert code == 2 and "names an input file" in output, output
    assert ckpt.read_bytes() == before


def test_an_existing_file_is_replaced_only_if_ours_or_with_overwrite(tmp_path, run_cli):
    ckpt = _conv_and_linear(tmp_path)
    notes = tmp_path / "notes.nc"
    notes.write_text("my notes")
    code, output = run_cli("spectra", ckpt, "--out", notes)
    assert code == 2 and "not written by corranalysis" in output and "--overwrite" in output
    assert notes.read_text() == "my notes"
    assert run_cli("spectra", ckpt, "--out", notes, "--overwrite")[0] == 0
    assert load(notes).sizes["layer"] == 2
    assert run_cli("spectra", ckpt, "--out", notes, "--legs", "prime")[0] == 0  # ours now


def test_an_output_that_is_a_directory_is_refused_before_any_work(tmp_path, run_cli):
    ckpt = _conv_and_linear(tmp_path)
    (tmp_path / "results").mkdir()
    code, output = run_cli("spectra", ckpt, "--out", tmp_path / "results")
    assert code == 2 and "existing directory" in output and "spectra:" not in output
    assert list((tmp_path / "results").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_refused_before_any_work(tmp_path, run_cli):
    ckpt = _conv_and_linear(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, output = run_cli("spectra", ckpt, "--out", locked / "s.nc")
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in output and "spectra:" not in output


def test_max_memory_refuses_a_request_too_large_with_one_line_and_no_output(tmp_path, run_cli):
    ckpt = tmp_path / "big.pt"
    torch.save({"big.weight": torch.randn(1024, 1024)}, ckpt)
    out = tmp_path / "s.nc"
    code, output = run_cli("spectra", ckpt, "--out", out, "--legs", "binary", "--cuts", "all",
                           "--max-memory", "500MB")
    assert code == 2, output
    assert "524,287 cuts" in output and "--max-memory" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1
    assert not out.exists()
    code, output = run_cli("spectra", ckpt, "--out", out, "--max-memory", "lots")
    assert code == 2 and "--max-memory='lots' is not a memory size" in output
    assert not out.exists()


def test_long_layer_names_are_shown_in_full_when_piped(tmp_path, run_cli):
    name = "encoder.blocks.11.self_attention.output_projection_with_a_long_name"
    ckpt = tmp_path / "model.pt"
    torch.save({f"{name}.weight": torch.randn(6, 4, 3, 3)}, ckpt)
    code, output = run_cli("spectra", ckpt, "--out", tmp_path / "s.nc", "--no-progress")
    assert code == 0, output
    assert name in output and "…" not in output
    assert "spectra:" not in output  # no estimate or bar without --progress


def test_conv_transpose_layers_of_a_model_get_their_own_legs(tmp_path, run_cli, monkeypatch):
    import corranalysis.runtime as runtime

    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ConvTranspose2d(4, 6, 3))

    ckpt = tmp_path / "model.pt"
    torch.save(build().state_dict(), ckpt)

    class Loaded:
        model = build()

    monkeypatch.setattr(runtime, "load_trained", lambda *a, **k: Loaded)
    code, output = run_cli("spectra", ckpt, "--model", "anything", "--out", tmp_path / "s.nc",
                           "--cuts", "contiguous")
    assert code == 0, output
    ds = load(tmp_path / "s.nc")
    assert ds["kind"].values.tolist() == ["conv2d", "conv_transpose2d"]
    assert ds["legs"].values.tolist() == ["out,in,kh,kw", "in,out,kh,kw"]
    assert "in|out,kh,kw" in ds["cut"].values.tolist()
