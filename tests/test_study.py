"""The one-command study: config validation, stage skipping, reproducibility, notebooks.

One quick study (configs/quick.yaml: real Fashion-MNIST, cnn4, small subsets) runs
once for this module into a temporary runs directory.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
import xarray as xr
import yaml
from data_files import needs_fashion
from nbclient import NotebookClient

import corranalysis as ca
from corranalysis.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "quick.yaml"
pytestmark = needs_fashion


def _config(tmp: Path, name: str = "quick", **changes) -> Path:
    data = yaml.safe_load(QUICK.read_text())
    data.update(name=name, runs_dir=str(tmp / "runs"), **changes)
    data["report"] = {"out": str(tmp / "reports" / name)}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = _config(tmp)
    report = ca.run_study(config)
    return tmp, config, report


def test_a_quick_study_runs_end_to_end_into_one_run_directory(quick):
    tmp, _, report = quick
    run = tmp / "runs" / "quick"
    for name in ("config.yaml", "model.pt", "run.json", "spectra.nc", "sweep.nc", "linkage.nc",
                 "recovery.nc", "stages.json"):
        assert (run / name).is_file(), name
    assert (report / "index.html").is_file() and (report / "summary.md").is_file()
    recovery = ca.load(run / "recovery.nc")
    assert list(recovery["mode"].values) == ["dense", "projected"]
    assert ca.load(run / "sweep.nc").attrs["baseline_accuracy"] > 0.5


def test_a_finished_study_is_skipped_and_report_edits_rerender_only(quick, capsys):
    tmp, config, _ = quick
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp / "runs" / "quick").glob("*.nc")}
    ca.run_study(config)
    assert "up to date, skipped" in capsys.readouterr().err
    data = yaml.safe_load(config.read_text())
    data["report"]["out"] = str(tmp / "reports" / "quick_v2")
    config.write_text(yaml.safe_dump(data))
    report = ca.run_study(config)
    assert report == tmp / "reports" / "quick_v2" and (report / "index.html").is_file()
    after = {p.name: p.stat().st_mtime_ns for p in (tmp / "runs" / "quick").glob("*.nc")}
    assert after == stamps


def test_force_redoes_a_stage_and_what_depends_on_it(quick, capsys):
    tmp, config, _ = quick
    run = tmp / "runs" / "quick"
    before = {p.name: p.stat().st_mtime_ns for p in run.glob("*.nc")}
    ca.run_study(config, force=["linkage"])
    after = {p.name: p.stat().st_mtime_ns for p in run.glob("*.nc")}
    assert after["linkage.nc"] != before["linkage.nc"]
    assert after["sweep.nc"] == before["sweep.nc"] and after["spectra.nc"] == before["spectra.nc"]
    assert "report: running" in capsys.readouterr().err


def test_rerunning_the_config_reproduces_its_numbers(quick):
    tmp, _, _ = quick
    again = _config(tmp, name="quick_again")
    ca.run_study(again, only=["train", "spectra", "sweep"])
    first, second = tmp / "runs" / "quick", tmp / "runs" / "quick_again"
    for name in ("spectra.nc", "sweep.nc"):
        a, b = ca.load(first / name), ca.load(second / name)
        for var in a.data_vars:
            xr.testing.assert_equal(a[var], b[var])
    acc = [ca.load(d / "metrics.nc")["test_accuracy"].values for d in (first, second)]
    np.testing.assert_array_equal(*acc)


def test_config_errors_are_all_reported_with_their_paths(tmp_path):
    bad = {"name": "x", "model": "cnn5", "dataset": "fashion-mnist", "bogus": 1,
           "train": {"epochs": -1, "lr": "fast"}, "sweep": {"plans": ["sideways"]}}
    with pytest.raises(ca.InputError) as err:
        parse_config(bad, "bad.yaml")
    text = str(err.value)
    for where in ("bogus: unknown key", "model:", "train.epochs", "train.lr", "sweep.plans.0"):
        assert where in text, text
    assert "5 error(s)" in text


def test_bad_run_input_exits_2_and_writes_nothing(tmp_path, run_cli):
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    code, out = run_cli("run", tmp_path / "broken.yaml")
    assert code == 2 and "not valid YAML" in out
    code, out = run_cli("run", tmp_path / "missing.yaml")
    assert code == 2 and "does not exist" in out
    bad = _config(tmp_path, name="bad", model="cnn5")
    code, out = run_cli("run", bad)
    assert code == 2 and "model" in out and "cnn4" in out
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.parametrize("notebook", sorted(
    p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    if p.name != "04_your_own_model.ipynb"))  # run on generated files: test_open_run.py
def test_notebooks_run_top_to_bottom_on_the_quick_config(quick, notebook, monkeypatch):
    tmp, config, _ = quick
    monkeypatch.setenv("CORRANALYSIS_CONFIG", str(config))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are committed without outputs"
    NotebookClient(nb, timeout=300, kernel_name="corranalysis",
                   resources={"metadata": {"path": str(ROOT)}}).execute()


def test_a_given_checkpoint_is_adopted_after_it_is_checked(quick, tmp_path):
    tmp, _, _ = quick
    trained = tmp / "runs" / "quick" / "model.pt"
    ca.run_study(_config(tmp_path, name="adopt", checkpoint=str(trained)), only=["train"])
    run = tmp_path / "runs" / "adopt"
    assert (run / "model.pt").read_bytes() != b"" and (run / "run.json").is_file()
    import torch
    from torch import nn

    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ca.InputError, match="missing"):
        ca.run_study(_config(tmp_path, name="misfit", checkpoint=str(tmp_path / "other.pt")),
                     only=["train"])
    assert not (tmp_path / "runs" / "misfit" / "model.pt").exists()


def test_a_damaged_stage_output_is_not_taken_as_up_to_date(quick):
    from corranalysis.config import load_config
    from corranalysis.pipeline import Study

    tmp, config, _ = quick
    study = Study(load_config(config))
    assert study.is_done("linkage")
    path = tmp / "runs" / "quick" / "linkage.nc"
    data = path.read_bytes()
    try:
        path.write_bytes(data[: len(data) // 2])  # truncated, as a killed copy would leave it
        assert not study.is_done("linkage")
    finally:
        path.write_bytes(data)
    assert study.is_done("linkage")


def test_a_killed_retrain_stage_resumes_at_the_next_mode(quick, monkeypatch, capsys):
    from corranalysis import pipeline

    tmp, config, _ = quick
    run = tmp / "runs" / "quick"
    data = yaml.safe_load(config.read_text())
    data["retrain"]["lr"] = 0.005  # a changed stage: it must run again
    changed = tmp / "quick_lr.yaml"
    changed.write_text(yaml.safe_dump(data))
    real, calls = pipeline.retrain, []

    def killed_in_projected(*args, mode, **kwargs):
        calls.append(mode)
        if mode == "projected":
            raise KeyboardInterrupt  # the stage killed during its second mode
        return real(*args, mode=mode, **kwargs)

    monkeypatch.setattr(pipeline, "retrain", killed_in_projected)
    with pytest.raises(KeyboardInterrupt):
        ca.run_study(changed)
    assert (run / "recovery.nc.parts" / "dense.nc").is_file()
    kept = ca.load(run / "recovery.nc.parts" / "dense.nc")

    def counted(*args, mode, **kwargs):
        calls.append(mode)
        return real(*args, mode=mode, **kwargs)

    monkeypatch.setattr(pipeline, "retrain", counted)
    ca.run_study(changed)
    assert calls == ["dense", "projected", "projected"]  # dense not recomputed
    assert "retrain (dense): finished before, kept" in capsys.readouterr().err
    assert not (run / "recovery.nc.parts").exists()
    recovery = ca.load(run / "recovery.nc")
    assert list(recovery["mode"].values) == ["dense", "projected"]
    xr.testing.assert_equal(recovery["accuracy"].sel(mode="dense", drop=True),
                            kept["accuracy"])


def test_a_seeds_file_added_to_the_run_makes_the_report_stage_rebuild(quick, capsys):
    from corranalysis.config import load_config
    from corranalysis.linkage import across_seeds
    from corranalysis.pipeline import Study

    tmp, config, _ = quick
    run = tmp / "runs" / "quick"
    study = Study(load_config(config))
    assert study.is_done("report")
    link = ca.load(run / "linkage.nc")
    ca.io.write_netcdf(across_seeds([link, link], [0, 1]), run / "seeds.nc")
    try:
        assert not study.is_done("report")
        report = ca.run_study(config, only=["report"])
        assert 'id="seeds"' in (report / "index.html").read_text()
        assert study.is_done("report")
    finally:
        (run / "seeds.nc").unlink()
    assert not study.is_done("report")  # the report shows seeds that are gone
