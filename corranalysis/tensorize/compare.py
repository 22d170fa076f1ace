"""One fair comparison at equal parameter budgets: plain truncation kept factorised (``svd``,
the best cut), Tucker-2, CP, MPO/TT and ADTN on the same layers of the same trained model.

Every variant is one :func:`~corranalysis.tensorize.run.tensorize_run` with the same
fine-tuning loop, optimiser, epochs, data and seed; only the spec differs: ``{layers:
{method: m, compression: c}}`` for each method that applies to every targeted layer and each
target ``c`` (the plan takes the largest rank within ``params / c`` per layer), and ADTN at its
own sizes (``adtn_depths``; its parameters grow by whole brick-wall periods of ``16·(Q−1)``,
so it is placed where its count falls rather than at the targets). A variant that cannot reach
a target (the smallest form of the method is larger) is recorded as unreachable, not skipped
silently. Each variant writes its own run folder under ``out/variants/`` and resumes after a
kill; a finished variant is never recomputed.

``compare.nc`` (dims ``variant``, ``epoch``): ``method``, ``target`` (the asked compression;
NaN for ADTN), ``params_before`` / ``params_after`` (kernel and bias entries of the targeted
layers), ``compression``, ``model_params_after``, ``accuracy (variant, epoch)`` (epoch 0 =
right after encoding), ``step_seconds`` / ``inference_seconds`` with the dense model's
``dense_step_seconds`` / ``dense_inference_seconds`` measured in the same run, ``fell_below_start``
and ``reachable``; attrs ``baseline_accuracy``, ``layers``, the settings and provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from ..io import check_output_path, write_netcdf
from ..provenance import provenance
from ..runtime import BATCH_SIZE, Optim, load_trained
from .plan import match_layers, plan
from .run import FINE_TUNE, tensorize_run
from .spec import APPLIES_TO, validate_spec

#: The methods in the order the comparison lists them.
COMPARED = ("svd", "tucker", "cp", "mpo", "adtn")
PER_VARIANT = ("params_before", "params_after", "compression", "model_params_after",
               "step_seconds", "inference_seconds", "dense_step_seconds",
               "dense_inference_seconds", "fell_below_start", "fine_tune_seconds")


def variant_specs(model: Any, layers: str, compressions: Sequence[float],
                  methods: Sequence[str], adtn_depths: Sequence[int]
                  ) -> list[tuple[str, str, float, dict | None, str]]:
    """``(name, method, target, spec or None, why not)`` for every variant of the comparison.

    A method that does not apply to every layer ``layers`` matches is left out (with the
    reason); a target it cannot reach has ``spec=None`` and the plan's message.
    """
    matched = match_layers(model, validate_spec({layers: {"method": "adtn"}}))
    kinds = {type(m).__name__ for _, m, _ in matched}
    out = []
    for method in methods:
        if not all(method in APPLIES_TO[k] for k in kinds):
            continue
        if method == "adtn":
            for depth in adtn_depths:
                spec = {layers: {"method": "adtn", "depth": int(depth)}}
                out.append((f"adtn_depth{depth}", method, float("nan"), spec, ""))
            continue
        for c in compressions:
            spec = {layers: {"method": method, "compression": c}}
            try:
                plan(model, validate_spec(spec))
            except InputError as exc:
                out.append((f"{method}_{c:g}x", method, float(c), None, str(exc)))
                continue
            out.append((f"{method}_{c:g}x", method, float(c), spec, ""))
    return out


def compare(
    checkpoint: str | os.PathLike,
    model: str | None = None,
    dataset: Any = None,
    *,
    layers: str,
    out: str | os.PathLike,
    compressions: Sequence[float] = (2, 5, 10),
    methods: Sequence[str] = COMPARED,
    adtn_depths: Sequence[int] = (1,),
    epochs: int = 1,
    optim: Optim = FINE_TUNE,
    batch_size: int = BATCH_SIZE,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
    finished_only: bool = False,
) -> xr.Dataset:
    """Run every variant (see the module doc) and write ``out/compare.nc``; returns it.

    ``finished_only``: run nothing; gather the variants whose runs have finished and record
    the others as not run (to see a long comparison while part of it is still to do)."""
    out = check_output_path(out, inputs=[checkpoint], directory=True)
    if not compressions or any(isinstance(c, bool) or not isinstance(c, (int, float)) or c <= 1
                               for c in compressions):
        raise InputError(f"compressions {list(compressions)!r}: give numbers > 1, e.g. 2,5,10")
    unknown = [m for m in methods if m not in COMPARED]
    if unknown or not methods:
        raise InputError(f"methods {list(methods)!r}: {unknown or 'none'} is not compared; use "
                         f"some of {', '.join(COMPARED)}")
    trained = load_trained(checkpoint, model, dataset, train_size=train_size,
                           test_size=test_size, data_dir=data_dir, seed=seed, device=device)
    variants = variant_specs(trained.model, layers, compressions, methods, adtn_depths)
    if not variants:
        raise InputError(f"layers {layers!r}: none of {list(methods)} applies to them")
    (Path(out) / "variants").mkdir(parents=True, exist_ok=True)
    loaders = (trained.train, trained.test, trained.info)  # loaded once, shared by all
    rows: list[dict[str, Any]] = []
    accuracy: list[list[float]] = []
    for i, (name, method, target, spec, why) in enumerate(variants, 1):
        row = {"variant": name, "method": method, "target": target, "reachable": spec is not None,
               "note": why}
        if spec is None:
            log(f"[{i}/{len(variants)}] {name}: unreachable — {why}")
            rows.append(row)
            accuracy.append([])
            continue
        log(f"[{i}/{len(variants)}] {name}")
        ds = tensorize_run(checkpoint, model, dataset, spec, epochs=epochs,
                           out=Path(out) / "variants" / name, optim=optim,
                           batch_size=batch_size, train_size=train_size, test_size=test_size,
                           seed=seed, device=device, data_dir=data_dir, log=log,
                           progress=progress, loaders=loaders, only_finished=finished_only)
        if ds is None:  # finished_only, and this variant has not finished with these settings
            row.update(reachable=False, note="not run yet (gathered with finished_only)")
            log(f"[{i}/{len(variants)}] {name}: not run yet")
            rows.append(row)
            accuracy.append([])
            continue
        row.update(
            params_before=int(ds.params_before.sum()), params_after=int(ds.params_after.sum()),
            **{k: ds.attrs[k] for k in PER_VARIANT if k in ds.attrs},
        )
        row["compression"] = row["params_before"] / max(row["params_after"], 1)
        row["baseline_accuracy"] = float(ds.attrs["baseline_accuracy"])
        row["model_params_before"] = int(ds.attrs["model_params_before"])
        accuracy.append([float(a) for a in ds.accuracy.values])
        rows.append(row)
    result = comparison_dataset(rows, accuracy)
    result.attrs.update(
        layers=layers,
        **provenance(checkpoint=str(checkpoint), model=trained.model_spec,
                     dataset=trained.dataset, compressions=list(compressions),
                     methods=list(methods), adtn_depths=list(adtn_depths), epochs=epochs,
                     optim=optim.as_dict(), batch_size=batch_size, train_size=train_size,
                     test_size=test_size, seed=seed, device=device),
    )
    base = [r for r in rows if "baseline_accuracy" in r]
    if base:
        result.attrs["baseline_accuracy"] = base[0]["baseline_accuracy"]
        result.attrs["model_params_before"] = base[0]["model_params_before"]
    write_netcdf(result, Path(out) / "compare.nc")
    log(f"wrote {Path(out) / 'compare.nc'}")
    return result


def comparison_dataset(rows: Sequence[Mapping[str, Any]],
                       accuracy: Sequence[Sequence[float]]) -> xr.Dataset:
    """``compare.nc`` from one row per variant and its accuracy per epoch."""
    n_epochs = max((len(a) for a in accuracy), default=0)
    acc = np.full((len(rows), n_epochs), np.nan)
    for i, a in enumerate(accuracy):
        acc[i, : len(a)] = a
    data: dict[str, Any] = {"accuracy": (("variant", "epoch"), acc)}
    for key in ("params_before", "params_after", "compression", "model_params_after",
                *PER_VARIANT[4:]):
        data[key] = ("variant", np.array([float(r.get(key, np.nan)) for r in rows]))
    data["reachable"] = ("variant", np.array([bool(r["reachable"]) for r in rows]))
    data["note"] = ("variant", np.array([str(r.get("note", "")) for r in rows], dtype=str))
    ds = xr.Dataset(data, coords={
        "variant": [r["variant"] for r in rows], "epoch": np.arange(n_epochs),
        "method": ("variant", [r["method"] for r in rows]),
        "target": ("variant", np.array([r["target"] for r in rows], dtype=float)),
    })
    ds["accuracy"].attrs.update(long_name="test accuracy (epoch 0: right after encoding)",
                                units="1")
    ds["compression"].attrs.update(long_name="params_before / params_after of the targeted "
                                   "layers", units="1")
    ds["step_seconds"].attrs.update(long_name="median wall time of one training step",
                                    units="s")
    ds["inference_seconds"].attrs.update(long_name="median wall time of one inference batch",
                                         units="s")
    return ds
