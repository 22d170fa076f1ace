"""The one training loop: epochs or steps, hooks, progress, resume, mixed precision on CUDA.

:func:`fit` trains a model in place with the optimiser and schedule of an :class:`Optim` and
returns its per-epoch history. Hooks make the re-training modes: ``after_step(model)`` runs
after every optimiser step (the ``projected`` mode re-applies a truncation there),
``loss_fn(model, x, y)`` replaces the cross-entropy objective (the ``local`` mode), and
``on_epoch(epoch, model)`` records extra values per epoch.

Reproducibility: every epoch reseeds the global torch RNG and the loader's shuffling generator
from ``(seed, epoch)``, and on the CPU deterministic algorithms are on, so a run is
reproducible. With ``checkpoint=PATH`` the full state (weights, optimiser, scheduler, scaler,
RNG states, history) is written atomically after every epoch; calling :func:`fit` again with
the same ``identity`` continues at the next epoch, and the result equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..devices import resolve_device
from ..errors import InputError
from ..io import atomic_path
from ..progress import progress_bar
from ._evaluate import batches, evaluate
from ._optim import Optim, make_optimizer, make_scheduler

__all__ = ["HISTORY_KEYS", "Fit", "fit", "read_state"]

#: What :func:`fit` records per epoch (epoch 0, when recorded, is the state before training).
HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                "epoch_seconds")


@dataclass
class Fit:
    """What :func:`fit` did: the per-epoch ``history`` (lists keyed by name, ``epoch`` first),
    the wall time over all sessions, and the epochs at which it resumed."""

    history: dict[str, list]
    wall_seconds: float
    resumed_at: list[int]


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
def deterministic(device: torch.device, num_threads: int | None = None) -> Iterator[None]:
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


def read_state(path: str | os.PathLike) -> dict | None:
    """The training state saved by :func:`fit` at ``path``, or None if it cannot be read."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable state is handled by the caller
        return None
    return obj if isinstance(obj, dict) and "epoch" in obj and "identity" in obj else None


def _cross_entropy(label_smoothing: float) -> LossFn:
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        return criterion(logits, y), logits

    return loss_fn


