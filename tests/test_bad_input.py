"""Bad input never loses data, never shows a traceback, and leaves no partial output.

One test per defect of issue 11 (the CLI and the API), then a property test that feeds every
verb random argument lists, random bytes as files and damaged copies of real outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import needs_fashion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import corranalysis as ca
from corranalysis.cli import main
from corranalysis.errors import InputError
from corranalysis.models import create

VERBS = ("spectra", "train", "evaluate", "sweep", "retrain", "tensorize", "run", "report",
         "figures")


def cli(*args) -> tuple[int, str]:
    """Run the CLI in-process; an uncaught exception (a traceback) fails the test."""
    import contextlib
    import io

    from corranalysis.cli import _app

    err, out = io.StringIO(), io.StringIO()
    console = _app.console
    old = console._file  # None: the console follows sys.stderr; restored as it was
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        console.file = err
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            console._file = old
    return code, out.getvalue() + err.getvalue()


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` (to prove inputs unchanged, nothing added)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory with a trained-shape cnn4 checkpoint and its run.json."""
    folder = tmp_path / "run"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(create("cnn4", 1, 10).state_dict(), folder / "model.pt")
    (folder / "run.json").write_text(json.dumps({"model": "cnn4", "dataset": "fashion-mnist",
                                                 "in_channels": 1, "num_classes": 10,
                                                 "image_size": 28}))
    return folder


# --------------------------------------------------------------------------- defects, CLI


@pytest.mark.parametrize("verb", ["spectra", "sweep", "retrain"])
def test_an_output_naming_the_input_is_refused_and_the_input_is_unchanged(verb, run_dir):
    before = digest(run_dir)
    ckpt = run_dir / "model.pt"
    extra = {"spectra": [], "sweep": ["--test-size", "20"],
             "retrain": ["--plan", "auto", "--epochs", "1"]}[verb]
    code, out = cli(verb, ckpt, "--out", ckpt, *extra)
    assert code == 2 and "names an input" in out and "Traceback" not in out
    assert digest(run_dir) == before


