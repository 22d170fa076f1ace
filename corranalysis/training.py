"""Training: seeded, resumable training of a model on a data set, and evaluation.

:func:`train` writes into its output directory

``checkpoint.pt``  model + optimizer + scheduler (+ GradScaler) + RNG states + epoch + config,
                   written atomically after every epoch; removed once the run is complete
``metrics.nc``     per-epoch xarray Dataset (dim ``epoch``): ``train_loss``, ``train_accuracy``,
                   ``test_loss``, ``test_accuracy``, ``lr``, ``epoch_seconds``
``model.pt``       the final weights, a plain state_dict (CPU tensors)
``run.json``       config, data set and its checksum, final metrics, provenance (written last:
                   its presence marks a complete run)

Rerunning the same call after an interruption (even ``kill -9``) continues at the next
epoch, and on the CPU the final weights equal those of an uninterrupted run: every epoch
reseeds the global torch RNG and the loader's shuffling generator from ``(seed, epoch)``.
An output directory holding a run with a different config is refused unless
``overwrite=True``. Accuracies are fractions in [0, 1]; losses are mean cross-entropy (nats).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm import tqdm

from .devices import resolve_device
from .errors import InputError
from .io import atomic_path, write_json, write_netcdf
from .models import MODELS, available, count_parameters, model_name, resolve_model
from .provenance import file_sha256, git_commit, package_versions, provenance

__all__ = ["train", "evaluate", "run_config", "OPTIMIZERS", "SCHEDULES", "RUN_FILES"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
RUN_FILES = ("checkpoint.pt", "metrics.nc", "model.pt", "run.json")
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "epoch_seconds")
#: Config keys that define a run (a directory holding other values is a different run).
CONFIG_KEYS = ("model", "dataset", "epochs", "optimizer", "lr", "momentum", "weight_decay",
               "schedule", "label_smoothing", "batch_size", "train_size", "test_size", "seed")


# ----------------------------------------------------------------------------- evaluation


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device = "auto", *,
             amp: bool = False) -> tuple[float, float]:
    """Accuracy (fraction in [0, 1]) and mean cross-entropy loss of ``model`` over ``loader``.

    ``loader`` yields ``(x [B, C, H, W], y [B] int64)``. The model is moved to ``device``
    (``auto``: CUDA when present) and put in eval mode for the pass; its previous train/eval
    mode is restored afterwards. ``amp`` runs the forward under float16 autocast on CUDA
    (off by default so GPU numbers match the CPU's to float32 rounding).
    """
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    try:
        for x, y in loader:
            x, y = _to(x, device), _to(y, device)
            with torch.autocast(device.type, dtype=torch.float16,
                                enabled=amp and device.type == "cuda"):
                logits = model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
            n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise InputError("evaluation data set is empty; give a test set with at least one sample")
    return correct.item() / n, loss_sum.item() / n


# ----------------------------------------------------------------------------- helpers


def run_config(model: str | nn.Module, dataset: str, *, epochs: int, optimizer: str, lr: float,
               momentum: float, weight_decay: float, schedule: str, label_smoothing: float,
               batch_size: int, train_size: int | None, test_size: int | None,
               seed: int) -> dict[str, Any]:
    """The config dict that identifies a run (the keys of :data:`CONFIG_KEYS`)."""
    return {
        "model": model_name(model), "dataset": str(dataset), "epochs": int(epochs),
        "optimizer": optimizer, "lr": float(lr), "momentum": float(momentum),
        "weight_decay": float(weight_decay), "schedule": schedule,
        "label_smoothing": float(label_smoothing), "batch_size": int(batch_size),
        "train_size": None if train_size is None else int(train_size),
        "test_size": None if test_size is None else int(test_size), "seed": int(seed),
    }


def _check_args(model: str | nn.Module, dataset: str, epochs: int, optimizer: str, lr: float,
                momentum: float, weight_decay: float, schedule: str, label_smoothing: float,
                batch_size: int, train_size: int | None, test_size: int | None,
                have_loaders: bool) -> None:
    if isinstance(model, str) and ":" not in model and model.lower() not in MODELS:
        raise InputError(
            f"model {model!r} is unknown; valid: {', '.join(available())} "
            "(or 'package.module:factory' for your own model)"
        )
    if not have_loaders:
        from .data import DATASETS

        if dataset not in DATASETS:
            raise InputError(f"data set {dataset!r} is unknown; valid: {', '.join(DATASETS)}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r} is unknown; valid: {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise InputError(f"schedule {schedule!r} is unknown; valid: {', '.join(SCHEDULES)}")
    checks = [
        ("epochs", epochs, isinstance(epochs, int) and epochs >= 1, "an integer ≥ 1"),
        ("lr", lr, lr > 0 and math.isfinite(lr), "a positive number"),
        ("momentum", momentum, 0 <= momentum < 1, "a number in [0, 1)"),
        ("weight_decay", weight_decay, weight_decay >= 0, "a number ≥ 0"),
        ("label_smoothing", label_smoothing, 0 <= label_smoothing < 1, "a number in [0, 1)"),
        ("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1,
         "an integer ≥ 1"),
    ]
    for size_name, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None:
            checks.append((size_name, size, isinstance(size, int) and size >= 1,
                           "an integer ≥ 1 (or None for the full set)"))
    for label, value, ok, what in checks:
        if not ok:
            raise InputError(f"{label} {value!r} is invalid; expected {what}")


def _lr_factor(schedule: str, step: int, steps_per_epoch: int, epochs: int) -> float:
    """LR multiplier before optimizer step ``step`` (0-based, per batch).

    cosine: ½(1 + cos(π·step/total)); step: ×0.1 from 50 % and again from 75 % of the epochs;
    constant: 1.
    """
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps_per_epoch * epochs)))
    if schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        return 0.1 ** sum(epoch >= m for m in (math.ceil(epochs * 0.5), math.ceil(epochs * 0.75)))
    return 1.0


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63)


def _seed_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Reseed the global torch RNG and any generator the loader shuffles with."""
    s = _epoch_seed(seed, epoch)
    torch.manual_seed(s)
    seen: set[int] = set()
    candidates = [loader, getattr(loader, "sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    for obj in candidates:
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and id(gen) not in seen:
            seen.add(id(gen))
            gen.manual_seed(s)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@contextlib.contextmanager
def _deterministic(device: torch.device, num_threads: int | None) -> Iterator[None]:
    """Deterministic algorithms on the CPU (cudnn autotuning on CUDA); restored afterwards."""
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())
    prev_threads = torch.get_num_threads()
    prev_bench = torch.backends.cudnn.benchmark
    if num_threads:
        torch.set_num_threads(num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.set_num_threads(prev_threads)
        torch.backends.cudnn.benchmark = prev_bench


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_training_checkpoint(path: Path) -> dict | None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable checkpoint is handled by the caller
        return None
    return obj if isinstance(obj, dict) and "epoch" in obj and "config" in obj else None


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{k} {old.get(k)!r} vs {new.get(k)!r}"
            for k in CONFIG_KEYS if old.get(k) != new.get(k)]


def _existing_run(out: Path, config: dict, overwrite: bool) -> tuple[str, dict | None]:
    """What ``out`` holds: ("complete", run.json) / ("resume", checkpoint) / ("fresh", None).

    A different run raises :class:`InputError` unless ``overwrite`` (then its files go).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file; give a directory for the run")
    run = _read_json(out / "run.json") if (out / "run.json").is_file() else None
    ckpt = None
    if (out / "checkpoint.pt").is_file():
        ckpt = _load_training_checkpoint(out / "checkpoint.pt")
        if ckpt is None and not overwrite:
            raise InputError(
                f"output directory {str(out)!r} holds an unreadable checkpoint.pt; "
                "delete it or pass --overwrite (overwrite=True)"
            )
    held = []
    if run is not None:
        held.append(("complete", run, run.get("config", {})))
    if ckpt is not None:
        held.append(("resume", ckpt, json.loads(ckpt["config"])))
    for state, obj, old in held:
        diff = _config_diff(old, config)
        if not diff:
            if state == "complete" and (out / "model.pt").is_file():
                return state, obj
            if state == "resume":
                return state, obj
            continue
        if not overwrite:
            raise InputError(
                f"output directory {str(out)!r} holds a different run ({'; '.join(diff)}); "
                "choose another --out or pass --overwrite (overwrite=True) to replace it"
            )
    if overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return "fresh", None


def _save_state_dict(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _metrics_dataset(history: dict[str, list[float]], attrs: dict[str, str]) -> xr.Dataset:
    epochs = np.arange(1, len(history["test_accuracy"]) + 1)
    units = {"lr": "1", "epoch_seconds": "s", "train_loss": "nats", "test_loss": "nats",
             "train_accuracy": "fraction", "test_accuracy": "fraction"}
    ds = xr.Dataset(
        {k: ("epoch", np.asarray(history[k], dtype=np.float64), {"units": units[k]})
         for k in METRICS},
        coords={"epoch": epochs},
    )
    ds.attrs.update(attrs)
    return ds


def _make_optimizer(name: str, model: nn.Module, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                           weight_decay=weight_decay, nesterov=momentum > 0)


# ----------------------------------------------------------------------------- training


def train(
    model: str | nn.Module,
    dataset: str,
    *,
    epochs: int,
    out: str | os.PathLike,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    label_smoothing: float = 0.0,
    batch_size: int = 128,
    eval_batch_size: int = 1000,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    num_threads: int | None = None,
    download: bool = True,
    loaders: tuple[Iterable, Iterable, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` for ``epochs``; write the run into ``out``; return run.json.

    ``model``: a registry name (``cnn4``, ``resnet18``, ...), ``package.module:factory`` or an
    ``nn.Module`` (trained in place). ``dataset``: a name of :data:`corranalysis.data.DATASETS`,
    loaded with :func:`corranalysis.data.make_loaders` (``train_size``/``test_size`` take seeded
    subsets); or pass ``loaders=(train_loader, test_loader, info)`` to train on your own data
    (``info`` needs ``in_channels``, ``num_classes``, ``image_size``; ``dataset`` is then only
    the recorded name). SGD uses Nesterov momentum; ``schedule`` is stepped per batch (see
    :func:`_lr_factor`). ``device="auto"`` uses CUDA with float16 autocast + GradScaler when
    present; on the CPU deterministic algorithms are on and the run is reproducible.
    ``num_threads`` sets torch's CPU threads for the call. Re-running a complete run returns its
    run.json without training; an interrupted one resumes from ``checkpoint.pt``.
    """
    t_start = time.perf_counter()
    _check_args(model, dataset, epochs, optimizer, lr, momentum, weight_decay, schedule,
                label_smoothing, batch_size, train_size, test_size, loaders is not None)
    dev = resolve_device(device)
    out = Path(out)
    config = run_config(model, dataset, epochs=epochs, optimizer=optimizer, lr=lr,
                        momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                        label_smoothing=label_smoothing, batch_size=batch_size,
                        train_size=train_size, test_size=test_size, seed=seed)
    state, held = _existing_run(out, config, overwrite)
    if state == "complete":
        if progress:
            tqdm.write(f"run in {out} is already complete (test accuracy "
                       f"{held.get('test_accuracy', float('nan')):.4f}); nothing to do")
        return held

    if loaders is None:
        from .data import dataset_checksum, make_loaders

        train_loader, test_loader, info = make_loaders(
            dataset, batch_size=batch_size, eval_batch_size=eval_batch_size, data_dir=data_dir,
            train_size=train_size, test_size=test_size, seed=seed, device=str(dev),
            download=download,
        )
        checksum = dataset_checksum(dataset, data_dir=data_dir)
    else:
        train_loader, test_loader, info = loaders
        checksum = None
    in_channels, num_classes = int(info.in_channels), int(info.num_classes)
    image_size = int(info.image_size)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise InputError(f"data set {dataset!r}: the training set is empty")

    torch.manual_seed(seed)
    net = resolve_model(model, in_channels, num_classes, image_size=image_size)
    from .checkpoints import check_fits

    amp = dev.type == "cuda"
    with _deterministic(dev, num_threads):
        net.to(dev)
        opt = _make_optimizer(optimizer, net, lr, momentum, weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: _lr_factor(schedule, step, steps_per_epoch, epochs))
        scaler = torch.amp.GradScaler("cuda") if amp else None
        history: dict[str, list[float]] = {k: [] for k in METRICS}
        start, wall_before, resumed_at = 1, 0.0, []
        if state == "resume":
            check_fits(net, held["model"], str(out / "checkpoint.pt"))
            net.load_state_dict(held["model"])
            opt.load_state_dict(held["optimizer"])
            sched.load_state_dict(held["scheduler"])
            if scaler is not None and held.get("scaler"):
                scaler.load_state_dict(held["scaler"])
            _set_rng_state(held["rng"])
            history = {k: list(held["history"][k]) for k in METRICS}
            start = int(held["epoch"]) + 1
            wall_before = float(held.get("wall_seconds", 0.0))
            resumed_at = list(held.get("resumed_at", [])) + [start]
        out.mkdir(parents=True, exist_ok=True)
        criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        attrs = provenance(model=config["model"], dataset=str(dataset),
                           dataset_checksum=checksum or "", config=config, device=str(dev))

        epoch_bar = tqdm(range(start, epochs + 1), desc=f"{config['model']} on {dataset}",
                         unit="epoch", disable=not progress, initial=start - 1, total=epochs)
        for epoch in epoch_bar:
            t0 = time.perf_counter()
            _seed_epoch(train_loader, seed, epoch)
            net.train()
            lr_now = opt.param_groups[0]["lr"]
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.int64, device=dev)
            n = 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch",
                       disable=not progress, total=steps_per_epoch)
            for i, (x, y) in enumerate(bar):
                x, y = _to(x, dev), _to(y, dev)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                    logits = net(x)
                    loss = criterion(logits, y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                sched.step()
                loss_sum += loss.detach().double() * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
                n += y.shape[0]
                if progress and (i % 20 == 0 or i == steps_per_epoch - 1):
                    bar.set_postfix(loss=f"{loss_sum.item() / n:.4f}",
                                    acc=f"{correct.item() / n:.4f}")
            bar.close()
            test_acc, test_loss = evaluate(net, test_loader, dev)
            seconds = time.perf_counter() - t0
            for key, value in (("train_loss", loss_sum.item() / n),
                               ("train_accuracy", correct.item() / n), ("test_loss", test_loss),
                               ("test_accuracy", test_acc), ("lr", lr_now),
                               ("epoch_seconds", seconds)):
                history[key].append(float(value))
            epoch_bar.set_postfix(train_loss=f"{history['train_loss'][-1]:.4f}",
                                  test_acc=f"{test_acc:.4f}")
            if progress:
                tqdm.write(f"epoch {epoch}/{epochs}: train loss {history['train_loss'][-1]:.4f} "
                           f"acc {history['train_accuracy'][-1]:.4f} | test loss {test_loss:.4f}"
                           f" acc {test_acc:.4f} | {seconds:.1f} s")
            ckpt = {
                "epoch": epoch, "config": json.dumps(config),
                "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": _rng_state(), "history": history,
                "wall_seconds": wall_before + time.perf_counter() - t_start,
                "resumed_at": resumed_at,
            }
            with atomic_path(out / "checkpoint.pt") as tmp:
                torch.save(ckpt, tmp)
            write_netcdf(_metrics_dataset(history, attrs), out / "metrics.nc")
        epoch_bar.close()

        _save_state_dict(net, out / "model.pt")
        wall = wall_before + time.perf_counter() - t_start
        run = {
            "model": config["model"], "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size, "n_params": count_parameters(net),
            "dataset": str(dataset), "dataset_checksum": checksum,
            "test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
            "train_accuracy": history["train_accuracy"][-1],
            "train_loss": history["train_loss"][-1],
            "epochs_completed": len(history["test_accuracy"]),
            "config": config,
            "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if amp else ""),
            "amp": amp, "num_threads": torch.get_num_threads(),
            "wall_seconds": round(wall, 3),
            "train_seconds": round(sum(history["epoch_seconds"]), 3),
            "resumed_at_epochs": resumed_at,
            "files": {"model": "model.pt", "metrics": "metrics.nc"},
            "model_sha256": file_sha256(out / "model.pt"),
            "history": [dict(zip(METRICS, row, strict=True))
                        for row in zip(*(history[k] for k in METRICS), strict=True)],
            "package_versions": package_versions(), "git_commit": git_commit(),
            "created": attrs["created"],
        }
    write_json(run, out / "run.json")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return run
