"""Evaluation: accuracy and mean cross-entropy of a model over a data set.

:func:`evaluate` is the one evaluation of the package: training, re-training, tensorized
fine-tuning, sweeps and the CLI all use it. It accumulates per batch in batch order with
:class:`_Acc` (the same accumulator as the batch-major engine of :mod:`._engine`), so the
engine's results equal it bit for bit on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_device
from ..errors import InputError

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Accuracy (fraction correct in [0, 1]) and mean cross-entropy loss (nats) over ``n``
    samples; ``correct``: per sample, whether it was classified correctly (bool ``(n,)``,
    in data order), where recorded."""

    accuracy: float
    loss: float
    n: int
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)


class _Acc:
    """Accumulates correct counts and summed losses over batches, in batch order;
    ``record=True`` also keeps the per-sample correctness (``last`` is the last batch's)."""

    def __init__(self, record: bool = False) -> None:
        self.correct = 0
        self.loss = 0.0
        self.n = 0
        self.record = record
        self.hits: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        logits = logits.float()
        hit = logits.argmax(dim=1) == y
        self.correct += int(hit.sum().item())
        self.loss += float(F.cross_entropy(logits, y, reduction="sum").item())
        self.n += int(y.shape[0])
        if self.record:
            self.hits.append(hit.cpu())

    def result(self) -> EvalResult:
        if self.n == 0:
            raise InputError("the evaluation data set is empty; give a test set with at least "
                             "one sample")
        correct = torch.cat(self.hits).numpy() if self.record else None
        return EvalResult(self.correct / self.n, self.loss / self.n, self.n, correct)


def batches(loader: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` of each batch of ``loader``, moved to ``device``."""
    non_blocking = device.type == "cuda"
    for batch in loader:
        yield (batch[0].to(device, non_blocking=non_blocking),
               batch[1].to(device, non_blocking=non_blocking))


@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable, device: str | torch.device = "auto", *,
             amp: bool = False, record: bool = False) -> EvalResult:
    """Accuracy and mean cross-entropy of ``model`` over ``data`` (batches ``(x, y)``).

    The model is moved to ``device`` (``auto``: CUDA when present) and evaluated in eval mode;
    its train/eval mode is restored afterwards. ``amp`` runs the forward under float16
    autocast on CUDA (off by default, so GPU numbers match the CPU's to float32 rounding).
    ``record=True`` keeps which samples were classified correctly (``EvalResult.correct``).
    """
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    acc = _Acc(record)
    try:
        for x, y in batches(data, device):
            with torch.autocast(device.type, dtype=torch.float16,
                                enabled=amp and device.type == "cuda"):
                logits = model(x)
            acc.add(logits, y)
    finally:
        model.train(was_training)
    return acc.result()
