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
from corranalysis.provenance import provenance  # noqa: E402
from corranalysis.report import (  # noqa: E402
    build_figures,
    build_report,
    findings,
    read_comparisons,
)
from corranalysis.report._build import (  # noqa: E402
    best_compression,
    depth_answer,
    headline,
    plan_rows,
)
from corranalysis.retrain import retrain  # noqa: E402
from corranalysis.runtime import Optim  # noqa: E402
from corranalysis.spectra import compute_spectra  # noqa: E402
from corranalysis.sweep import sweep  # noqa: E402
from corranalysis.tensorize.compare import comparison_dataset  # noqa: E402
from corranalysis.tensorize.run import results_dataset  # noqa: E402

STEMS = ("spectra", "entropy", "norm_loss", "central", "accuracy_vs_norm_loss",
         "accuracy_vs_kept_fraction", "combined_truncations", "compression", "tolerance", "depth",
         "recovery", "recovery_spectra", "tensorize")
#: The re-training modes of the example run, in the order the CLI and the pipeline write them.
MODES = ("control", "dense", "projected")
#: The example's re-training plan: two layers, both compressed.
PLAN = {"3": {"cuts": ["out|in,kh,kw"], "keep": "frac=0.15"},
        "6": {"cuts": ["out|in"], "keep": "chi=2"}}
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


def make_run(root: Path, tensorize: bool = True, compare: bool = True) -> Path:
    """A run directory from the real API: trained tiny CNN → spectra, sweep, linkage, recovery
    (control, dense, projected), and a tensorization comparison in ``compare_tiny/``."""
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
    parts = [retrain(copy.deepcopy(model), PLAN, train, test, 2, mode=m, device="cpu",
                     optim=Optim(lr=0.05)) for m in MODES]
    recovery = xr.concat(parts, dim=pd.Index(list(MODES), name="mode"),
                         combine_attrs="drop_conflicts")
    recovery.attrs["budget"] = 0.5  # as `retrain --plan auto --budget 0.5` records it
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
    if compare:
        write_comparison(root / "compare_tiny", acc)
    return root


def write_comparison(folder: Path, baseline: float, model: str = "tiny") -> Path:
    """A ``compare.nc`` of layer 3 as :func:`corranalysis.tensorize.compare` writes it (its
    own writer, with made-up accuracies and timings): svd and Tucker at 2× and 5×, CP
    unreachable at 5×, ADTN at its own size; Tucker at 5× ends below its start."""
    def row(name, method, target, after, step, **kw):
        return {"variant": name, "method": method, "target": target, "reachable": True,
                "note": "", "params_before": 440, "params_after": after,
                "compression": 440 / after, "model_params_after": 1000 - 440 + after,
                "step_seconds": step, "inference_seconds": step / 2,
                "dense_step_seconds": 0.01, "dense_inference_seconds": 0.005,
                "fell_below_start": 0.0, "fine_tune_seconds": 1.0, **kw}

    rows = [row("svd_2x", "svd", 2.0, 220, 0.012), row("svd_5x", "svd", 5.0, 88, 0.011),
            row("tucker_2x", "tucker", 2.0, 200, 0.014),
            row("tucker_5x", "tucker", 5.0, 84, 0.013, fell_below_start=1.0),
            {"variant": "cp_5x", "method": "cp", "target": 5.0, "reachable": False,
             "note": "CP of rank 1 keeps 90 parameters > 88"},
            row("adtn_depth1", "adtn", float("nan"), 40, 0.03)]
    accuracy = [[baseline - 0.01, baseline - 0.005], [baseline - 0.2, baseline - 0.03],
                [baseline - 0.02, baseline - 0.004], [baseline - 0.05, baseline - 0.08], [],
                [0.25, baseline - 0.06]]
    ds = comparison_dataset(rows, accuracy)
    ds.attrs.update(layers="3", **provenance(checkpoint=str(folder / "model.pt"), model=model,
                                             dataset="synthetic", epochs=1, seed=0))
    ds.attrs["baseline_accuracy"] = baseline
    folder.mkdir(parents=True)
    write_netcdf(ds, folder / "compare.nc")
    return folder / "compare.nc"


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
            build_report(load_run(run), report, comparisons=read_comparisons(run))
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
    rec = loaded.datasets["recovery"]
    rows = plan_rows(rec)
    dense = [int(rec.params_dense.sel(mode="dense", layer=n)) for n in PLAN]
    fact = [int(rec.params_factorized.sel(mode="dense", layer=n)) for n in PLAN]
    assert rows == [{"layer": n, "cuts": PLAN[n]["cuts"][0], "keep": PLAN[n]["keep"],
                     "chi": rows[i]["chi"], "other": "",
                     "params": f"{d:,} → {f:,} ({d / f:.1f}×)"}
                    for i, (n, d, f) in enumerate(zip(PLAN, dense, fact, strict=True))]
    html = (build_report(other, tmp_path / "rep") / "index.html").read_text()
    setup = html.split('<section id="setup">')[1].split("</section>")[0]
    assert '<table id="plan">' in setup and "frac=0.15" in setup and "{&#34;" not in setup
    assert 'id="baselines"' in setup


