"""The report: a small but real run directory → index.html, summary.md, figures; bad input."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from corranalysis.errors import InputError  # noqa: E402
from corranalysis.io import read_netcdf, write_json, write_netcdf  # noqa: E402
from corranalysis.kernels import extract_kernels  # noqa: E402
from corranalysis.linkage import failing, link, scoped_sweep  # noqa: E402
from corranalysis.pipeline import Run, load_run  # noqa: E402
from corranalysis.report import build_figures, build_report  # noqa: E402
from corranalysis.report._build import (  # noqa: E402
    best_compression,
    depth_answer,
    headline,
    plan_rows,
)
from corranalysis.retrain import retrain  # noqa: E402
from corranalysis.spectra import compute_spectra  # noqa: E402
from corranalysis.sweep import sweep  # noqa: E402
from corranalysis.tensorize.run import results_dataset  # noqa: E402

STEMS = ("spectra", "entropy", "norm_loss", "central", "accuracy_vs_norm_loss",
         "accuracy_vs_kept_fraction", "combined_truncations", "compression", "tolerance", "depth",
         "recovery", "tensorize")
KEEPS = "frac=1,frac=0.7,frac=0.5,frac=0.3,frac=0.15,frac=0.05,loss=0.05,loss=0.2"


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4),
    )


def synthetic(n: int = 160) -> TensorDataset:
    """A learnable 4-class task on 1×8×8 inputs (labels from a fixed linear map)."""
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    w = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    return TensorDataset(x, (x.flatten(1) @ w).argmax(1))


def make_run(root: Path, tensorize: bool = True) -> Path:
    """A run directory from the real API: trained tiny CNN → spectra, sweep, linkage, recovery."""
    data = synthetic()
    train = DataLoader(data, batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    test = DataLoader(data, batch_size=160)
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(8):
        for x, y in train:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(
        {"name": root.name, "model": "tiny", "dataset": "synthetic", "seed": 0}))
    spectra = compute_spectra(extract_kernels(model), device="cpu")
    sw = sweep(model, test, keeps=KEEPS, plans="layer,all-cuts,all-layers", device="cpu")
    plan = {"3": {"cuts": ["out|in,kh,kw"], "keep": "frac=0.15"}}
    parts = [retrain(copy.deepcopy(model), plan, train, test, 2, mode=m, device="cpu")
             for m in ("dense", "projected")]
    recovery = xr.concat(parts, dim=pd.Index(["dense", "projected"], name="mode"),
                         combine_attrs="drop_conflicts")
    outputs = {"spectra": spectra, "sweep": sw, "linkage": link(sw, spectra, delta=1.0),
               "recovery": recovery}
    for name, ds in outputs.items():
        write_netcdf(ds, root / f"{name}.nc")
    acc = float(sw.attrs["baseline_accuracy"])
    write_json({"model": "tiny", "dataset": "synthetic", "dataset_checksum": "0" * 64,
                "test_accuracy": acc, "device": "cpu", "wall_seconds": 1.0,
                "config": {"seed": 0}, "package_versions": {"torch": torch.__version__},
                "git_commit": "abc123"}, root / "run.json")
    write_json({s: {"hash": "h", "seconds": 0.5, "finished": "2025-01-01T00:00:00+00:00"}
                for s in ("train", "spectra", "sweep", "linkage", "retrain")},
               root / "stages.json")
    if tensorize:
        table = {"layer": ["3"], "params_before": [432], "params_after": [120],
                 "params_all_entries": [120],
                 "compression": [3.6], "init_rel_error": [0.3], "method": ["tucker"],
                 "kind": ["conv2d"], "shape": ["8x6x3x3"], "rank": ["(4, 3)"], "group": ["g0"]}
        history = {"accuracy": [0.5, 0.7, 0.8], "loss": [1.0, 0.8, 0.6],
                   "train_loss": [float("nan"), 0.9, 0.7], "epoch_seconds": [0.0, 0.1, 0.1]}
        write_netcdf(results_dataset(table, history, {"baseline_accuracy": acc}),
                     root / "tensorize.nc")
    return root


@functools.cache
def _example(base: Path) -> tuple[Path, Path]:
    run, report = base / "runs" / "demo", base / "reports" / "demo"
    try:
        from filelock import FileLock
        lock = FileLock(f"{base}.lock")
    except ImportError:  # pragma: no cover - filelock comes with torch
        lock = contextlib.nullcontext()
    with lock:
        if not (base / "done").is_file():
            shutil.rmtree(base, ignore_errors=True)
            make_run(run)
            build_report(load_run(run), report)
            (base / "done").touch()
    return run, report


def example(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, built report), built once per test session and shared by the report
    test modules (and by pytest-xdist workers, under a file lock). Treat as read-only."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, shared by the workers
    return _example(base / "report-example")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    return example(tmp_path_factory)


def test_report_has_every_file(built):
    _, report = built
    assert (report / "index.html").is_file() and (report / "summary.md").is_file()
    for stem in STEMS:
        png, pdf = report / "figures" / f"{stem}.png", report / "figures" / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert pdf.read_bytes()[:5] == b"%PDF-", stem
    html = (report / "index.html").read_text()
    for stem in STEMS:
        assert f'src="figures/{stem}.png"' in html
    assert str(report) not in html  # relative paths only: the folder can move
    leftovers = [p.name for p in report.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_report_contents(built):
    run, report = built
    html = (report / "index.html").read_text()
    md = (report / "summary.md").read_text()
    for text in ("Setup", "Findings", "Provenance", "tolerated norm loss", "dense",
                 "projected", "tucker", "abc123", "0" * 64, "torch"):
        assert text in html, text
    findings = md.split("## Findings")[1].split("## Figures")[0]
    assert "Layer" in findings or "layer" in findings
    assert "first layer (0)" in findings
    assert "Re-training (dense)" in findings and "Re-training (projected)" in findings
    assert "all cuts of one layer" in findings
    assert "Tensorizing layer(s) 3" in findings
    ds = read_netcdf(run / "linkage.nc")
    for name in ds["layer"].values:
        assert f"layer {name}" in html


@pytest.fixture
def fast_figures(monkeypatch):
    """Skip drawing: the figure files are stubs (for tests of the report's plumbing)."""
    from corranalysis.report import _build as report
    from corranalysis.report.figures import figure_makers

    def stub(datasets, out_dir, formats=("png", "pdf"), width=None, layers=None,
             total_params=None):
        stems = list(figure_makers(datasets, width, layers, total_params=total_params))
        for stem in stems:
            for fmt in formats:
                (out_dir / f"{stem}.{fmt}").write_bytes(b"stub")
        return stems

    monkeypatch.setattr(report, "render_figures", stub)


def test_rebuild_replaces_the_report_atomically(built, tmp_path, fast_figures):
    run, report = built
    out = tmp_path / "rep"
    shutil.copytree(report, out)
    (out / "stale.txt").write_text("old")
    assert build_report(load_run(run), out) == out
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_report_default_location_is_reports_name(built, tmp_path, monkeypatch, fast_figures):
    run, _ = built
    monkeypatch.chdir(tmp_path)
    assert build_report(load_run(run)) == Path("reports") / "demo"
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()


def test_failure_leaves_no_half_written_report(built, tmp_path, monkeypatch, fast_figures):
    run, report = built
    from corranalysis.report import _build as module

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "_markdown", boom)
    run = load_run(run)
    with pytest.raises(RuntimeError):
        build_report(run, tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []
    shutil.copytree(report, tmp_path / "old")  # an earlier report stays as it was
    with pytest.raises(RuntimeError):
        build_report(run, tmp_path / "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (tmp_path / "old" / "index.html").read_text() == (report / "index.html").read_text()


def test_report_without_tensorize(built, tmp_path, fast_figures):
    run, _ = built
    copy_dir = tmp_path / "runs" / "plain"
    shutil.copytree(run, copy_dir)
    (copy_dir / "tensorize.nc").unlink()
    out = build_report(load_run(copy_dir), tmp_path / "rep")
    assert not (out / "figures" / "tensorize.png").exists()
    assert (out / "figures" / "recovery.png").exists()
    assert "Tensorizing" not in (out / "summary.md").read_text()
    assert 'id="tensorize"' not in (out / "index.html").read_text()


# --------------------------------------------------------------------------- CLI


def test_report_verb(built, tmp_path, run_cli, fast_figures):
    run, _ = built
    code, out = run_cli("report", run, "--out", tmp_path / "r")
    assert code == 0, out
    assert str(tmp_path / "r" / "index.html") in out
    assert (tmp_path / "r" / "index.html").is_file()


def test_figures_verb(built, tmp_path, run_cli):
    run, _ = built
    code, out = run_cli("figures", run, "--out", tmp_path / "paper", "--layers", "0,3")
    assert code == 0, out
    files = sorted(p.name for p in (tmp_path / "paper").iterdir())
    assert files == sorted(f"{s}.pdf" for s in STEMS)
    head = (tmp_path / "paper" / "tensorize.pdf").read_bytes()
    assert b"/MediaBox [ 0 0 244.8" in head  # one journal column: 3.4 in


@pytest.mark.parametrize("missing, stage", [("sweep.nc", "sweep"), ("recovery.nc", "retrain"),
                                            ("spectra.nc", "spectra")])
def test_missing_input_names_the_stage(built, tmp_path, run_cli, missing, stage):
    run, _ = built
    bad = tmp_path / "runs" / "demo"
    shutil.copytree(run, bad)
    (bad / missing).unlink()
    out_dir = tmp_path / "reports" / "demo"
    code, out = run_cli("report", bad, "--out", out_dir)
    assert code == 2
    assert f"{missing} is missing" in out and f"--force {stage}" in out
    assert "Traceback" not in out
    assert not (tmp_path / "reports").exists()


def test_not_a_run_directory(tmp_path, run_cli):
    code, out = run_cli("report", tmp_path, "--out", tmp_path / "rep")
    assert code == 2 and "not a run directory" in out
    code, out = run_cli("report", tmp_path / "nope")
    assert code == 2 and "does not exist" in out
    code, out = run_cli("figures", tmp_path, "--out", tmp_path / "figs")
    assert code == 2 and "not a run directory" in out
    assert not (tmp_path / "rep").exists() and not (tmp_path / "figs").exists()


def test_bad_outputs_and_damaged_inputs(built, tmp_path, run_cli):
    run, _ = built
    (tmp_path / "file").write_text("x")
    code, out = run_cli("report", run, "--out", tmp_path / "file")
    assert code == 2 and "is a file" in out
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    code, out = run_cli("report", run, "--out", tmp_path / "busy")
    assert code == 2 and "other than a report" in out
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"
    bad = tmp_path / "runs" / "demo"
    shutil.copytree(run, bad)
    (bad / "linkage.nc").write_bytes(b"not netcdf")
    code, out = run_cli("report", bad, "--out", tmp_path / "r2")
    assert code == 2 and "linkage.nc" in out and "--force linkage" in out
    code, out = run_cli("figures", run, "--out", tmp_path / "f", "--layers", "nope")
    assert code == 2 and "not in the run" in out


def test_load_run_reports_all_missing_stages(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\n")
    (tmp_path / "run.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(InputError, match="spectra.nc, sweep.nc, linkage.nc, recovery.nc"):
        load_run(tmp_path)


def test_the_report_is_built_from_a_run_held_in_memory(built, tmp_path, fast_figures):
    run, _ = built
    datasets = {n: read_netcdf(run / f"{n}.nc") for n in ("spectra", "sweep", "linkage",
                                                          "recovery")}
    held = Run(path=tmp_path / "nowhere", config={"name": "held"}, record={}, stages={},
               datasets=datasets)
    out = build_report(held, tmp_path / "rep")
    assert (out / "index.html").is_file()
    assert "all cuts of one layer" in (out / "summary.md").read_text()
    paths = build_figures(datasets, tmp_path / "figs", formats=("png",), layers=["3"])
    assert sorted(p.name for p in paths) == sorted(
        f"{s}.png" for s in STEMS if s != "tensorize")
    with pytest.raises(InputError, match="none of the datasets"):
        build_figures({}, tmp_path / "none")


def test_load_run_orders_stages_as_the_pipeline_runs_them(built):
    run, _ = built
    loaded = load_run(run)
    assert list(loaded.stages) == ["train", "spectra", "sweep", "linkage", "retrain"]
    assert set(loaded.datasets) == {"spectra", "sweep", "linkage", "recovery", "tensorize"}
    assert "scope" in loaded.datasets["sweep"].coords


def _old_sweep(sw: xr.Dataset) -> xr.Dataset:
    """``sw`` as the previous version wrote it: no scope, "all" in layer and cuts."""
    scope = sw.scope.values
    return sw.drop_vars("scope").assign_coords(
        layer=("trial", np.where(scope == "all-layers", "all", sw.layer.values)),
        cuts=("trial", np.where(scope == "all-cuts", "all", sw.cuts.values)))


def test_a_run_with_a_sweep_of_the_previous_layout_still_reports(built, tmp_path, fast_figures):
    run, _ = built
    old = tmp_path / "runs" / "old"
    shutil.copytree(run, old)
    sw = read_netcdf(run / "sweep.nc")
    write_netcdf(_old_sweep(sw), old / "sweep.nc")
    loaded = load_run(old)
    for coord in ("scope", "layer", "cuts"):
        assert loaded.datasets["sweep"][coord].values.tolist() == sw[coord].values.tolist()
    out = build_report(loaded, tmp_path / "rep")
    new = build_report(load_run(run), tmp_path / "rep-new")
    findings = (out / "summary.md").read_text().split("## Findings")[1].split("## Figures")[0]
    assert findings == (new / "summary.md").read_text().split("## Findings")[1].split(
        "## Figures")[0]


def test_an_old_sweep_that_cannot_be_converted_is_refused_with_how_to_redo_it(
        built, tmp_path, run_cli):
    run, _ = built
    old = tmp_path / "runs" / "old"
    shutil.copytree(run, old)
    write_netcdf(_old_sweep(read_netcdf(run / "sweep.nc")).drop_vars("plan"), old / "sweep.nc")
    code, out = run_cli("report", old, "--out", tmp_path / "rep")
    assert code == 2 and "sweep.nc" in out and "--force sweep" in out
    assert "Traceback" not in out and not (tmp_path / "rep").exists()


def test_the_report_folder_can_be_read_by_others(built, tmp_path, fast_figures):
    import stat

    run, _ = built
    old = os.umask(0o022)
    try:
        out = build_report(load_run(run), tmp_path / "report")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "index.html").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- the first screen


def test_the_first_screen_asks_the_question_and_answers_it_in_a_few_sentences(built):
    run, report = built
    loaded = load_run(run)
    head = headline(loaded)
    assert "deeper layers tolerate larger norm losses" in head["question"]
    assert "Singh, Jahromi and Orús" in head["question"]
    assert 3 <= len(head["sentences"]) <= 4
    lk = loaded.datasets["linkage"]
    verdict, trend = depth_answer(lk)
    assert head["verdict"] == verdict and head["sentences"][0].startswith(trend)
    assert "ρ = " in trend and "first layer" in trend  # the correlation behind the verdict
    ci = lk["baseline_accuracy_ci"].values
    assert f"95 % CI {100 * ci[0]:.1f} %–{100 * ci[1]:.1f} %" in head["sentences"][1]
    assert head["sentences"][2].startswith("Compression")
    html = (report / "index.html").read_text()
    answer = html.split('<section id="answer">')[1].split("</section>")[0]
    assert 'id="fig-central"' in answer and 'src="figures/central.png"' in answer
    for sentence in head["sentences"]:  # the page shows them (HTML-escaped)
        assert sentence.replace("'", "&#39;").replace("&", "&amp;")[:60] in answer
    assert html.index('id="answer"') < html.index('id="setup"') < html.index('id="findings"')


def _link(low, high) -> xr.Dataset:
    """A link of one cut per layer with the given censored tolerances."""
    low, high = np.asarray(low, float)[:, None], np.asarray(high, float)[:, None]
    layers = [f"l{i}" for i in range(len(low))]
    return xr.Dataset({"tolerated_norm_loss": (("layer", "cut"), low),
                       "tolerated_norm_loss_high": (("layer", "cut"), high),
                       "distinct": (("layer", "cut"), np.ones(low.shape, bool))},
                      coords={"layer": layers, "cut": ["out|in"]})


@pytest.mark.parametrize("low, high, verdict", [
    ([0.0, 0.1, 0.3, 0.5, 0.6], [0.05, 0.2, 0.4, 0.6, 0.7], "Yes"),
    ([0.0, 0.3, 0.6, 0.2, 0.01], [0.05, 0.4, 0.7, 0.3, 0.05], "Partly: up to a point"),
    ([0.6, 0.5, 0.4, 0.2, 0.1], [0.7, 0.6, 0.5, 0.3, 0.2], "No, the opposite"),
    ([0.3, 0.35, 0.3, 0.33, 0.31], [0.5, 0.5, 0.5, 0.5, 0.5], "Not clearly"),
])
def test_the_verdict_on_depth_follows_the_censored_ranges(low, high, verdict):
    got, sentence = depth_answer(_link(low, high))
    assert got == verdict
    assert sentence.startswith("The tolerated norm loss")
    assert "in l0 (the first layer)" in sentence and "(the last)" in sentence


def test_the_compression_claimed_is_the_best_tolerated_trial(built):
    run, _ = built
    loaded = load_run(run)
    sw, lk = loaded.datasets["sweep"], loaded.datasets["linkage"]
    best = best_compression(sw, 1.0, float(lk.attrs["z"]), total=2000)
    scoped = scoped_sweep(sw)
    ok = ~failing(scoped, delta=1.0, z=float(lk.attrs["z"]))
    net = 2000 / (2000 - scoped["params_dense"].values + scoped["params_factorized"].values)
    assert best["network_ratio"] == pytest.approx(net[ok].max())
    assert best["params_after"] == round(2000 / best["network_ratio"])
    assert best_compression(sw, 0.0, 0.0, total=2000) is None or \
        best_compression(sw, 0.0, 0.0, total=2000)["network_ratio"] > 1


def test_two_baselines_are_explained_and_the_plan_is_a_table(built, tmp_path, fast_figures):
    run, _ = built
    loaded = load_run(run)
    full = float(loaded.datasets["sweep"].attrs["baseline_accuracy"]) + 0.004
    record = {**loaded.record, "test_accuracy": full}
    other = Run(path=loaded.path, config=loaded.config, record=record, stages=loaded.stages,
                datasets=loaded.datasets)
    head = headline(other)
    assert f"{100 * full:.1f} %" in head["baselines"] and "full test set" in head["baselines"]
    assert "not the training record" in head["sentences"][1]  # the answer says which one
    assert headline(loaded)["baselines"] is None  # one baseline: nothing to explain
    rows = plan_rows(loaded.datasets["recovery"])
    assert rows == [{"layer": "3", "cuts": "out|in,kh,kw", "keep": "frac=0.15",
                     "chi": rows[0]["chi"], "other": ""}]
    html = (build_report(other, tmp_path / "rep") / "index.html").read_text()
    setup = html.split('<section id="setup">')[1].split("</section>")[0]
    assert '<table id="plan">' in setup and "frac=0.15" in setup and "{&#34;" not in setup
    assert 'id="baselines"' in setup
