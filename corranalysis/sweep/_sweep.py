"""Sweeps: a grid of truncation trials evaluated on data, resumable and distributable.

A *trial* truncates one layer along one cut with one keep spec (scope ``layer``),
one layer along all the sweep's cuts of it at once (scope ``all-cuts``) or every
selected layer holding a cut along that cut at once (scope ``all-layers``), and
evaluates the model. The result is the sweep dataset of DESIGN.md: one row per
trial along ``trial`` with coordinates ``scope``, ``layer`` (the layer, or the
``,``-joined layers of an all-layers trial), ``cuts`` (the cut, or the ``;``-joined
cuts of an all-cuts trial), ``keep`` and ``truncation`` (``svd``, or ``data-aware``:
single-layer trials on the cut ``out|rest`` that minimise the output error); select
trial kinds by ``scope`` (the views of :mod:`corranalysis.linkage`).

Every trial also gets its *output error* ‖(W̃ − W) ⋆ X‖² / ‖W ⋆ X‖² on the layers'
inputs over the evaluation data (exact, from each layer's input Gram, one extra
data pass for the whole sweep), and the per-image correctness of its predictions
(``correct(trial, image)``), so accuracies and tolerances get bootstrap intervals.
With ``stop_drop=δ`` a trial whose accuracy drop is certain to exceed δ points
(:class:`corranalysis.runtime.StopRule`) is evaluated no further, and with
``stop_within=True`` also a trial certain to stay within δ points of the baseline:
``stopped`` is then true, ``correct`` holds its first ``n_images`` images, and its
accuracy and loss are the paired estimates (the baseline's on all images plus the
trial's difference on the images it saw). Every other trial is bit-identical to the
naive path.

Trials run in chunks; each chunk is one batch-major pass over the data
(:mod:`corranalysis.evaluation`) so a trial that changes one layer never
recomputes the layers before it. With ``out=`` every finished chunk is written to
``<out>.parts/`` at once, ``resume=True`` skips finished chunks, and the parts
are merged into ``out`` at the end. ``workers=N`` / ``scheduler=ADDRESS`` spread
chunks over Dask workers that load the model and data once each.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from ..data import as_loaders
from ..devices import resolve_device
from ..errors import InputError, check_opt
from ..io import check_output_path, read_netcdf, write_json, write_netcdf
from ..kernels import (
    CUT_MODES,
    LegsSpec,
    as_cuts,
    select_cuts,
    select_layers,
)
from ..progress import progress_bar
from ..provenance import file_sha256, params_sha256, provenance
from ..runtime import (
    StopRule,
    check_data_fits,
    check_weights,
    evaluate_variants,
    gram_supported,
    input_grams,
    load_trained,
    output_error,
)
from ..truncation import (
    TRUNCATIONS,
    KeepLike,
    KeepSpec,
    Plan,
    PlanEntry,
    TruncationMetrics,
    aware_cut,
    cut_dims,
    entry_gram,
    module_layout,
    parse_cuts,
    parse_keeps,
)

PLAN_MODES = ("layer", "all-cuts", "all-layers")
DEFAULT_FRACS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05,
                 0.03, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005)
DEFAULT_LOSSES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
VARIABLES = ("accuracy", "loss", "norm_loss", "output_error", "rel_error", "fidelity", "chi",
             "params_factorized", "params_dense", "n_layers", "n_images", "stopped")
# Bytes of truncated kernels one chunk may hold (the variants evaluated in one data pass).
CHUNK_BYTES = 256 * 2**20
#: Trials one chunk may hold by default: a chunk is the unit of progress and of resume
#: (each costs one more pass of the untruncated network over the data).
CHUNK_TRIALS = 200


def default_keeps(chi_max: int) -> list[KeepSpec]:
    """``frac`` from 1.0 down to the first that keeps one singular value of a cut of
    rank ``chi_max`` (the largest in the sweep), then ``loss`` budgets."""
    fracs = []
    for f in DEFAULT_FRACS:
        fracs.append(KeepSpec("frac", f))
        if fracs[-1].chi(None, chi_max) <= 1:
            break
    return fracs + [KeepSpec("loss", e) for e in DEFAULT_LOSSES]


@dataclass(frozen=True)
class TrialSpec:
    """One trial: its coordinates and the plan it applies.

    ``scope``: ``layer``, ``all-cuts`` or ``all-layers``; ``layer``: the layer, or the
    ``,``-joined layers of an all-layers trial; ``cuts``: the cut, or the ``;``-joined
    cuts of an all-cuts trial; ``truncation``: ``svd`` or ``data-aware``.
    """

    scope: str
    layer: str
    cuts: str
    keep: str
    plan: Plan
    truncation: str = "svd"

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "layer": self.layer, "cuts": self.cuts,
                "keep": self.keep, "truncation": self.truncation,
                "plan": self.plan.as_dict()}


def _as_modes(plans: str | Sequence[str]) -> list[str]:
    if isinstance(plans, str):
        plans = [p for p in plans.split(",") if p.strip()]
    if not isinstance(plans, Sequence) or not all(isinstance(p, str) for p in plans):
        raise InputError(f"plans {plans!r} unknown; valid: {', '.join(PLAN_MODES)}")
    modes = [p.strip().lower() for p in plans]
    bad = [m for m in modes if m not in PLAN_MODES]
    if bad or not modes:
        raise InputError(f"plans {bad or plans!r} unknown; valid: {', '.join(PLAN_MODES)}")
    return modes


def build_trials(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    cuts: str | Sequence[str] = "all",
    keeps: str | Sequence[KeepLike] | None = None,
    plans: str | Sequence[str] = ("layer",),
    kinds: str | Sequence[str] | None = None,
    legs: LegsSpec = "natural",
    truncations: str | Sequence[str] = ("svd",),
) -> list[TrialSpec]:
    """The grid of trials: validated layers × cuts × keeps for each plan mode.

    ``cuts``: ``"all"``/``"contiguous"`` (each layer's own cuts) or labels; a label
    is used on the layers it fits and must fit at least one. ``keeps``: keep specs
    or None for :func:`default_keeps`. ``truncations``: ``svd`` and/or ``data-aware``
    (the latter adds single-layer trials on each layer's ``out|rest`` cut, where the
    layer has an input Gram and the cut is among the sweep's). Raises InputError for
    unknown layers, cuts, out-of-range keep specs (``chi`` above a cut's χ_max) or
    plan modes.
    """
    modes = _as_modes(plans)
    hows = [truncations] if isinstance(truncations, str) else list(truncations)
    for how in hows:
        check_opt("truncation", how, TRUNCATIONS)
    chosen = select_layers(model, layers, kinds)
    modules = dict(chosen)
    layer_cuts: dict[str, list[str]] = {}
    chi_max: dict[tuple[str, str], int] = {}
    for name, module in chosen:
        layout = module_layout(module, legs)  # legs named as spectra name them
        spec = as_cuts(cuts)
        if spec in CUT_MODES:
            labels = [c.label for c in select_cuts(layout.names, spec)]
        else:
            labels = []
            for part in spec:
                try:
                    labels.append(parse_cuts(part, layout)[0].label)
                except InputError:
                    continue
        layer_cuts[name] = list(dict.fromkeys(labels))
        for label in layer_cuts[name]:
            chi_max[name, label] = min(cut_dims(layout, parse_cuts(label, layout)[0]))
    if not any(layer_cuts.values()):
        valid = {n: [c.label for c in select_cuts(module_layout(m, legs).names)]
                 for n, m in chosen}
        listing = "; ".join(f"{n}: {', '.join(v)}" for n, v in valid.items())
        raise InputError(f"cuts {cuts!r} fit none of the selected layers; valid cuts: {listing}")
    keep_list = parse_keeps(keeps) or default_keeps(max(chi_max.values()))
    for k in keep_list:
        for (n, c), m in chi_max.items():
            k.check(m, where=f" (layer {n!r}, cut {c!r})")
    trials: list[TrialSpec] = []
    names = [n for n, _ in chosen if layer_cuts[n]]

    def entry(name: str, labels: Sequence[str], keep: KeepSpec,
              how: str = "svd") -> PlanEntry:
        return PlanEntry.of(modules[name], labels, (keep,) * len(labels), legs, how)

    if "layer" in modes:
        for name in names:
            for label in layer_cuts[name]:
                for k in keep_list:
                    trials.append(TrialSpec("layer", name, label, k.label,
                                            Plan({name: entry(name, [label], k)})))
    if "all-cuts" in modes:
        for name in names:
            for k in keep_list:
                trials.append(TrialSpec("all-cuts", name, ";".join(layer_cuts[name]), k.label,
                                        Plan({name: entry(name, layer_cuts[name], k)})))
    if "all-layers" in modes:
        all_labels = list(dict.fromkeys(c for n in names for c in layer_cuts[n]))
        for label in all_labels:
            holders = [n for n in names if label in layer_cuts[n]]
            for k in keep_list:
                plan = Plan({n: entry(n, [label], k) for n in holders})
                trials.append(TrialSpec("all-layers", ",".join(holders), label, k.label, plan))
    if "data-aware" in hows:
        aware = []
        for name in names:
            cut = aware_cut(module_layout(modules[name], legs))
            if cut is None or not gram_supported(modules[name]) or (
                    cut.label not in layer_cuts[name]):
                continue
            label = cut.label
            aware.append(name)
            for k in keep_list:
                trials.append(TrialSpec("layer", name, label, k.label, Plan(
                    {name: entry(name, [label], k, "data-aware")}), "data-aware"))
        if not aware:
            raise InputError("truncations: data-aware trials need a Linear, Conv1d or Conv2d "
                             "layer (one group) whose cut out|rest is among the sweep's cuts; "
                             "none of the selected layers has one")
    if "svd" not in hows:
        trials = [t for t in trials if t.truncation != "svd"]
    return trials


# --------------------------------------------------------------------------- data sources


class Source:
    """Where a worker gets the model (eval mode) and the evaluation data; loaded once per
    process and cached by :attr:`key`."""

    key: str

    def load(self) -> tuple[nn.Module, Iterable]:
        raise NotImplementedError


@dataclass
class ObjectSource(Source):
    """An in-memory model and data loader (shipped to Dask workers once, by scatter)."""

    model: nn.Module
    data: Iterable
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def load(self) -> tuple[nn.Module, Iterable]:
        return self.model, self.data


@dataclass
class CheckpointSource(Source):
    """A checkpoint file and a named data set's test split (what Dask workers load once)."""

    checkpoint: str
    model: str
    dataset: str
    test_size: int | None = None
    eval_batch_size: int = 1000
    data_dir: str | None = None
    seed: int = 0
    device: str = "cpu"

    @property
    def key(self) -> str:  # type: ignore[override]
        return json.dumps(self.__dict__, sort_keys=True, default=str)

    def load(self) -> tuple[nn.Module, Iterable]:
        trained = load_trained(self.checkpoint, self.model, self.dataset,
                               test_size=self.test_size, eval_batch_size=self.eval_batch_size,
                               data_dir=self.data_dir, seed=self.seed, device=self.device)
        return trained.model, trained.test


_CACHE: dict[str, tuple[nn.Module, Iterable]] = {}
_LOCK = threading.Lock()


#: SVDs of the kernels truncated last, by (layer, legs, weight digest): trials come
#: layer by layer, and a layer's trials may span two chunks
_SVD_CACHES: dict[tuple[str, str, str], dict] = {}


def _svd_caches(trial: TrialSpec, modules: Mapping[str, nn.Module],
                digests: dict[str, str]) -> dict[str, dict]:
    """The SVD cache of each layer of ``trial`` (kept from earlier trials and chunks
    while the kernel is unchanged); caches of other layers are freed. ``digests``
    memoises the kernels' digests within one chunk."""
    keys = {}
    for name, entry in trial.plan.items():
        if name not in digests:
            weight = modules[name].weight.detach().cpu().contiguous().numpy()
            digests[name] = hashlib.sha1(weight.data).hexdigest()
        keys[name] = (name, json.dumps(entry.legs), digests[name])
    for key in set(_SVD_CACHES) - set(keys.values()):
        del _SVD_CACHES[key]
    return {name: _SVD_CACHES.setdefault(key, {}) for name, key in keys.items()}


def _loaded(source: Source) -> tuple[nn.Module, Iterable]:
    if source.key not in _CACHE:
        _CACHE.clear()
        _CACHE[source.key] = source.load()
    return _CACHE[source.key]


# --------------------------------------------------------------------------- chunks


def _variant_bytes(trial: TrialSpec, modules: Mapping[str, nn.Module]) -> int:
    return sum(modules[n].weight.numel() * modules[n].weight.element_size() for n in trial.plan)


def make_chunks(trials: Sequence[TrialSpec], model: nn.Module,
                chunk_size: int | None = None) -> list[list[int]]:
    """Split trial indices into consecutive chunks of at most ``chunk_size`` trials
    (default: at most :data:`CHUNK_TRIALS` trials and :data:`CHUNK_BYTES` of truncated
    kernels). A chunk may hold
    the trials of several layers: one data pass evaluates them all, the shared
    prefix of the network once per batch."""
    modules = dict(model.named_modules())
    chunks: list[list[int]] = []
    cur: list[int] = []
    cur_bytes = 0
    for i, t in enumerate(trials):
        b = _variant_bytes(t, modules)
        full = (chunk_size is not None and len(cur) >= chunk_size) or (
            chunk_size is None and cur and (cur_bytes + b > CHUNK_BYTES
                                            or len(cur) >= CHUNK_TRIALS))
        if full:
            chunks.append(cur)
            cur, cur_bytes = [], 0
        cur.append(i)
        cur_bytes += b
    if cur:
        chunks.append(cur)
    return chunks


def _matrix_signature(shape: Sequence[int], entry: PlanEntry,
                      metrics: TruncationMetrics) -> list:
    """What determines a truncated kernel: per cut, the legs of size > 1 on its first
    side, and χ. Cuts differing only by size-1 legs (the seven cuts of a 1×1
    convolution are one ``out|in`` matrix) matricise to the same array, so they
    give the same kernel bit for bit and are evaluated once."""
    layout = entry.layout(shape)
    return [entry.truncation] + [[layout.squeezed(cut.left), chi]
            for cut, chi in zip(parse_cuts(list(metrics.cuts), layout), metrics.chi,
                                strict=True)]


def _aggregate(metrics: Mapping[str, TruncationMetrics],
               errors: Mapping[str, float]) -> dict[str, float]:
    ms = list(metrics.values())
    return {
        "norm_loss": float(np.mean([m.norm_loss for m in ms])),
        "output_error": float(np.mean(list(errors.values()))),
        "rel_error": float(np.mean([m.rel_error for m in ms])),
        "fidelity": float(np.mean([m.fidelity for m in ms])),
        "chi": int(min(min(m.chi) for m in ms)),
        "params_factorized": int(sum(m.params_factorized for m in ms)),
        "params_dense": int(sum(m.params_dense for m in ms)),
        "n_layers": len(ms),
    }


def run_chunk(
    source: Source, trials: Sequence[TrialSpec], indices: Sequence[int],
    device: str = "auto", method: str = "fast", num_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    grams: Mapping[str, torch.Tensor] | None = None,
    calibration: Mapping[str, torch.Tensor] | None = None,
    stop: StopRule | None = None,
) -> dict[str, Any]:
    """Truncate and evaluate the trials ``indices`` in one data pass; a record per trial.

    Identical truncations (same layers, cuts, truncation and resolved χ) are evaluated
    once; a trial that changes nothing (χ = χ_max everywhere) reports the baseline.
    ``grams``: input Grams of the evaluation data (output errors; NaN for a layer
    without one); ``calibration``: those the data-aware truncations use (default
    ``grams``); ``stop``: the early-stopping rule.
    """
    calibration = grams if calibration is None else calibration
    with _LOCK:
        if num_threads:
            torch.set_num_threads(num_threads)
        model, data = _loaded(source)
        dev = resolve_device(device)
        model.to(dev).eval()
        modules = dict(model.named_modules())
        digests: dict[str, str] = {}
        variants: list[dict[str, torch.Tensor]] = []
        signature_to_variant: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        which: list[int | None] = []
        for i in indices:
            trial = trials[i]
            weights: dict[str, torch.Tensor] = {}
            metrics: dict[str, TruncationMetrics] = {}
            errors: dict[str, float] = {}
            caches = _svd_caches(trial, modules, digests)
            for name, entry in trial.plan.items():
                dense = modules[name].weight.detach()
                w, m = entry.truncate(dense, gram=entry_gram(name, entry, calibration),
                                      _svd_cache=caches[name])
                metrics[name] = m
                changed = any(c < cm for c, cm in zip(m.chi, m.chi_max, strict=True))
                if changed:
                    weights[name] = w
                gram = None if grams is None else grams.get(name)
                errors[name] = (0.0 if not changed else float("nan") if gram is None
                                else output_error(dense, w, gram, entry.transposed))
            sig = json.dumps({n: _matrix_signature(modules[n].weight.shape,
                                                   trial.plan.entries[n], metrics[n])
                              for n in weights}, sort_keys=True)
            if not weights:
                which.append(None)
            elif sig in signature_to_variant:
                which.append(signature_to_variant[sig])
            else:
                signature_to_variant[sig] = len(variants)
                which.append(len(variants))
                variants.append(weights)
            records.append({"index": i, **_aggregate(metrics, errors)})
        baseline, results = evaluate_variants(model, data, variants, dev, method=method,
                                              record=True, stop=stop)
        for rec, w in zip(records, which, strict=True):
            r = baseline if w is None else results[w]
            rec["accuracy"], rec["loss"] = r.accuracy, r.loss
            rec["n_images"], rec["stopped"] = r.n, r.n < baseline.n
            correct = np.full(baseline.n, -1, dtype=np.int8)
            correct[:r.n] = r.correct
            rec["correct"] = correct
        if progress:
            progress(len(indices))
        return {"baseline_accuracy": baseline.accuracy, "baseline_loss": baseline.loss,
                "n_samples": baseline.n, "baseline_correct": baseline.correct.astype(np.int8),
                "records": records}


def _part_dataset(part: Mapping[str, Any], trials: Sequence[TrialSpec]) -> xr.Dataset:
    recs = part["records"]
    idx = [r["index"] for r in recs]
    data = {v: ("trial", np.array([r[v] for r in recs])) for v in VARIABLES}
    data["correct"] = (("trial", "image"), np.stack([r["correct"] for r in recs]))
    data["baseline_correct"] = ("image", np.asarray(part["baseline_correct"], dtype=np.int8))
    ds = xr.Dataset(data, coords={
        "trial": idx,
        "scope": ("trial", [trials[i].scope for i in idx]),
        "layer": ("trial", [trials[i].layer for i in idx]),
        "cuts": ("trial", [trials[i].cuts for i in idx]),
        "keep": ("trial", [trials[i].keep for i in idx]),
        "truncation": ("trial", [trials[i].truncation for i in idx]),
    })
    ds["plan"] = ("trial", [json.dumps(trials[i].plan.as_dict()) for i in idx])
    ds.attrs.update(baseline_accuracy=part["baseline_accuracy"],
                    baseline_loss=part["baseline_loss"], n_samples=part["n_samples"])
    return ds


_ATTRS = {
    "accuracy": ("test accuracy of the truncated model", "fraction"),
    "loss": ("mean cross-entropy loss of the truncated model", "nat"),
    "norm_loss": ("norm loss 1 - |W~|^2/|W|^2 (mean over the trial's layers)", "1"),
    "output_error": ("output error |(W~ - W) * X|^2 / |W * X|^2 on the layers' inputs over "
                     "the evaluation data (mean over the trial's layers)", "1"),
    "n_images": ("test images the trial was evaluated on (fewer when stopped early)", "1"),
    "stopped": ("whether the trial stopped early, its drop already certain beyond the "
                "stop drop (or, with stop_within, within it); accuracy and loss are then "
                "paired estimates from the images it saw", "1"),
    "correct": ("per test image: 1 classified correctly, 0 wrong, -1 not evaluated "
                "(stopped early)", "1"),
    "baseline_correct": ("per test image: 1 if the untruncated model classifies it "
                         "correctly", "1"),
    "rel_error": ("relative error |W - W~|/|W| (mean over the trial's layers)", "1"),
    "fidelity": ("fidelity <W,W~>/(|W||W~|) (mean over the trial's layers)", "1"),
    "chi": ("kept singular values (smallest over the trial's layers and cuts)", "1"),
    "params_factorized": ("parameters of the factorised form (sum over layers)", "1"),
    "params_dense": ("parameters of the truncated kernels, dense (sum over layers)", "1"),
    "n_layers": ("number of layers the trial truncates", "1"),
    "plan": ("the trial's plan as JSON {layer: {cuts, keep}}", ""),
}
_COORD_ATTRS = {
    "scope": "what the trial truncates: layer (one layer, one cut), all-cuts (one layer, "
             "every cut), all-layers (one cut, every layer)",
    "layer": "the truncated layer (all-layers: the layers, comma-separated)",
    "cuts": "the truncated cut (all-cuts: the cuts, semicolon-separated)",
    "keep": "keep spec of every truncated cut",
    "truncation": "svd (best rank-chi kernel) or data-aware (least output error on the "
                  "layer's inputs; cut out|rest)",
}


def merge_parts(parts: Sequence[xr.Dataset], attrs: Mapping[str, Any]) -> xr.Dataset:
    """The sweep dataset from chunk datasets (any order): sorted by trial, attrs set."""
    ds = xr.concat([p.drop_vars("baseline_correct") for p in parts], dim="trial",
                   data_vars="all", coords="different", compat="equals",
                   join="exact").sortby("trial")
    ds["baseline_correct"] = parts[0]["baseline_correct"]
    base = {float(p.attrs["baseline_accuracy"]) for p in parts}
    if len(base) != 1:
        raise RuntimeError(f"chunks disagree on the baseline accuracy: {sorted(base)}")
    for name, (long_name, units) in _ATTRS.items():
        ds[name].attrs = {"long_name": long_name, "units": units}
    for name, long_name in _COORD_ATTRS.items():
        ds[name].attrs = {"long_name": long_name}
    ds.attrs = {"baseline_accuracy": float(parts[0].attrs["baseline_accuracy"]),
                "baseline_loss": float(parts[0].attrs["baseline_loss"]),
                "n_samples": int(parts[0].attrs["n_samples"]),
                "n_test": int(parts[0].attrs["n_samples"]), **attrs}
    return ds


# --------------------------------------------------------------------------- driver


def _n_samples(data: Iterable) -> int | None:
    try:
        return len(data.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return None


def sweep(
    model: nn.Module,
    data: Iterable,
    layers: str | Sequence[str] | None = None,
    cuts: str | Sequence[str] = "all",
    keeps: str | Sequence[KeepLike] | None = None,
    device: str | torch.device = "auto",
    *,
    plans: str | Sequence[str] = ("layer",),
    kinds: str | Sequence[str] | None = None,
    legs: LegsSpec = "natural",
    truncations: str | Sequence[str] = ("svd",),
    calibration: Iterable | None = None,
    stop_drop: float | None = None,
    stop_within: bool = False,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int | None = None,
    method: str = "fast",
    progress: bool = False,
    source: Source | None = None,
    config: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
) -> xr.Dataset:
    """Evaluate every trial of the grid layers × cuts × keeps (see :func:`build_trials`).

    ``model``: a module whose selected layers have kernels; ``data``: an iterable of
    ``(x, y)`` batches (a DataLoader; its order is the evaluation order), or a torch Dataset
    of ``(x float (C, H, W), int y)`` items, checked and batched in its order by
    :func:`corranalysis.data.as_loaders` (give a DataLoader for other inputs, e.g. token
    ids). Returns the sweep dataset (dims ``trial``, ``image``; coordinates ``scope``,
    ``layer``, ``cuts``, ``keep``, ``truncation``; variables accuracy (fraction), loss,
    norm_loss, output_error, rel_error, fidelity, chi, params_factorized, params_dense,
    n_layers, n_images, stopped, plan, ``correct(trial, image)``,
    ``baseline_correct(image)``; attrs ``baseline_accuracy``, ``n_test``, ``params_sha256``
    (:func:`corranalysis.provenance.params_sha256` of ``model``), ``model_sha256`` (the SHA-256
    of ``checkpoint``'s bytes, where the model was read from a file) and provenance).

    ``checkpoint``: the weight file ``model`` was loaded from (default: ``source``'s, for a
    :class:`CheckpointSource`), recorded by its checksum only.

    ``truncations``: ``svd`` and/or ``data-aware`` (see :func:`build_trials`);
    ``calibration``: batches (or a Dataset, as ``data``) whose input Grams the data-aware
    truncation uses (default: the evaluation data; pass training images to keep the
    evaluation images unseen);
    ``stop_drop``: stop a trial once its accuracy drop exceeds this many points beyond
    three standard errors (:class:`corranalysis.runtime.StopRule`; fast method only);
    ``stop_within``: also stop a trial once it is certain to stay within ``stop_drop``
    points of the baseline either way (its accuracy is then a paired estimate).

    ``out``: write the dataset there (atomically), with finished chunks kept in
    ``<out>.parts/`` meanwhile; ``resume=True`` continues from them; an existing ``out`` that
    is not a corranalysis result is refused unless ``overwrite``. ``workers`` /
    ``scheduler``: evaluate chunks on a Dask LocalCluster of N processes / an
    existing cluster. ``method="naive"`` re-evaluates the whole network per trial.
    """
    check_opt("method", method, ("fast", "naive"))
    stop = None
    if stop_drop is not None:
        if not (isinstance(stop_drop, (int, float)) and math.isfinite(stop_drop)
                and stop_drop >= 0):
            raise InputError(f"stop_drop={stop_drop!r}: give an accuracy drop in percentage "
                             "points >= 0, or None to evaluate every trial on every image")
        if method != "fast":
            raise InputError("stop_drop: early stopping needs method='fast'")
        stop = StopRule(float(stop_drop), within=bool(stop_within))
    elif stop_within:
        raise InputError("stop_within: give stop_drop too (the points a trial must stay "
                         "within of the baseline)")
    dev = resolve_device(device)
    out_path = (check_output_path(out, overwrite=overwrite or resume)
                if out is not None else None)
    if isinstance(data, Dataset):
        data = as_loaders(data, device=dev)[1]
    if calibration is not None and isinstance(calibration, Dataset):
        calibration = as_loaders(calibration, device=dev)[1]
    trials = build_trials(model, layers, cuts, keeps, plans, kinds, legs, truncations)
    modules = dict(model.named_modules())
    check_weights({name: modules[name].weight.detach()
                   for name in dict.fromkeys(n for t in trials for n in t.plan.entries)}, "model")
    check_data_fits(model, data, dev)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers={workers!r}: give a number of worker processes >= 1")
    if checkpoint is None and isinstance(source, CheckpointSource):
        checkpoint = source.checkpoint
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise InputError(f"checkpoint={str(checkpoint)!r} is not a file; give the weight file "
                         "the model was loaded from (its SHA-256 is recorded), or None")
    hashes = {"params_sha256": params_sha256(model)}
    if checkpoint is not None:
        hashes["model_sha256"] = file_sha256(checkpoint)
    source = source or ObjectSource(model, data)
    chunks = make_chunks(trials, model, chunk_size)
    keep_labels = [k.label for k in parse_keeps(keeps) or []] or "default"
    conf = {"layers": layers, "cuts": cuts, "keeps": keep_labels,
            "plans": plans, "kinds": kinds, "legs": legs, "method": method,
            "truncations": truncations, "stop_drop": stop_drop,
            **({"stop_within": True} if stop_within else {}),
            "calibration": "evaluation data" if calibration is None else
            f"{_n_samples(calibration)} separate images",
            **(dict(config) if config else {})}
    fingerprint = hashlib.sha256(json.dumps({
        "trials": [t.as_dict() for t in trials], "chunks": chunks,
        "model": hashes["params_sha256"], "n_samples": _n_samples(data), "config": conf,
    }, sort_keys=True, default=str).encode()).hexdigest()

    parts_dir = Path(f"{out_path}.parts") if out_path is not None else None
    done: dict[int, xr.Dataset] = {}
    created = False
    if parts_dir is not None:
        manifest = parts_dir / "manifest.json"
        if resume and manifest.is_file():
            try:
                held = json.loads(manifest.read_text())
            except (OSError, ValueError):
                held = None
            if not isinstance(held, dict):
                raise InputError(f"--resume: {str(manifest)!r} is damaged; run without --resume "
                                 "to start the sweep over")
            if held.get("fingerprint") != fingerprint:
                raise InputError(
                    f"--resume: the finished chunks in {str(parts_dir)!r} belong to a different "
                    "sweep (model, data or grid changed); run without --resume to start over"
                )
            for p in sorted(parts_dir.glob("chunk-*.nc")):
                done[int(p.stem.split("-")[1])] = read_netcdf(p)
        else:
            if parts_dir.exists():
                shutil.rmtree(parts_dir)
            parts_dir.mkdir()
            created = True
            write_json({"fingerprint": fingerprint, "n_trials": len(trials),
                        "n_chunks": len(chunks)}, manifest)

    todo = [c for c in range(len(chunks)) if c not in done]
    grams = calib = None
    if todo:
        swept = list(dict.fromkeys(n for t in trials for n in t.plan.entries))
        grams = input_grams(model, data, swept, dev)
        aware = list(dict.fromkeys(n for t in trials for n in t.plan.entries
                                   if t.truncation == "data-aware"))
        if calibration is not None and aware:
            calib = input_grams(model, calibration, aware, dev)
    bar = None
    if progress:
        bar = progress_bar(total=len(trials), unit="trial", desc="sweep",
                           initial=sum(len(chunks[c]) for c in done))

    def finished(c: int, part: Mapping[str, Any]) -> None:
        ds = _part_dataset(part, trials)
        if parts_dir is not None:
            write_netcdf(ds, parts_dir / f"chunk-{c:05d}.nc")
        done[c] = ds
        if bar is not None:
            bar.update(len(chunks[c]))

    device_name = str(device)
    try:
        if workers is None and scheduler is None:
            for c in todo:
                finished(c, run_chunk(source, trials, chunks[c], device_name, method,
                                      grams=grams, calibration=calib, stop=stop))
        else:
            _run_distributed(source, trials, chunks, todo, device_name, method, workers,
                             scheduler, finished, (grams, calib, stop))
    except BaseException:
        if created and not done:  # nothing finished: leave no partial output behind
            shutil.rmtree(parts_dir, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    _CACHE.pop(source.key, None)
    _SVD_CACHES.clear()  # SVDs of the last layers: free them with the sweep
    attrs = provenance(config=conf, device=str(dev), fingerprint=fingerprint, **hashes)
    ds = merge_parts([done[c] for c in range(len(chunks))], attrs)
    if out_path is not None:
        write_netcdf(ds, out_path)
        shutil.rmtree(parts_dir, ignore_errors=True)
    return ds


def _run_distributed(source: Source, trials: Sequence[TrialSpec], chunks: Sequence[list[int]],
                     todo: Sequence[int], device: str, method: str, workers: int | None,
                     scheduler: str | None, finished: Callable[[int, Mapping], None],
                     extra: tuple = (None, None, None)) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"scheduler {scheduler!r} cannot be reached: {exc}") from None
        threads = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        threads = max(1, (torch.get_num_threads() or 1) // max(1, workers or 1))
    try:
        src = client.scatter(source, broadcast=True, hash=False)
        trial_list = client.scatter(list(trials), broadcast=True, hash=False)
        grams, calib, stop = extra
        grams_f = client.scatter(grams, broadcast=True, hash=False)
        calib_f = client.scatter(calib, broadcast=True, hash=False)
        futures = {client.submit(run_chunk, src, trial_list, chunks[c], device, method,
                                 threads, None, grams_f, calib_f, stop, pure=False): c
                   for c in todo}
        for fut in as_completed(futures):
            finished(futures[fut], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