# --------------------------------------------------------------------------- recovery


def _recovery(modes: dict[str, tuple[list[float], list[float]]], base: float = 0.9,
              **attrs) -> xr.Dataset:
    """A recovery dataset of the given modes: mode → (accuracy, re-truncated accuracy) per
    epoch, with the norm loss of re-truncating growing where the two differ."""
    acc = np.array([m[0] for m in modes.values()])
    again = np.array([m[1] for m in modes.values()])
    loss = np.clip(acc - again, 0, None)
    ds = xr.Dataset({"accuracy": (("mode", "epoch"), acc),
                     "retruncated_accuracy": (("mode", "epoch"), again),
                     "network_norm_loss": (("mode", "epoch"), loss)},
                    coords={"mode": list(modes), "epoch": np.arange(acc.shape[1])})
    ds.attrs.update(baseline_accuracy=base, **attrs)
    return ds


def test_dense_recovery_that_re_truncation_undoes_is_not_called_recovered():
    from corranalysis.report._build import recovery_rows

    rec = _recovery({"control": ([0.90, 0.91, 0.92], [0.60, 0.60, 0.61]),
                     "dense": ([0.50, 0.85, 0.915], [0.50, 0.70, 0.80]),
                     "projected": ([0.50, 0.80, 0.912], [0.50, 0.80, 0.912]),
                     "local": ([0.50, 0.70, 0.75], [0.50, 0.70, 0.75])})
    rows = {r["mode"]: r for r in recovery_rows(rec, delta=1.0)}
    assert list(rows) == ["control", "dense", "projected", "local"]
    assert rows["control"]["start_is"] == "untruncated" and rows["control"]["good"]
    assert rows["dense"]["verdict"].startswith("not compressed") and not rows["dense"]["good"]
    assert "recovered" not in rows["dense"]["verdict"]
    assert "11.5 pt" in rows["dense"]["verdict"]  # 91.5 % → 80.0 % re-truncated
    assert rows["projected"]["verdict"].startswith("recovered") and rows["projected"]["good"]
    assert rows["projected"]["versus"] == "−0.8 pt"  # against the control's 92.0 %
    assert rows["local"]["verdict"] == "compressed, 17.0 pt below the control"
    text = " ".join(findings({"recovery": rec}))
    assert "Control (the untruncated model re-trained the same way): 90.0 % → 92.0 %" in text
    assert "extra training alone gives +2.0 pt" in text
    assert "Re-training (dense): 50.0 % right after truncation" in text
    assert "re-truncated at the plan's χ: 80.0 %" in text


def test_recovery_without_a_control_is_measured_against_the_untruncated_model():
    from corranalysis.report._build import recovery_rows

    rec = _recovery({"dense": ([0.5, 0.895], [0.5, 0.895])}, base=0.9)
    (row,) = recovery_rows(rec)
    assert row["versus"] == "—"
    assert row["verdict"] == "recovered: compressed and within 1 pt of the untruncated model"
    old = rec.drop_vars(["retruncated_accuracy", "network_norm_loss"])  # an earlier file
    assert recovery_rows(old)[0]["retruncated"] == "n/a"
    assert recovery_rows(old)[0]["verdict"].startswith("unknown")  # never "recovered"
    projected = old.assign_coords(mode=["projected"])  # kept truncated by construction
    assert recovery_rows(projected)[0]["verdict"].startswith("recovered")
    assert any("Re-training (dense)" in f for f in findings({"recovery": old}))


def test_the_recovery_section_states_the_compression_and_the_control(built):
    run, report = built
    rec = read_netcdf(run / "recovery.nc")
    html = (report / "index.html").read_text()
    section = html.split('<section id="recovery">')[1].split("</section>")[0]
    kernels, after = rec.attrs["params_kernels"], rec.attrs["params_kernels_compressed"]
    assert f"{kernels:,} → {after:,}" in section
    assert f"{rec.attrs['compression']:.2f}× fewer" in section
    assert "budget: keep at most 50 %" in section
    assert section.count("<tr>") == 1 + len(MODES)
    assert "reference: extra training alone" in section
    dense = rec.sel(mode="dense")
    lost = 100 * float(dense.accuracy[-1] - dense.retruncated_accuracy[-1])
    if lost > 1.0:  # the example's dense re-training leaves the low-rank form
        assert "not compressed" in section
    assert 'src="figures/recovery_spectra.png"' in section
    setup = html.split('<section id="setup">')[1].split("</section>")[0]
    for layer in PLAN:
        d = int(rec.params_dense.sel(mode="dense", layer=layer))
        f = int(rec.params_factorized.sel(mode="dense", layer=layer))
        assert f"{d:,} → {min(d, f):,}" in setup