def test_an_existing_foreign_file_or_a_directory_as_out_is_refused(run_dir, tmp_path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    code, out = cli("spectra", run_dir / "model.pt", "--out", foreign)
    assert code == 2 and "not written by corranalysis" in out
    assert foreign.read_text() == "mine"
    code, out = cli("spectra", run_dir / "model.pt", "--out", tmp_path)
    assert code == 2 and "existing directory" in out
    # our own result may be replaced
    assert cli("spectra", run_dir / "model.pt", "--out", tmp_path / "s.nc")[0] == 0
    assert cli("spectra", run_dir / "model.pt", "--out", tmp_path / "s.nc")[0] == 0
    code, out = cli("spectra", run_dir / "model.pt", "--out", foreign, "--overwrite")
    assert code == 0, out


@pytest.mark.parametrize("argv, words", [
    ([], "Usage"), (["nosuchverb"], "No such command"), (["train"], "Missing option"),
    (["train", "--model", "cnn4", "--dataset", "fashion-mnist", "--epochs", "abc",
      "--out", "x"], "Invalid value for '--epochs'"),
    (["sweep", "--bogus", "1"], "No such option"),
])
def test_every_usage_mistake_is_one_line_and_exit_2(argv, words):
    code, out = cli(*argv)
    assert code == 2 and words in out and "Traceback" not in out


def test_nan_weights_are_refused_by_every_verb_that_loads_them(run_dir, tmp_path):
    state = torch.load(run_dir / "model.pt", weights_only=True)
    state["features.3.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, run_dir / "model.pt")
    before = digest(run_dir)
    spec = tmp_path / "spec.yaml"
    spec.write_text("features.3: {method: tucker, rank: [8, 8]}\n")
    for args in (["evaluate", run_dir / "model.pt", "--test-size", "20"],
                 ["sweep", run_dir / "model.pt", "--out", tmp_path / "s.nc", "--test-size", "20"],
                 ["retrain", run_dir / "model.pt", "--plan", "auto", "--epochs", "1",
                  "--out", tmp_path / "r.nc"],
                 ["tensorize", run_dir / "model.pt", "--spec", spec, "--out", tmp_path / "t"]):
        code, out = cli(*args)
        assert code == 2, (args, out)
        assert "NaN" in out and "Traceback" not in out
    assert digest(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "spec.yaml"]


def test_keep_specs_that_overflow_or_are_not_specs_are_input_errors():
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3))
    for keep in (None, 0.5, "chi=1e400", "frac=2", ["frac=0.5", "frac=0.5"]):
        with pytest.raises(InputError):
            ca.truncate(w, "out|in,kh,kw", keep)
    w[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN/Inf"):
        ca.truncate(w, "out|in,kh,kw", "chi=1")
    with pytest.raises(InputError, match="complex"):
        ca.truncate(np.ones((2, 2), dtype=complex), "out|in", "chi=1")


def test_a_plan_file_with_a_bare_number_as_keep_is_an_input_error(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("'0': {cuts: ['out|in,kh,kw'], keep: 0.5}\n")
    model = nn.Sequential(nn.Conv2d(1, 4, 3))
    with pytest.raises(InputError, match="malformed"):
        ca.resolve_plan(model, plan)


def test_a_sweep_with_nan_weights_leaves_no_parts_directory(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    data = [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    with pytest.raises(InputError, match="NaN"):
        ca.sweep(model, data, keeps="frac=0.5", out=tmp_path / "s.nc")
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_manifest_under_resume_is_an_input_error(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    data = [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    (tmp_path / "s.nc.parts").mkdir()
    (tmp_path / "s.nc.parts" / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="damaged"):
        ca.sweep(model, data, keeps="frac=0.5", out=tmp_path / "s.nc", resume=True)


def test_run_refuses_a_name_of_dots_and_bad_sweep_keeps_before_any_stage(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: '..'\nmodel: cnn4\ndataset: fashion-mnist\n"
                      "sweep: {keeps: 'chi=0'}\n")
    code, out = cli("run", config)
    assert code == 2 and "only dots" in out and "chi must be" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_retrain_auto_refuses_a_sweep_of_other_weights(tmp_path):
    from corranalysis.retrain import plan_from_option

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    data = [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    ca.sweep(model, data, keeps="frac=0.5,frac=0.1", out=tmp_path / "s.nc")
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with pytest.raises(InputError, match="other weights"):
        plan_from_option("auto", str(tmp_path / "s.nc"), 0.5, other)


def test_a_report_out_that_would_replace_the_run_is_refused(run_dir):
    from corranalysis.report._build import _check_out

    with pytest.raises(InputError, match="replace the run directory"):
        _check_out(run_dir, run_dir)
    with pytest.raises(InputError, match="replace the run directory"):
        _check_out(run_dir.parent, run_dir)


# --------------------------------------------------------------------------- property


_WORDS = ["--out", "--model", "--dataset", "--epochs", "--plan", "--spec", "--keeps", "--cuts",
          "--layers", "--legs", "--mode", "--lr", "--test-size", "--resume", "--overwrite",
          "cnn4", "fc2", "nope", "fashion-mnist", "auto", "all", "out|in", "frac=0.5",
          "chi=0", "-1", "0", "1e400", "nan", "", "x.nc", "--help"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(verb=st.sampled_from(VERBS), words=st.lists(st.sampled_from(_WORDS), max_size=6),
       junk=st.binary(max_size=300), which=st.integers(0, 2))
def test_random_arguments_and_files_exit_0_or_2_without_traceback_or_changes(
        tmp_path_factory, verb, words, junk, which):
    folder = tmp_path_factory.mktemp("prop")
    source = folder / ("model.pt", "sweep.nc", "config.yaml")[which]
    source.write_bytes(junk)
    out = folder / "out"
    before = digest(folder)
    args = [verb, source, *words]
    args = [a if a != "x.nc" else out / "x.nc" for a in args]
    if "--out" not in words and verb in ("spectra", "sweep", "retrain", "tensorize", "train"):
        args += ["--out", out / "o.nc" if verb != "tensorize" else out]
    code, text = cli(*args)
    assert code in (0, 2), text
    assert "Traceback" not in text
    after = digest(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs unchanged
    if code == 2:
        assert after.keys() == before.keys(), "partial output left behind"


@needs_fashion
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cut=st.integers(1, 2000), flip=st.integers(0, 255), verb=st.sampled_from(
    ["spectra", "evaluate", "sweep"]))
def test_damaged_copies_of_a_real_checkpoint_exit_0_or_2(tmp_path_factory, cut, flip, verb):
    folder = tmp_path_factory.mktemp("damaged")
    torch.manual_seed(0)
    torch.save(create("fc2", 1, 10).state_dict(), folder / "model.pt")
    data = bytearray((folder / "model.pt").read_bytes())
    position = min(cut, len(data) - 1)
    damaged = folder / "damaged.pt"
    damaged.write_bytes(bytes(data[:position]) + bytes([flip]) + bytes(data[position + 1:]))
    before = digest(folder)
    extra = {"spectra": ["--out", folder / "s.nc"], "sweep": ["--out", folder / "w.nc",
                                                             "--test-size", "20",
                                                             "--keeps", "frac=0.5",
                                                             "--layers", "classifier.3"],
             "evaluate": ["--test-size", "20"]}[verb]
    data_args = [] if verb == "spectra" else ["--dataset", "fashion-mnist"]
    code, text = cli(verb, damaged, "--model", "fc2", *data_args, *extra)
    assert code in (0, 2), text
    assert "Traceback" not in text
    after = digest(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    if code == 2:
        assert after.keys() == before.keys()


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["all", "out|in", "frac=0.5", "chi=2",
                                                           "loss=0.1", "natural", "binary"]),
                    st.lists(st.sampled_from(["out|in", "in|out", "frac=0.5", "x"]),
                             max_size=3))


@settings(max_examples=150, deadline=None)
@given(keep=_VALUES, cuts=_VALUES, legs=_VALUES, lr=_VALUES, plans=_VALUES)
def test_the_api_raises_input_error_for_every_value_it_refuses(keep, cuts, legs, lr, plans):
    """No TypeError, ValueError or LinAlgError from bad values: InputError or a result."""
    w = np.arange(12.0).reshape(3, 4) + 1.0
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    data = [(torch.randn(4, 4), torch.randint(0, 3, (4,)))]
    calls = [
        lambda: ca.truncate(w, cuts if cuts is not None else "out|in", keep),
        lambda: ca.compute_spectra(ca.extract_kernels(model), legs=legs, cuts=cuts),
        lambda: ca.Optim(lr=lr),
        lambda: ca.sweep(model, data, keeps=keep, cuts=cuts if cuts is not None else "all",
                         plans=plans if plans is not None else "layer"),
        lambda: ca.resolve_plan(model, {"0": {"cuts": cuts, "keep": keep}}),
    ]
    for call in calls:
        try:
            call()
        except InputError:
            pass
