"""The study pipeline: data → train → kernels → spectra → sweep → linkage → retrain → report.

A thin shell over the public API. Each stage writes its output into the run
directory and records a hash of its inputs (its configuration section and the
hashes of the stages it reads) in ``stages.json``; a stage whose output exists
with the same hash is skipped, so editing only the report settings re-renders
without retraining. ``force`` redoes the named stages (and, through the hashes,
whatever depends on a changed output).

:func:`load_run` reads a run directory back (records and datasets) for the report, the
figures and notebooks; files are named by the one :data:`STAGES` table. :func:`open_run`
gives the same as one ``xarray.DataTree`` (a node per dataset) whose ``.ca`` accessor draws
the report's figures, for exploring a finished run in Jupyter.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
import xarray as xr
import yaml
from rich.console import Console

from .config import StudyConfig, load_config
from .errors import InputError
from .io import read_netcdf, write_json, write_netcdf
from .kernels import extract_kernels
from .linkage import link, scoped_sweep
from .provenance import file_sha256, package_versions
from .report import build_report, comparison_files, read_comparisons
from .report.figures import figure_makers
from .retrain import FINE_TUNE, auto_plan, retrain
from .runtime import BATCH_SIZE, Optim, Trained, evaluate, load_trained, save_state_dict, train
from .spectra import compute_spectra
from .sweep import sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Stage:
    """One stage of the study: the stages whose outputs it reads and the file it writes."""

    name: str
    upstream: tuple[str, ...]
    output: str | None


#: The study's stages in order: what each reads and writes. The one table of run files.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("train", (), "model.pt"),
    Stage("spectra", ("train",), "spectra.nc"),
    Stage("sweep", ("train",), "sweep.nc"),
    Stage("linkage", ("spectra", "sweep"), "linkage.nc"),
    Stage("retrain", ("train", "sweep"), "recovery.nc"),
    Stage("report", ("train", "spectra", "sweep", "linkage", "retrain"), None),
)}
#: Datasets a run directory may hold beside the stages' outputs (training curves written
#: with model.pt; ``corranalysis tensorize`` results; ``corranalysis seeds`` over this
#: study's runs with other training seeds).
OPTIONAL_FILES = ("metrics.nc", "tensorize.nc", "seeds.nc")
#: Those written by other verbs than the study's stages: the report depends on them too
#: (a new or changed one makes ``corranalysis run`` rebuild the report).
REPORT_EXTRAS = ("tensorize.nc", "seeds.nc")
#: The datasets a run directory may hold, by file stem, in the order :func:`load_run` reads
#: them (``Run.datasets`` keys; :func:`open_run`'s node names).
RUN_DATASETS = tuple(str(f).removesuffix(".nc") for f in (
    *(s.output for s in STAGES.values() if (s.output or "").endswith(".nc")), *OPTIONAL_FILES))
#: Stages whose datasets the report reads (``load_run``'s default ``required``).
REPORT_INPUTS = tuple(s for s in STAGES["report"].upstream
                      if (STAGES[s].output or "").endswith(".nc"))
#: Variables each dataset must hold (a file without them was written by another version).
_NEEDS = {
    "spectra": ("singular_values", "norm_loss", "entropy", "chi_max"),
    "sweep": ("accuracy", "norm_loss", "chi", "params_factorized"),
    "linkage": ("tolerated_norm_loss", "spearman_rho", "layer_tolerated_norm_loss"),
    "recovery": ("accuracy",),
    "tensorize": ("params_before", "params_after", "method", "accuracy"),
    "seeds": ("spearman_rho", "partial_rho", "holds", "partial_holds",
              "layer_tolerated_norm_loss"),
}


#: options added after runs existed: at these values they leave a stage's hash as it was,
#: so existing run directories are not recomputed for them
_LATER_DEFAULTS: dict[str, dict[str, Any]] = {"sweep": {"stop_within": False}}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Study:
    """One configured study and its run directory."""

    def __init__(self, config: StudyConfig, console: Console | None = None):
        self.config = config
        self.run_dir = config.run_dir
        self.console = console or Console(stderr=True)
        self.train_optim = Optim.from_mapping(config.section("train"))
        # the optimiser settings are validated here, before any stage runs
        self.retrain_optim = Optim.from_mapping(FINE_TUNE.as_dict(), **{
            k: v for k, v in config.section("retrain").items() if v is not None})

    # ------------------------------------------------------------------ bookkeeping
    @property
    def stages_file(self) -> Path:
        return self.run_dir / "stages.json"

    def records(self) -> dict[str, dict[str, Any]]:
        if self.stages_file.is_file():
            return json.loads(self.stages_file.read_text())
        return {}

    def stage_inputs(self, stage: str) -> dict[str, Any]:
        c = self.config
        common = {"model": c.model, "dataset": c.dataset, "seed": c.seed,
                  "test_size": c.test_size}
        inputs: dict[str, Any] = {"stage": stage, **common}
        if stage == "train":
            inputs["train"] = c.section("train") if not c.checkpoint else None
            inputs["checkpoint"] = c.checkpoint
        elif stage in ("spectra", "sweep", "linkage", "retrain"):
            section = c.section(stage)
            for key, value in _LATER_DEFAULTS.get(stage, {}).items():
                if section.get(key) == value:
                    del section[key]
            inputs[stage] = section
        elif stage == "report":
            inputs["report"] = c.section("report")
            extras = {f: file_sha256(self.run_dir / f) for f in REPORT_EXTRAS
                      if (self.run_dir / f).is_file()}
            if extras:  # absent: the hash stays that of a run without them
                inputs["extras"] = extras
        return inputs

    def stage_hash(self, stage: str) -> str:
        records = self.records()
        # an upstream stage that reran (new finish time) invalidates this one
        upstream = {name: [records.get(name, {}).get(k) for k in ("hash", "finished")]
                    for name in STAGES[stage].upstream}
        return _hash({"inputs": self.stage_inputs(stage), "upstream": upstream})

    def is_done(self, stage: str) -> bool:
        record = self.records().get(stage)
        output = STAGES[stage].output
        if not record or record.get("hash") != self.stage_hash(stage):
            return False
        if output is None:
            return Path(record.get("output", "")).exists()
        path = self.run_dir / output
        # the output must be the very file the stage wrote (not damaged or replaced since)
        return path.is_file() and record.get("output_sha256") == file_sha256(path)

    def _record(self, stage: str, seconds: float, output: str | None = None) -> None:
        records = self.records()
        records[stage] = {
            "hash": self.stage_hash(stage),
            "seconds": round(seconds, 3),
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        if output:
            records[stage]["output"] = output
        if STAGES[stage].output is not None and (self.run_dir / STAGES[stage].output).is_file():
            records[stage]["output_sha256"] = file_sha256(self.run_dir / STAGES[stage].output)
        write_json(records, self.stages_file)

    # ------------------------------------------------------------------ shared inputs
    def trained(self, train_size: int | None = None, batch_size: int | None = None, *,
                with_data: bool = True) -> Trained:
        """The run's trained model (a fresh copy each call), with the study's data unless
        ``with_data=False``."""
        c = self.config
        return load_trained(self.run_dir / "model.pt", c.model, c.dataset,
                            batch_size=batch_size, eval_batch_size=c.eval_batch_size,
                            train_size=train_size, test_size=c.test_size, data_dir=c.data_dir,
                            seed=c.seed, device=c.device, with_data=with_data)

    # ------------------------------------------------------------------ stages
    def stage_train(self, force: bool) -> None:
        """Train the model (test accuracy on the full test set), or adopt ``checkpoint``."""
        c = self.config
        if c.checkpoint:
            self._adopt_checkpoint(Path(c.checkpoint))
            return
        t = c.train
        train(c.model, c.dataset, epochs=t.epochs, out=self.run_dir, **self.train_optim.as_dict(),
              batch_size=t.batch_size or BATCH_SIZE, eval_batch_size=c.eval_batch_size,
              train_size=t.train_size, test_size=None, seed=c.seed, device=c.device,
              data_dir=c.data_dir, overwrite=True, progress=True, num_threads=c.threads)

    def _adopt_checkpoint(self, src: Path) -> None:
        """Check that ``src`` fits the model, evaluate it, then copy it in as ``model.pt``."""
        if not src.is_file():
            raise InputError(f"checkpoint {str(src)!r} (config key 'checkpoint') does not exist")
        c = self.config
        trained = load_trained(src, c.model, c.dataset, eval_batch_size=c.eval_batch_size,
                               test_size=c.test_size, data_dir=c.data_dir, seed=c.seed,
                               device=c.device)
        result = evaluate(trained.model, trained.test, trained.device)
        save_state_dict(trained.model, self.run_dir / "model.pt")
        info = trained.info
        write_json({"model": c.model, "dataset": c.dataset, "in_channels": info.in_channels,
                    "num_classes": info.num_classes, "image_size": info.image_size,
                    "checkpoint": str(src),
                    "checkpoint_sha256": file_sha256(src),
                    "model_sha256": file_sha256(self.run_dir / "model.pt"),
                    "test_accuracy": result.accuracy,
                    "test_loss": result.loss, "test_size": c.test_size,
                    "package_versions": package_versions()}, self.run_dir / "run.json")

    def stage_spectra(self, force: bool) -> None:
        s = self.config.spectra
        kernels = extract_kernels(self.trained(with_data=False).model, layers=s.layers,
                                  kinds=s.kinds)
        ds = compute_spectra(kernels, legs=s.legs, cuts=s.cuts, device=self.config.device,
                             progress=True, max_memory=s.max_memory)
        write_netcdf(ds, self.run_dir / "spectra.nc")

    def stage_sweep(self, force: bool) -> None:
        s = self.config.sweep
        out = self.run_dir / "sweep.nc"
        if force:
            out.unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "sweep.nc.parts", ignore_errors=True)
        trained = self.trained(train_size=s.calibration_size)
        calibration = (trained.train if s.calibration_size and "data-aware" in s.truncations
                       else None)
        sweep(trained.model, trained.test, layers=s.layers, cuts=s.cuts, keeps=s.keeps,
              device=self.config.device, plans=s.plans, kinds=s.kinds,
              truncations=s.truncations, calibration=calibration, stop_drop=s.stop_drop,
              stop_within=s.stop_within, out=out, resume=True, workers=s.workers, progress=True,
              config=self.config.model_dump(mode="json"), checkpoint=self.run_dir / "model.pt")

    def stage_linkage(self, force: bool) -> None:
        ds = link(read_netcdf(self.run_dir / "sweep.nc"), read_netcdf(self.run_dir / "spectra.nc"),
                  delta=self.config.linkage.delta)
        write_netcdf(ds, self.run_dir / "linkage.nc")

    def stage_retrain(self, force: bool) -> None:
        c, r = self.config, self.config.retrain
        plan = (auto_plan(read_netcdf(self.run_dir / "sweep.nc"), r.budget)
                if r.plan == "auto" else r.plan)
        trained = self.trained(train_size=r.train_size, batch_size=r.batch_size)
        # each mode's result is kept as it finishes: a killed stage resumes at the next mode
        parts_dir = self.run_dir / "recovery.nc.parts"
        manifest = parts_dir / "manifest.json"
        fingerprint = self.stage_hash("retrain")
        if force or not (manifest.is_file()
                         and json.loads(manifest.read_text()).get("hash") == fingerprint):
            shutil.rmtree(parts_dir, ignore_errors=True)
            parts_dir.mkdir()
            write_json({"hash": fingerprint}, manifest)
        parts = []
        for mode in r.modes:
            part = parts_dir / f"{mode}.nc"
            if part.is_file():
                self.console.print(f"retrain ({mode}): finished before, kept")
                parts.append(read_netcdf(part))
                continue
            ds = retrain(copy.deepcopy(trained.model), plan, trained.train, trained.test,
                         r.epochs, mode=mode, optim=self.retrain_optim, seed=c.seed,
                         device=c.device, progress=True, checkpoint=self.run_dir / "model.pt")
            write_netcdf(ds, part)
            parts.append(read_netcdf(part))  # as a resumed run reads it
        ds = xr.concat(parts, dim=pd.Index(list(r.modes), name="mode"),
                       combine_attrs="drop_conflicts")
        if r.plan == "auto":
            ds.attrs["budget"] = r.budget
        write_netcdf(ds, self.run_dir / "recovery.nc")
        shutil.rmtree(parts_dir, ignore_errors=True)

    def stage_report(self, force: bool) -> str:
        out = self.config.report.out
        found = comparison_files(self.run_dir)  # compare.nc files kept in the run directory
        return str(build_report(load_run(self.run_dir), out_dir=Path(out) if out else None,
                                comparisons=read_comparisons(*found) if found else None))

    # ------------------------------------------------------------------ driver
    def run(self, force: Sequence[str] = (), only: Sequence[str] | None = None) -> Path | None:
        """Run every stage not already done for this configuration; return the report path."""
        unknown = [s for s in (*force, *(only or ())) if s not in STAGES]
        if unknown:
            raise InputError(f"stages {unknown} are unknown; valid: {', '.join(STAGES)}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.run_dir / "config.yaml"
        config_file.write_text(yaml.safe_dump(self.config.model_dump(mode="json"),
                                              sort_keys=False))
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        report: Path | None = None
        for i, stage in enumerate(STAGES, 1):
            if only is not None and stage not in only:
                continue
            tag = f"[{i}/{len(STAGES)}] {stage}"
            if stage not in force and self.is_done(stage):
                self.console.print(f"{tag}: up to date, skipped")
                if stage == "report":
                    report = Path(self.records()["report"]["output"])
                continue
            self.console.print(f"[bold]{tag}[/]: running")
            t0 = time.perf_counter()
            fn: Callable[[bool], Any] = getattr(self, f"stage_{stage}")
            result = fn(stage in force)
            seconds = time.perf_counter() - t0
            self._record(stage, seconds, output=result if isinstance(result, str) else None)
            self.console.print(f"{tag}: done in {seconds:.1f} s")
            if stage == "report":
                report = Path(result)
        return report


# --------------------------------------------------------------------------- reading a run


@dataclass
class Run:
    """A run directory's records and datasets, as :func:`load_run` reads them.

    ``config``: config.yaml; ``record``: run.json; ``stages``: stages.json in stage order;
    ``datasets``: by file stem (``spectra``, ``sweep``, ``linkage``, ``recovery``, and
    ``metrics``, ``tensorize``, ``seeds`` where present).
    """

    path: Path
    config: dict[str, Any]
    record: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    datasets: dict[str, xr.Dataset] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)


def _stage_hint(run_dir: Path, stage: str) -> str:
    return (f"run `corranalysis run CONFIG --force {stage}` (CONFIG: the study's "
            f"configuration, e.g. {run_dir / 'config.yaml'})")


def _writer(file: str) -> str | None:
    """The stage that writes ``file``, if one does."""
    return next((s.name for s in STAGES.values() if s.output == file), None)


def _read_mapping(path: Path, kind: str) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{str(path)!r} cannot be read as {kind.upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{str(path)!r} must hold a mapping; the run directory is damaged")
    return data


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a Path; InputError unless it is a directory with config.yaml and
    run.json (written by ``corranalysis run``). Reads nothing else."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"run directory {str(path)!r} does not exist; give a directory "
                         "written by `corranalysis run CONFIG` (runs/NAME)")
    lacking = [f for f in ("config.yaml", "run.json") if not (path / f).is_file()]
    if lacking:
        raise InputError(f"{str(path)!r} is not a run directory (no {' / '.join(lacking)}); "
                         "give a directory written by `corranalysis run CONFIG` (runs/NAME)")
    return path


def load_run(run_dir: str | os.PathLike, required: Sequence[str] = REPORT_INPUTS) -> Run:
    """Read a run directory written by ``corranalysis run``: its records and every dataset.

    ``required``: stages whose outputs must be there (default: those the report reads);
    InputError naming the stage to re-run for each missing, unreadable or outdated file.
    A sweep written before the ``scope`` coordinate existed is converted on reading
    (:func:`corranalysis.linkage.scoped_sweep`).
    """
    path = check_run_dir(run_dir)
    unknown = [s for s in required if s not in STAGES]
    if unknown:
        raise InputError(f"stages {unknown} are unknown; valid: {', '.join(STAGES)}")
    missing = [s for s in required if not (path / str(STAGES[s].output)).is_file()]
    if missing:
        files = [str(STAGES[s].output) for s in missing]
        raise InputError(
            f"{', '.join(files)} {'is' if len(files) == 1 else 'are'} missing in "
            f"{str(path)!r}: {_stage_hint(path, missing[0])}"
            + (f" (stages to run: {', '.join(missing)})" if len(missing) > 1 else ""))
    stages_file = path / "stages.json"
    records = _read_mapping(stages_file, "json") if stages_file.is_file() else {}
    run = Run(path=path, config=_read_mapping(path / "config.yaml", "yaml"),
              record=_read_mapping(path / "run.json", "json"),
              stages={**{s: records[s] for s in STAGES if s in records}, **records})
    for key in RUN_DATASETS:
        file = f"{key}.nc"
        if not (path / file).is_file():
            continue
        stage = _writer(file)
        hint = _stage_hint(path, stage) if stage else "re-create it"
        try:
            ds = read_netcdf(path / file)
            lacking = [n for n in _NEEDS.get(key, ()) if n not in ds.variables]
            if key == "sweep" and "baseline_accuracy" not in ds.attrs:
                lacking.append("baseline_accuracy (attribute)")
            if lacking:
                raise InputError(f"{file} in {str(path)!r} lacks {', '.join(lacking)}: it was "
                                 "not written by this version")
        except InputError as exc:
            raise InputError(f"{exc}; {hint}") from None
        if key == "sweep":
            try:
                ds = scoped_sweep(ds)
            except InputError as exc:
                raise InputError(f"{file} in {str(path)!r}: {exc}") from None
        run.datasets[key] = ds
    return run


def open_run(run_dir: str | os.PathLike, *, required: Sequence[str] = ()) -> xr.DataTree:
    """A run directory as one ``xarray.DataTree``: a node per dataset, figures on ``.ca``.

    The nodes are named by dataset (:data:`RUN_DATASETS`: ``spectra``, ``sweep``,
    ``linkage``, ``recovery``, ``metrics``, ``tensorize``, ``seeds``), those the run holds, read by
    :func:`load_run` (so a damaged or outdated file gets the same InputError naming the stage
    to re-run). The root's attributes: ``name``, ``run_dir``, and ``config`` (config.yaml),
    ``run`` (run.json) and ``stages`` (stages.json) as JSON strings, so the tree can be saved
    with ``to_netcdf``; ``tree.ca.config``, ``.record`` and ``.stages`` give them as dicts.
    ``required``: stages whose outputs must be there (default: none, so a run still in
    progress opens with what it has). A folder that is not a run directory: InputError.

    The accessor (:class:`RunAccessor`) draws every figure of the report::

        tree = ca.open_run("runs/fashion_cnn4")
        tree["sweep"].dataset                 # the sweep, as written
        tree.ca.figures()                     # ['training', 'spectra', 'entropy', ...]
        tree.ca.figure("accuracy_vs_norm_loss")
    """
    run = load_run(run_dir, required=required)
    tree = xr.DataTree.from_dict({f"/{key}": ds for key, ds in run.datasets.items()},
                                 name=run.name)
    tree.attrs.update(name=run.name, run_dir=str(run.path),
                      **{key: json.dumps(value, default=str) for key, value in
                         (("config", run.config), ("run", run.record), ("stages", run.stages))})
    return tree


@xr.register_datatree_accessor("ca")
class RunAccessor:
    """``tree.ca``: the report's figures (:func:`corranalysis.report.figures.figure_makers`)
    drawn from the nodes of a tree named by dataset, as :func:`open_run` gives it (or any
    tree with such nodes, e.g. ``xr.DataTree.from_dict({"spectra": ds, "sweep": sw})``),
    and the run's records."""

    def __init__(self, tree: xr.DataTree):
        self._tree = tree

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        """The child nodes named by dataset (:data:`RUN_DATASETS`), as datasets."""
        return {key: self._tree[key].to_dataset() for key in RUN_DATASETS
                if key in self._tree.children}

    def _record(self, key: str) -> dict[str, Any]:
        text = self._tree.attrs.get(key)
        return json.loads(text) if isinstance(text, str) else {}

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration (config.yaml); ``{}`` where the tree carries none."""
        return self._record("config")

    @property
    def record(self) -> dict[str, Any]:
        """The run's run.json (model, data set, test accuracy, provenance); ``{}`` if none."""
        return self._record("run")

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """stages.json: input hash and wall time per stage; ``{}`` if none."""
        return self._record("stages")

    def figures(self) -> list[str]:
        """The names of the figures the tree's datasets allow, in report order."""
        return list(figure_makers(self.datasets))

    def figure(self, name: str, *, width: float | None = None,
               layers: Sequence[str] | None = None) -> Figure:
        """Draw figure ``name`` (one of :meth:`figures`); ``width`` in inches (default: its
        journal width), ``layers``: only these layers. The figure is not kept by pyplot, so
        it shows once in Jupyter and is freed when dropped."""
        makers = figure_makers(self.datasets, width=width, layers=layers)
        if name not in makers:
            have = ", ".join(self.datasets) or "none"
            raise InputError(f"figure {name!r} is not available; valid: "
                             f"{', '.join(makers) or 'none'} (datasets in the tree: {have})")
        fig = makers[name]()
        plt.close(fig)
        return fig


def run_study(config: str | Path | StudyConfig, force: Sequence[str] = (),
              only: Sequence[str] | None = None) -> Path | None:
    """Run the study described by ``config`` (a YAML path or a validated config)."""
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    return Study(config).run(force=force, only=only)
