"""The study pipeline: data → train → kernels → spectra → sweep → linkage → retrain → report.

A thin shell over the public API. Each stage writes its output into the run
directory and records a hash of its inputs (its configuration section and the
hashes of the stages it reads) in ``stages.json``; a stage whose output exists
with the same hash is skipped, so editing only the report settings re-renders
without retraining. ``force`` redoes the named stages (and, through the hashes,
whatever depends on a changed output).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from .config import StudyConfig, load_config
from .errors import InputError
from .io import atomic_path, read_netcdf, write_json, write_netcdf

STAGES = ("train", "spectra", "sweep", "linkage", "retrain", "report")
OUTPUTS = {
    "train": "model.pt",
    "spectra": "spectra.nc",
    "sweep": "sweep.nc",
    "linkage": "linkage.nc",
    "retrain": "recovery.nc",
    "report": None,
}
UPSTREAM = {
    "train": (),
    "spectra": ("train",),
    "sweep": ("train",),
    "linkage": ("spectra", "sweep"),
    "retrain": ("train", "sweep"),
    "report": ("train", "spectra", "sweep", "linkage", "retrain"),
}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Study:
    """One configured study and its run directory."""

    def __init__(self, config: StudyConfig, console: Console | None = None):
        self.config = config
        self.run_dir = config.run_dir
        self.console = console or Console(stderr=True)
        self._loaders = None
        self._model = None

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
            inputs[stage] = c.section(stage)
        elif stage == "report":
            inputs["report"] = c.section("report")
        return inputs

    def stage_hash(self, stage: str) -> str:
        records = self.records()
        # an upstream stage that reran (new finish time) invalidates this one
        upstream = {name: [records.get(name, {}).get(k) for k in ("hash", "finished")]
                    for name in UPSTREAM[stage]}
        return _hash({"inputs": self.stage_inputs(stage), "upstream": upstream})

    def is_done(self, stage: str) -> bool:
        record = self.records().get(stage)
        output = OUTPUTS[stage]
        if not record or record.get("hash") != self.stage_hash(stage):
            return False
        if output is None:
            return Path(record.get("output", "")).exists()
        return (self.run_dir / output).exists()

    def _record(self, stage: str, seconds: float, output: str | None = None) -> None:
        records = self.records()
        records[stage] = {
            "hash": self.stage_hash(stage),
            "seconds": round(seconds, 3),
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        if output:
            records[stage]["output"] = output
        write_json(records, self.stages_file)

    # ------------------------------------------------------------------ shared inputs
    def loaders(self):
        if self._loaders is None:
            from .data import make_loaders

            c = self.config
            self._loaders = make_loaders(
                c.dataset, batch_size=c.train.batch_size, eval_batch_size=c.eval_batch_size,
                data_dir=c.data_dir, train_size=c.train.train_size, test_size=c.test_size,
                seed=c.seed, device=c.device)
        return self._loaders

    def model(self) -> torch.nn.Module:
        """The trained model (fresh copy each call) loaded from the run's checkpoint."""
        from .checkpoints import load_into
        from .models import resolve_model

        info = self.loaders()[2]
        model = resolve_model(self.config.model, info.in_channels, info.num_classes)
        load_into(model, self.run_dir / "model.pt")
        return model.eval()

    # ------------------------------------------------------------------ stages
    def stage_train(self, force: bool) -> None:
        """Train the model (test accuracy on the full test set), or adopt ``checkpoint``."""
        c = self.config
        if c.checkpoint:
            self._adopt_checkpoint(Path(c.checkpoint))
            return
        from .training import train

        t = c.train
        train(c.model, c.dataset, epochs=t.epochs, out=self.run_dir, optimizer=t.optimizer,
              lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, schedule=t.schedule,
              label_smoothing=t.label_smoothing, batch_size=t.batch_size,
              eval_batch_size=c.eval_batch_size, train_size=t.train_size, test_size=None,
              seed=c.seed, device=c.device, data_dir=c.data_dir, overwrite=True, progress=True,
              num_threads=c.threads)

    def _adopt_checkpoint(self, src: Path) -> None:
        """Check that ``src`` fits the model, evaluate it, then copy it in as ``model.pt``."""
        from .checkpoints import load_into, load_state_dict
        from .models import resolve_model
        from .provenance import file_sha256, package_versions
        from .training import evaluate

        if not src.is_file():
            raise InputError(f"checkpoint {str(src)!r} (config key 'checkpoint') does not exist")
        c = self.config
        state = load_state_dict(src)
        info = self.loaders()[2]
        model = resolve_model(c.model, info.in_channels, info.num_classes)
        load_into(model, state)
        accuracy, loss = evaluate(model.eval(), self.loaders()[1], c.device)
        with atomic_path(self.run_dir / "model.pt") as tmp:
            torch.save(state, tmp)
        write_json({"model": c.model, "dataset": c.dataset, "in_channels": info.in_channels,
                    "num_classes": info.num_classes, "checkpoint": str(src),
                    "checkpoint_sha256": file_sha256(src), "test_accuracy": accuracy,
                    "test_loss": loss, "test_size": c.test_size,
                    "package_versions": package_versions()}, self.run_dir / "run.json")

    def stage_spectra(self, force: bool) -> None:
        from .kernels import extract_kernels
        from .spectra import compute_spectra

        s = self.config.spectra
        kernels = extract_kernels(self.model(), layers=s.layers, kinds=s.kinds)
        ds = compute_spectra(kernels, legs=s.legs, cuts=s.cuts, device=self.config.device,
                             progress=True)
        write_netcdf(ds, self.run_dir / "spectra.nc")

    def stage_sweep(self, force: bool) -> None:
        from .sweeps import sweep

        s = self.config.sweep
        out = self.run_dir / "sweep.nc"
        if force:
            out.unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "sweep.nc.parts", ignore_errors=True)
        sweep(self.model(), self.loaders()[1], layers=s.layers, cuts=s.cuts, keeps=s.keeps,
              device=self.config.device, plans=s.plans, kinds=s.kinds, out=out, resume=True,
              workers=s.workers, progress=True, config=self.config.model_dump(mode="json"))

    def stage_linkage(self, force: bool) -> None:
        from .linkage import link

        ds = link(read_netcdf(self.run_dir / "sweep.nc"), read_netcdf(self.run_dir / "spectra.nc"),
                  delta=self.config.linkage.delta)
        write_netcdf(ds, self.run_dir / "linkage.nc")

    def stage_retrain(self, force: bool) -> None:
        import pandas as pd
        import xarray as xr

        from .data import make_loaders
        from .recovery import auto_plan, retrain

        c, r = self.config, self.config.retrain
        plan = (auto_plan(read_netcdf(self.run_dir / "sweep.nc"), r.min_drop)
                if r.plan == "auto" else r.plan)
        train_loader, test_loader, _ = make_loaders(
            c.dataset, batch_size=r.batch_size, eval_batch_size=c.eval_batch_size,
            data_dir=c.data_dir, train_size=r.train_size, test_size=c.test_size, seed=c.seed,
            device=c.device)
        parts = [retrain(self.model(), plan, train_loader, test_loader, r.epochs, mode=mode,
                         lr=r.lr, seed=c.seed, device=c.device, progress=True)
                 for mode in r.modes]
        ds = xr.concat(parts, dim=pd.Index(list(r.modes), name="mode"),
                       combine_attrs="drop_conflicts")
        write_netcdf(ds, self.run_dir / "recovery.nc")

    def stage_report(self, force: bool) -> str:
        from .report import build_report

        out = self.config.report.out
        return str(build_report(self.run_dir, out_dir=Path(out) if out else None))

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


def run_study(config: str | Path | StudyConfig, force: Sequence[str] = (),
              only: Sequence[str] | None = None) -> Path | None:
    """Run the study described by ``config`` (a YAML path or a validated config)."""
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    return Study(config).run(force=force, only=only)
