"""Study configuration: a YAML file validated before any work is done.

Every error in a file (unknown keys, wrong types, impossible values) is reported
at once, each with its path in the file (``train.epochs: ...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .data import DATASETS, resolve_name
from .errors import InputError
from .io import read_yaml
from .kernels import as_cuts
from .models import available
from .truncation import parse_keeps

PositiveInt = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OptimSection(_Section):
    """Optimiser settings; a key left out (None) takes the runtime's default
    (``corranalysis.runtime.Optim``, which also checks the ranges)."""

    optimizer: Literal["sgd", "adam", "adamw"] | None = None
    lr: Annotated[float, Field(gt=0)] | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    schedule: Literal["cosine", "step", "constant"] | None = None
    warmup: Annotated[float, Field(ge=0, lt=1)] | None = None
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] | None = None
    batch_size: PositiveInt | None = None


class TrainConfig(_OptimSection):
    """How the model is trained (stage ``train``)."""

    epochs: PositiveInt = 10
    train_size: PositiveInt | None = None


class SpectraConfig(_Section):
    """Which kernels and cuts the spectra cover (stage ``spectra``)."""

    layers: str | list[str] | None = None
    kinds: str | list[str] | None = None
    legs: Literal["natural", "prime", "binary"] | dict[str, list[PositiveInt]] = "natural"
    cuts: str | list[str] = "all"
    #: memory budget of the request ("8GB"; default half the available RAM)
    max_memory: str | PositiveInt | None = None


class SweepConfig(_Section):
    """The truncation grid (stage ``sweep``); keep specs and cuts are checked on load."""

    layers: str | list[str] | None = None
    kinds: str | list[str] | None = None
    cuts: str | list[str] = "all"
    keeps: str | list[str] | None = None
    plans: list[Literal["layer", "all-cuts", "all-layers"]] = ["layer", "all-cuts", "all-layers"]
    #: plain (``svd``) and/or ``data-aware`` truncations (the latter on each layer's out|rest)
    truncations: list[Literal["svd", "data-aware"]] = ["svd", "data-aware"]
    #: training images whose input Grams the data-aware truncation uses (None: the
    #: evaluation images themselves)
    calibration_size: PositiveInt | None = 2000
    #: stop a trial once its drop exceeds this many points beyond 3 standard errors
    #: (None: every trial on every image)
    stop_drop: Annotated[float, Field(ge=0, le=100)] | None = None
    #: also stop a trial once it is certain to stay within ``stop_drop`` points of the
    #: baseline (its accuracy then a paired estimate from the images it saw)
    stop_within: bool = False
    workers: PositiveInt | None = None

    @field_validator("keeps")
    @classmethod
    def _keeps_parse(cls, value: str | list[str] | None) -> str | list[str] | None:
        try:
            parse_keeps(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("cuts")
    @classmethod
    def _cuts_parse(cls, value: str | list[str]) -> str | list[str]:
        try:
            as_cuts(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value


class LinkageConfig(_Section):
    """Linking spectra to accuracy (stage ``linkage``)."""

    delta: Annotated[float, Field(gt=0, le=100)] = 1.0


class RetrainConfig(_OptimSection):
    """Re-training from a truncated model (stage ``retrain``); optimiser keys left out take
    ``corranalysis.retrain.FINE_TUNE``.

    ``plan: auto`` compresses every swept layer so that at most ``budget`` of the swept
    kernels' parameters remain (``corranalysis.retrain.budget_table`` states the rule);
    ``control`` re-trains the untruncated model the same way, the yardstick of "recovered".
    """

    epochs: Annotated[int, Field(ge=0)] = 3
    modes: list[Literal["control", "dense", "projected", "local"]] = [
        "control", "dense", "projected"]
    plan: Literal["auto"] | dict[str, Any] = "auto"
    #: fraction of the swept kernels' parameters the automatic plan keeps (0.5: half)
    budget: Annotated[float, Field(gt=0, lt=1)] = 0.5
    #: replaced by ``budget``; refused with a message saying so
    min_drop: float | None = Field(default=None, exclude=True)
    train_size: PositiveInt | None = None

    @field_validator("min_drop")
    @classmethod
    def _min_drop_replaced(cls, value: float | None) -> None:
        if value is not None:
            raise ValueError("min_drop is no longer used: the automatic plan now compresses "
                             "the whole network to a parameter budget; replace it with "
                             "'budget: 0.5' (the fraction of the swept kernels' parameters "
                             "to keep)")
        return None


class ReportConfig(_Section):
    """Where the report goes (stage ``report``)."""

    out: str | None = None


class StudyConfig(_Section):
    """A whole study: data → train → kernels → spectra → sweep → linkage → retrain → report."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    model: str
    dataset: str
    data_dir: str | None = None
    checkpoint: str | None = None
    runs_dir: str = "runs"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    test_size: PositiveInt | None = None
    eval_batch_size: PositiveInt = 1000
    threads: PositiveInt | None = None
    train: TrainConfig = TrainConfig()
    spectra: SpectraConfig = SpectraConfig()
    sweep: SweepConfig = SweepConfig()
    linkage: LinkageConfig = LinkageConfig()
    retrain: RetrainConfig = RetrainConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("name")
    @classmethod
    def _name_inside_runs(cls, value: str) -> str:
        if set(value) == {"."}:
            raise ValueError("a run name cannot be only dots; it names runs/NAME")
        return value

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        """A built-in name (made canonical), or a spec of the user's own data whose folder,
        file or factory module exists (nothing is read or run: see
        :func:`corranalysis.data.resolve_name`)."""
        try:
            return resolve_name(value)
        except InputError as exc:
            if value in DATASETS:  # a well-formed spec naming what is not there
                raise ValueError(str(exc)) from exc
            raise ValueError(f"unknown data set; valid: {', '.join(DATASETS)}, or your own: "
                             "imagefolder:PATH, PATH.npz, package.module:factory") from exc

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if ":" not in value and value not in available():
            raise ValueError(f"unknown model; valid: {', '.join(available())} "
                             "or package.module:factory")
        return value

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def section(self, name: str) -> dict[str, Any]:
        return getattr(self, name).model_dump(mode="json")

    def with_seed(self, seed: int) -> StudyConfig:
        """The same study with another seed (training and test subset), in its own run
        directory ``NAME_seedN`` (the configured seed keeps ``NAME``)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed {seed!r}: give an integer >= 0")
        if seed == self.seed:
            return self
        base = self.name.split("_seed")[0]
        return self.model_copy(update={"seed": seed, "name": f"{base}_seed{seed}"})


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"configuration {path!r} has {exc.error_count()} error(s):"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {where}: {msg}" + (f" (got {err['input']!r})"
                                            if err["type"] != "extra_forbidden"
                                            and not isinstance(err["input"], dict) else ""))
    return "\n".join(lines)


def parse_config(data: dict[str, Any], path: str = "<config>") -> StudyConfig:
    """Validate a configuration mapping; every error is reported at once."""
    if not isinstance(data, dict):
        raise InputError(f"configuration {path!r} must be a mapping of keys to values")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(_format_errors(path, exc)) from None


def load_config(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study configuration YAML file."""
    data = read_yaml(path, "configuration")
    return parse_config(data or {}, str(path))
