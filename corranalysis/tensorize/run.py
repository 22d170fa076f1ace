"""The ``tensorize`` run: encode a trained model, fine-tune on the runtime's loop, record
accuracy per epoch and the time of a training step and an inference batch beside the dense
model's.

Writes into ``out``: ``tensorized.pt`` (see :mod:`.checkpoint`) and ``tensorize.nc``, an
xarray dataset with dims ``layer`` and ``epoch`` (epoch 0 = right after encoding). While it
fine-tunes, ``fine_tune_state.pt`` holds the full training state after every epoch: the same
command after a kill continues at the next epoch (the result equals an uninterrupted run);
a finished run with the same settings is returned as it is, without recomputing anything.

A fine-tuning that ends more than :data:`FELL_POINTS` points below its epoch-0 accuracy is
reported as such (``fell_below_start``, a warning in the log), never silently kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..errors import InputError
from ..io import check_output_path, write_netcdf
from ..models import count_parameters
from ..provenance import file_sha256, provenance
from ..runtime import BATCH_SIZE, Optim, evaluate, fit, load_trained, time_steps
from .apply import apply
from .checkpoint import save
from .plan import plan, resolved_spec
from .spec import load_spec, validate_spec

#: Fine-tuning defaults of a tensorized model (Adam; warm-up and cosine as every training).
FINE_TUNE = Optim(optimizer="adam", lr=1e-3, weight_decay=0.0)
#: A fine-tuning ending this many accuracy points below its epoch-0 accuracy "fell".
FELL_POINTS = 1.0
#: Batch sizes of the step and inference timings.
TIMING_BATCH, TIMING_EVAL_BATCH = 128, 1000
STATE_FILE = "fine_tune_state.pt"


def _timing_batches(train: Any, test: Any, device: Any) -> tuple[torch.Tensor, ...]:
    """A training batch of :data:`TIMING_BATCH` images and an inference batch of
    :data:`TIMING_EVAL_BATCH` (first images of each set; fewer when the set is smaller)."""
    def take(loader: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys, have = [], [], 0
        for x, y in loader:
            xs.append(x)
            ys.append(y)
            have += len(y)
            if have >= n:
                break
        return torch.cat(xs)[:n].to(device), torch.cat(ys)[:n].to(device)

    x, y = take(train, TIMING_BATCH)
    x_eval, _ = take(test, TIMING_EVAL_BATCH)
    return x, y, x_eval


def _finished(path: Any, identity: str) -> xr.Dataset | None:
    """The finished ``tensorize.nc`` at ``path`` when it was made with ``identity``."""
    if not path.is_file():
        return None
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except Exception:  # noqa: BLE001 - an unreadable old result is recomputed
        return None
    return ds if ds.attrs.get("identity") == identity else None


def results_dataset(table: Any, history: Mapping[str, list[float]],
                    attrs: Mapping[str, Any]) -> xr.Dataset:
    """The ``tensorize.nc`` dataset from the apply() table and the per-epoch history."""
    layer = list(table["layer"])
    per_layer = {
        col: ("layer", np.asarray(table[col]))
        for col in ("params_before", "params_after", "params_all_entries", "compression",
                    "init_rel_error")
    }
    text = {col: ("layer", np.asarray(table[col], dtype=str))
            for col in ("method", "kind", "shape", "rank", "group")}
    epochs = np.arange(len(history["accuracy"]))
    per_epoch = {k: ("epoch", np.asarray(v, dtype=float)) for k, v in history.items()}
    ds = xr.Dataset({**per_layer, **text, **per_epoch}, coords={"layer": layer, "epoch": epochs})
    ds["accuracy"].attrs["long_name"] = "test accuracy (epoch 0: right after encoding)"
    ds["init_rel_error"].attrs["long_name"] = "‖W̃ − W‖ / ‖W‖ of the initialisation"
    ds.attrs.update(attrs)
    return ds


def tensorize_run(
    checkpoint: str | os.PathLike,
    model: str | None,
    dataset: Any,
    spec: str | os.PathLike | Mapping[str, Any],
    *,
    epochs: int,
    out: str | os.PathLike,
    optim: Optim = FINE_TUNE,
    batch_size: int = BATCH_SIZE,
    eval_batch_size: int = 1000,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    loaders: tuple[Any, Any, Any] | None = None,
    progress: bool = False,
    only_finished: bool = False,
) -> xr.Dataset | None:
    """Encode ``checkpoint`` (a ``model`` trained on ``dataset``) per ``spec``, fine-tune for
    ``epochs`` with ``optim`` and write ``tensorized.pt`` and ``tensorize.nc`` into ``out``.

    ``checkpoint``, ``model`` and ``dataset`` are what :func:`corranalysis.runtime.load_trained`
    takes (``None``: from the run.json beside the checkpoint; ``dataset`` a name, a spec of your
    own data, or a ``(train, test)`` pair of torch Datasets or DataLoaders); the provenance
    records the model and data it resolved to. All input is validated before anything is
    encoded or written. ``loaders=(train, test, info)`` replaces all that data (``info``:
    ``in_channels``, ``num_classes``, optionally ``image_size``). ``only_finished``: run
    nothing; return the finished result of these settings, or None when there is none.
    """
    # ---- validate everything first
    spec_path = spec if isinstance(spec, (str, os.PathLike)) else None
    spec = load_spec(spec) if spec_path is not None else validate_spec(spec)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs {epochs!r}: must be an integer ≥ 0")
    out = check_output_path(out, inputs=[checkpoint] + ([spec_path] if spec_path else []),
                            directory=True)
    identity = json.dumps({"model_sha256": file_sha256(checkpoint), "spec": spec,
                           "epochs": epochs, "optim": optim.as_dict(), "batch_size": batch_size,
                           "train_size": train_size, "test_size": test_size, "seed": seed,
                           "model": model, "dataset": str(dataset) if dataset is not None
                           and not isinstance(dataset, (tuple, list)) else None},
                          sort_keys=True, default=str)
    done_ds = _finished(out / "tensorize.nc", identity)
    if done_ds is not None and (out / "tensorized.pt").is_file():
        log(f"{out}: finished with these settings; nothing to do")
        return done_ds
    if only_finished:  # run nothing: None when this run has not finished with these settings
        return None
    torch.manual_seed(seed)
    trained = load_trained(checkpoint, model, dataset, loaders=loaders, batch_size=batch_size,
                           eval_batch_size=eval_batch_size, train_size=train_size,
                           test_size=test_size, data_dir=data_dir, seed=seed, device=device)
    base, dev, info = trained.model, trained.device, trained.info
    if trained.train is None or trained.test is None:
        raise InputError(f"tensorize {str(checkpoint)!r}: fine-tuning needs training and test "
                         "data; give a data set (--dataset), or a (train, test) pair")
    image_size = getattr(info, "image_size", None)
    plans = plan(base, spec)  # raises InputError on any spec problem, before encoding

    # ---- encode
    baseline = evaluate(base, trained.test, dev)
    log(f"baseline: test accuracy {baseline.accuracy:.4f}  loss {baseline.loss:.4f}")
    t0 = time.perf_counter()
    new, table = apply(base.eval(), spec, progress=progress)
    encode_s = time.perf_counter() - t0
    for row in table.itertuples():
        log(f"  {row.layer:<16} {row.method:<6} {row.rank:<40} {row.params_before:>10} → "
            f"{row.params_after:>8} params ({row.compression:8.1f}×)  "
            f"init rel. error {row.init_rel_error:.4f}")

    def log_epoch(h: Mapping[str, list]) -> None:
        log(f"epoch {h['epoch'][-1]}: train loss {h['train_loss'][-1]:.4f}  test accuracy "
            f"{h['test_accuracy'][-1]:.4f}  loss {h['test_loss'][-1]:.4f}  "
            f"({h['epoch_seconds'][-1]:.1f} s)")

    x, y, x_eval = _timing_batches(trained.train, trained.test, dev)
    dense_t, new_t = time_steps([base, new], x, y, x_eval, optim=optim)
    log(f"one training step (batch {dense_t.batch}): {new_t.step_seconds * 1e3:.1f} ms vs "
        f"dense {dense_t.step_seconds * 1e3:.1f} ms; inference (batch "
        f"{dense_t.inference_batch}): {new_t.inference_seconds * 1e3:.1f} ms vs dense "
        f"{dense_t.inference_seconds * 1e3:.1f} ms")

    out.mkdir(parents=True, exist_ok=True)
    done = fit(new, trained.train, optim=optim, epochs=epochs, test_data=trained.test,
               device=dev, seed=seed, record_start=True, progress=progress,
               desc="fine-tune", after_epoch=log_epoch, checkpoint=out / STATE_FILE,
               identity={"tensorize": identity})
    h = done.history
    if done.resumed_at:
        log(f"resumed at epoch {done.resumed_at[-1]} from {out / STATE_FILE}")
    log(f"epoch 0 (after encoding, {encode_s:.1f} s): test accuracy {h['test_accuracy'][0]:.4f}")
    history = {"accuracy": h["test_accuracy"], "loss": h["test_loss"],
               "train_loss": h["train_loss"], "epoch_seconds": h["epoch_seconds"]}
    fell_by = 100.0 * (h["test_accuracy"][0] - h["test_accuracy"][-1])
    fell = bool(fell_by > FELL_POINTS)
    if fell:
        log(f"WARNING: fine-tuning ended {fell_by:.1f} points BELOW its epoch-0 accuracy "
            f"({h['test_accuracy'][0]:.4f} → {h['test_accuracy'][-1]:.4f}); the model is "
            "reported as it ended, not as recovered")

    # ---- write
    before, after = int(table.params_before.sum()), int(table.params_after.sum())
    attrs = {
        "baseline_accuracy": baseline.accuracy, "baseline_loss": baseline.loss,
        "params_before_total": before, "params_after_total": after,
        "compression_total": before / max(after, 1),
        "model_params_before": count_parameters(base),
        "model_params_after": count_parameters(new),
        "encode_seconds": encode_s,
        "step_seconds": new_t.step_seconds, "dense_step_seconds": dense_t.step_seconds,
        "inference_seconds": new_t.inference_seconds,
        "dense_inference_seconds": dense_t.inference_seconds,
        "timing_batch": new_t.batch, "timing_inference_batch": new_t.inference_batch,
        "fell_below_start": int(fell), "fell_points": fell_by,
        "resumed_at_epochs": list(done.resumed_at), "fine_tune_seconds": done.wall_seconds,
        "identity": identity,
        **provenance(
            model=trained.model_spec, dataset=trained.dataset, spec=spec, epochs=epochs,
            optim=optim.as_dict(), batch_size=batch_size, train_size=train_size,
            test_size=test_size, seed=seed, device=str(dev), checkpoint=str(checkpoint),
            model_sha256=file_sha256(checkpoint),
        ),
    }
    ds = results_dataset(table, history, attrs)
    save(out / "tensorized.pt", new, resolved_spec(plans), model_name=trained.model_spec,
         in_channels=info.in_channels,
         num_classes=info.num_classes, image_size=image_size,
         extra={"baseline_accuracy": baseline.accuracy, "accuracy": history["accuracy"]})
    write_netcdf(ds, out / "tensorize.nc")
    (out / STATE_FILE).unlink(missing_ok=True)
    log(f"wrote {out / 'tensorized.pt'} and {out / 'tensorize.nc'}")
    return ds
