"""Optimisers and learning-rate schedules: one settings object, one factory.

:class:`Optim` holds every setting that decides how weights move (optimiser, peak learning
rate, momentum, weight decay, schedule, linear warm-up, label smoothing) and validates itself.
:func:`make_optimizer` and :func:`make_scheduler` build the torch objects from it; training,
re-training and tensorized fine-tuning all go through them.

The learning rate is set per optimiser step: a linear warm-up from ``lr/W`` to ``lr`` over the
first ``W = round(warmup · total_steps)`` steps, then the schedule over the remaining steps
(``cosine``: ½(1 + cos(π t)) with t from 0 to 1; ``step``: ×0.1 at 50 % and again at 75 %;
``constant``: 1). SGD uses Nesterov momentum whenever ``momentum > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from ..errors import InputError, check_opt

__all__ = ["BATCH_SIZE", "DEFAULT_OPTIM", "OPTIMIZERS", "SCHEDULES", "Optim", "lr_factor",
           "make_optimizer", "make_scheduler"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def _number(name: str, value: Any, ok: bool, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} {value!r} is invalid; expected {what}")
    if not ok:
        raise InputError(f"{name} {value!r} is invalid; expected {what}")


@dataclass(frozen=True)
class Optim:
    """How a model is optimised (defaults: the ones that converge for every zoo model).

    ``lr`` is the peak learning rate (after warm-up); ``warmup`` is the fraction of all
    optimiser steps spent warming up linearly (0 = none); ``label_smoothing`` applies to the
    training loss only.
    """

    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup: float = 0.1
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_opt("optimizer", self.optimizer, OPTIMIZERS)
        check_opt("schedule", self.schedule, SCHEDULES)
        v = self.lr
        _number("lr", v, isinstance(v, (int, float)) and v > 0, "a positive number")
        v = self.momentum
        _number("momentum", v, isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)")
        v = self.weight_decay
        _number("weight_decay", v, isinstance(v, (int, float)) and v >= 0, "a number ≥ 0")
        v = self.warmup
        _number("warmup", v, isinstance(v, (int, float)) and 0 <= v < 1,
                "a fraction of the steps in [0, 1)")
        v = self.label_smoothing
        _number("label_smoothing", v, isinstance(v, (int, float)) and 0 <= v < 1,
                "a number in [0, 1)")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> Optim:
        """An Optim from the keys of ``values`` that name its fields; other keys and None values
        (meaning "the default") are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**values, **overrides}.items()
                      if k in names and v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The defaults of every training: they converge for every model of the zoo (docs/benchmarks.md).
DEFAULT_OPTIM = Optim()
#: The default training batch size (small batches: more steps, so short runs converge too).
BATCH_SIZE = 32


def lr_factor(optim: Optim, step: int, total_steps: int) -> float:
    """The learning-rate multiplier before optimiser step ``step`` (0-based) of ``total_steps``."""
    total = max(1, int(total_steps))
    warm = int(round(optim.warmup * total))
    if step < warm:
        return (step + 1) / warm
    if optim.schedule == "constant":
        return 1.0
    t = (step - warm) / max(1, total - warm)
    if optim.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    return 0.1 ** sum(t >= m for m in (0.5, 0.75))


def make_optimizer(params: Iterable[torch.nn.Parameter], optim: Optim) -> torch.optim.Optimizer:
    """The torch optimiser for ``params`` (only those that require gradients)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters")
    if optim.optimizer == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum,
                           weight_decay=optim.weight_decay, nesterov=optim.momentum > 0)


def make_scheduler(opt: torch.optim.Optimizer, optim: Optim,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler implementing :func:`lr_factor` (step it after every ``opt.step``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(optim, step, total_steps))
