"""Wall time of one training step and of one inference batch, measured the same way for every
model (dense or tensorized), so that their ratio is a fair comparison.

A step is what :func:`~corranalysis.runtime.fit` does per batch: zero the gradients, forward,
cross-entropy, backward, optimiser step. The model is copied first, so timing never changes
the caller's weights. The figure is the median over ``repeats`` runs after ``warmup`` runs
(seconds; on CUDA the device is synchronised around each run).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._optim import Optim, make_optimizer

__all__ = ["StepTimes", "time_steps"]


@dataclass(frozen=True)
class StepTimes:
    """Median seconds of one training step and of one inference batch."""

    step_seconds: float
    inference_seconds: float
    batch: int
    inference_batch: int


def _median_seconds(fn: Callable[[], None], device: torch.device, warmup: int,
                    repeats: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, *,
               optim: Optim | None = None, warmup: int = 2, repeats: int = 7) -> StepTimes:
    """Time a training step on ``(x, y)`` and an inference pass on ``x_eval`` (all on the
    model's device). ``model`` is not changed."""
    device = next(model.parameters()).device
    work = copy.deepcopy(model)
    opt = make_optimizer(work.parameters(), optim or Optim())
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        work.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(work(x), y).backward()
        opt.step()

    def infer() -> None:
        work.eval()
        with torch.no_grad():
            work(x_eval)

    step_s = _median_seconds(step, device, warmup, repeats)
    infer_s = _median_seconds(infer, device, warmup, repeats)
    return StepTimes(step_s, infer_s, int(x.shape[0]), int(x_eval.shape[0]))