# --------------------------------------------------------------------------- comparisons


def test_the_study_report_has_the_tensorization_comparison_of_its_run(built):
    run, report = built
    html = (report / "index.html").read_text()
    section = html.split('<section id="comparison">')[1].split("</section>")[0]
    assert "Tensorization at equal budgets" in section
    assert 'src="figures/comparison_tiny.png"' in section
    assert (report / "figures" / "comparison_tiny.pdf").read_bytes()[:5] == b"%PDF-"
    assert "Best after fine-tuning, per budget" in section and "ADTN lands at" in section
    assert "not reachable" in section.lower() and "cp_5x" in section
    assert "ended below its start" in section  # tucker_5x
    assert 'href="#comparison"' in html
    md = (report / "summary.md").read_text()
    assert "## Tensorization at equal budgets: tiny · 3" in md


def test_a_comparison_of_another_model_is_refused(built, tmp_path):
    run, _ = built
    other = write_comparison(tmp_path / "compare_other", 0.9, model="resnet20")
    with pytest.raises(InputError, match="another model than this run's 'tiny'"):
        build_report(load_run(run), tmp_path / "rep",
                     comparisons=read_comparisons(other))
    assert not (tmp_path / "rep").exists()


def test_report_verb_reads_the_run_s_comparisons_and_more(built, tmp_path, run_cli,
                                                           fast_figures):
    run, _ = built
    code, out = run_cli("report", run, "--out", tmp_path / "r")
    assert code == 0, out
    assert 'id="comparison-tiny"' in (tmp_path / "r" / "index.html").read_text()
    extra = write_comparison(tmp_path / "more" / "compare_tiny", 0.8)
    code, out = run_cli("report", run, "--out", tmp_path / "r2", "--compare", tmp_path / "more")
    assert code == 0, out
    html = (tmp_path / "r2" / "index.html").read_text()
    assert 'id="comparison-tiny"' in html and 'id="comparison-tiny-2"' in html
    code, out = run_cli("report", run, "--out", tmp_path / "r3", "--compare", tmp_path / "none")
    assert code == 2 and "no compare.nc there" in out and "Traceback" not in out
    assert not (tmp_path / "r3").exists()
    (tmp_path / "bad").mkdir()
    write_netcdf(xr.Dataset({"x": ("t", [1.0])}), tmp_path / "bad" / "compare.nc")
    code, out = run_cli("report", run, "--out", tmp_path / "r4", "--compare", tmp_path / "bad")
    assert code == 2 and "not a tensorization comparison" in out
    assert extra.is_file()


def _comparisons(root: Path) -> Path:
    write_comparison(root / "compare_fc2", 0.897, model="fc2")
    write_comparison(root / "compare_lenet5", 0.911, model="lenet5")
    (root / "compare_cnn4" / "variants").mkdir(parents=True)  # still being computed
    return root


def test_the_tensorization_report_of_a_folder_of_comparisons(tmp_path, run_cli, monkeypatch):
    import stat

    from corranalysis.report._tensorization import best_per_budget

    folder = _comparisons(tmp_path / "runs" / "tensorize")
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        code, out = run_cli("report", "runs/tensorize")
    finally:
        os.umask(old)
    assert code == 0, out
    report = tmp_path / "reports" / "tensorize"
    assert stat.S_IMODE(report.stat().st_mode) == 0o755
    for name in ("fc2", "lenet5"):
        for fmt in ("png", "pdf"):
            assert (report / "figures" / f"comparison_{name}.{fmt}").stat().st_size > 1000
    html = (report / "index.html").read_text()
    answer = html.split('<section id="answer">')[1].split("</section>")[0]
    assert "<th>fc2</th><th>lenet5</th>" in answer
    ds = read_netcdf(folder / "compare_fc2" / "compare.nc")
    best = {r["target"]: r for r in best_per_budget(ds)}
    assert best[2.0]["method"] == "tucker" and best[5.0]["method"] == "svd"
    assert f"Tucker-2 {100 * best[2.0]['final']:.1f} %" in answer
    assert "ADTN lands at 11×" in answer and "training step" in answer
    assert html.index('id="answer"') < html.index('id="comparison-fc2"') < html.index(
        'id="provenance"')
    prov = html.split('<section id="provenance">')[1]
    assert "compare_fc2/model.pt" in prov and "version(s)" in prov
    assert (report / "summary.md").read_text().startswith(
        "# Tensorization at equal parameter budgets")