def _resume(path: Path | None, identity: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    state = read_state(path)
    if state is None:
        raise InputError(f"training state {str(path)!r} cannot be read; delete it to start over")
    if state["identity"] != identity:
        raise InputError(f"training state {str(path)!r} belongs to a different run; delete it "
                         "or choose another output")
    return state


def fit(
    model: nn.Module,
    train_data: Iterable,
    *,
    optim: Optim | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    test_data: Iterable | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    loss_fn: LossFn | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], Mapping[str, Any]] | None = None,
    after_epoch: Callable[[Mapping[str, list]], None] | None = None,
    record_start: bool = False,
    checkpoint: str | os.PathLike | None = None,
    identity: Mapping[str, Any] | None = None,
    progress: bool = True,
    desc: str = "train",
    num_threads: int | None = None,
) -> Fit:
    """Train ``model`` in place for ``epochs`` epochs or ``steps`` optimiser steps.

    ``train_data`` yields ``(x, y)`` batches (and has ``len``); after every epoch the model is
    evaluated on ``test_data`` (when given). Returns the history: ``epoch`` and the lists of
    :data:`HISTORY_KEYS` (test metrics NaN without test data), plus whatever ``on_epoch``
    returns (see :class:`Fit`); ``after_epoch(history)`` runs once an epoch is recorded and
    saved (write results as they go there); with ``record_start`` the first entry is epoch 0,
    before any step (train metrics NaN). On CUDA the forward runs under float16 autocast
    with a GradScaler.
    """
    optim = optim or Optim()
    if (epochs is None) == (steps is None):
        raise InputError("give either epochs or steps")
    count = epochs if epochs is not None else steps
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError(f"{'epochs' if epochs is not None else 'steps'} {count!r} is invalid; "
                         "expected an integer ≥ 0")
    dev = resolve_device(device)
    per_epoch = len(train_data)  # type: ignore[arg-type]
    if per_epoch == 0 and count:
        raise InputError("the training set is empty; give at least one training sample")
    total = count * per_epoch if epochs is not None else count
    n_epochs = count if epochs is not None else math.ceil(count / max(per_epoch, 1))
    loss_fn = loss_fn or _cross_entropy(optim.label_smoothing)
    path = Path(checkpoint) if checkpoint is not None else None
    ident = json.dumps({"optim": optim.as_dict(), "epochs": epochs, "steps": steps,
                        "seed": seed, **(identity or {})}, sort_keys=True, default=str)
    amp = dev.type == "cuda"
    history: dict[str, list] = {"epoch": [], **{k: [] for k in HISTORY_KEYS}}

    def record(epoch: int, values: Mapping[str, Any]) -> None:
        history["epoch"].append(epoch)
        extra = dict(on_epoch(epoch, model)) if on_epoch else {}
        if test_data is not None:
            r = evaluate(model, test_data, dev)
            extra.update(test_loss=r.loss, test_accuracy=r.accuracy)
        for key in {*history, *extra} - {"epoch"}:
            history.setdefault(key, [math.nan] * (len(history["epoch"]) - 1))
            history[key].append({**values, **extra}.get(key, math.nan))

    with deterministic(dev, num_threads):
        model.to(dev)
        opt = make_optimizer(model.parameters(), optim)
        sched = make_scheduler(opt, optim, total)
        scaler = torch.amp.GradScaler("cuda") if amp else None
        state = _resume(path, ident)
        start, done, wall_before, resumed_at = 1, 0, 0.0, []
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
            history = {k: list(v) for k, v in state["history"].items()}
            start, done = int(state["epoch"]) + 1, int(state["steps_done"])
            wall_before = float(state.get("wall_seconds", 0.0))
            resumed_at = [*state.get("resumed_at", []), start]
        elif record_start:
            model.eval()
            record(0, {"epoch_seconds": 0.0})
        t_start = time.perf_counter()
        bar = progress_bar(range(start, n_epochs + 1), desc=desc, unit="epoch",
                           disable=not progress, initial=start - 1, total=n_epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            _seed_epoch(train_data, seed, epoch)
            model.train()
            lr_now = opt.param_groups[0]["lr"]
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.int64, device=dev)
            n = 0
            inner = progress_bar(batches(train_data, dev), leave=False, unit="batch",
                                 desc=f"{desc}: epoch {epoch}/{n_epochs}",
                                 disable=not progress, total=min(per_epoch, total - done))
            for i, (x, y) in enumerate(inner):
                if done >= total:
                    break
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                    loss, logits = loss_fn(model, x, y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                sched.step()
                done += 1
                if after_step is not None:
                    after_step(model)
                loss_sum += loss.detach().double() * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
                n += y.shape[0]
                if progress and (i % 20 == 0 or i == per_epoch - 1):
                    inner.set_postfix(loss=f"{loss_sum.item() / n:.4f}",
                                      acc=f"{correct.item() / n:.4f}")
            inner.close()
            model.eval()
            record(epoch, {"train_loss": loss_sum.item() / max(n, 1),
                           "train_accuracy": correct.item() / max(n, 1), "lr": lr_now,
                           "epoch_seconds": time.perf_counter() - t0})
            if progress:
                shown = {k: history[k][-1] for k in ("train_loss", "test_accuracy")}
                bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()})
            if path is not None:
                snapshot = {
                    "epoch": epoch, "steps_done": done, "identity": ident,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "rng": _rng_state(), "history": history,
                    "wall_seconds": wall_before + time.perf_counter() - t_start,
                    "resumed_at": resumed_at,
                }
                with atomic_path(path) as tmp:
                    torch.save(snapshot, tmp)
            if after_epoch is not None:
                after_epoch(history)
        bar.close()
    return Fit(history, wall_before + time.perf_counter() - t_start, resumed_at)
