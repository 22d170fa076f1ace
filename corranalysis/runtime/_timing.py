"""Wall time of one training step and of one inference batch, measured the same way for every
model (dense or tensorized), so that their ratio is a fair comparison.

A step is what :func:`~corranalysis.runtime.fit` does per batch: zero the gradients, forward,
cross-entropy, backward, optimiser step. Models are copied first, so timing never changes
the caller's weights. The figure is the median over ``repeats`` runs after ``warmup`` runs
(seconds; on CUDA the device is synchronised around each run). Several models are timed
interleaved (model 1, model 2, …, then again), so that a load that comes and goes on a shared
machine falls on all of them alike and their ratio stays meaningful.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
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


def _runners(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor,
             optim: Optim | None) -> tuple[Callable[[], None], Callable[[], None]]:
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

    return step, infer


def time_steps(models: nn.Module | Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor,
               x_eval: torch.Tensor, *, optim: Optim | None = None, warmup: int = 2,
               repeats: int = 9) -> StepTimes | list[StepTimes]:
    """Time a training step on ``(x, y)`` and an inference pass on ``x_eval`` (all on the
    models' device) of one model, or of several interleaved (a list back). Models are not
    changed."""
    many = not isinstance(models, nn.Module)
    group = list(models) if many else [models]
    device = next(group[0].parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runners = [_runners(m, x, y, x_eval, optim) for m in group]
    times = [([], []) for _ in group]
    for r in range(warmup + repeats):
        for (step, infer), (steps, infers) in zip(runners, times, strict=True):
            for fn, out in ((step, steps), (infer, infers)):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                if r >= warmup:
                    out.append(time.perf_counter() - t0)
    result = [StepTimes(statistics.median(s), statistics.median(i), int(x.shape[0]),
                        int(x_eval.shape[0])) for s, i in times]
    return result if many else result[0]