def test_the_tensorization_report_reads_its_numbers_from_the_data(tmp_path):
    from corranalysis.report import build_tensorization_report
    from corranalysis.report._tensorization import comparison_sentences

    path = write_comparison(tmp_path / "compare_x", 0.9)
    ds = read_netcdf(path)
    before = comparison_sentences("x", ds)
    assert "2×: Tucker-2 89.6 %" in before[1]
    acc = ds["accuracy"].values.copy()
    acc[0, -1] = 0.899  # svd at 2× now beats Tucker-2
    ds["accuracy"] = (("variant", "epoch"), acc)
    after = comparison_sentences("x", ds)
    assert "2×: truncation (svd) 89.9 % (−0.1 pt; next Tucker-2 89.6 %)" in after[1]
    ds["step_seconds"] = ds["step_seconds"] * 2
    assert "ADTN 6×" in comparison_sentences("x", ds)[3]
    with pytest.raises(InputError, match="no comparisons"):
        build_tensorization_report({}, tmp_path / "rep")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="other than a report"):
        build_tensorization_report({"x": ds}, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_folder_that_is_neither_a_run_nor_comparisons_is_refused(tmp_path, run_cli):
    (tmp_path / "compare_x").mkdir()
    code, out = run_cli("report", tmp_path, "--out", tmp_path / "rep")
    assert code == 2 and "not a run directory" in out and "compare_*/compare.nc" in out
    assert not (tmp_path / "rep").exists()


def test_the_seeds_verb_writes_into_the_first_run_and_its_report_says_what_holds(
        built, tmp_path, fast_figures):
    from test_bad_input import cli

    from corranalysis.report.figures import seeds_figure

    run, _ = built
    first, other = tmp_path / "demo", tmp_path / "demo_seed1"
    shutil.copytree(run, first)
    shutil.copytree(run, other)
    conf = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**conf, "seed": 1}))
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    code, text = cli("seeds", first, other)
    assert code == 0, text
    seeds = read_netcdf(first / "seeds.nc")
    assert seeds.seed.values.tolist() == [0, 1]
    assert json.loads(seeds.attrs["runs"]) == [str(first), str(other)]
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before
    loaded = load_run(first)
    assert "seeds" in loaded.datasets
    report = build_report(loaded, tmp_path / "rep")
    html = (report / "index.html").read_text()
    md = (report / "summary.md").read_text()
    assert 'id="seeds"' in html and 'src="figures/seeds.png"' in html
    # the same linkage twice: a correlation holds in both seeds exactly where it is
    # significant in one, and the report's table and sentence say so
    lk = read_netcdf(run / "linkage.nc")
    key = {"target": "tolerated_norm_loss"}
    sig = [str(m) for m in lk.measure.values
           if float(lk.spearman_p.sel(measure=m, **key)) < 0.05]
    assert [str(m) for m in seeds.measure.values if bool(seeds.holds.sel(measure=m, **key))] \
        == sig
    rows = md.split("## Seeds: what holds in every training seed")[1].split("\n## ")[0]
    assert rows.count("\n| ") == 2 + lk.sizes["measure"]
    finding = next(f for f in findings(loaded.datasets) if f.startswith("Over 2 training seeds"))
    assert ("none;" in finding) == (not sig)
    assert "in every seed" in finding
    rho = depth_answer(read_netcdf(run / "linkage.nc"))[1].split("ρ = ")[1][:5]
    assert f"Over 2 training seeds ρ = {rho}, {rho} (p < 0.05 in " in \
        headline(loaded)["sentences"][0]
    fig = seeds_figure(seeds)
    assert len(fig.axes) == 2 and fig.axes[0].collections
    # a wrong run directory is named as such, not as a place the output cannot go
    code, text = cli("seeds", tmp_path / "nope", other)
    assert code == 2 and "run directory" in text and "nope" in text
    assert not (tmp_path / "nope").exists()
    # its own earlier output is replaced; a file corranalysis did not write is not
    assert cli("seeds", first, other)[0] == 0
    (first / "seeds.nc").write_bytes(b"my notes")
    code, text = cli("seeds", first, other)
    assert code == 2 and "seeds.nc" in text and "--overwrite" in text
    assert (first / "seeds.nc").read_bytes() == b"my notes"
