"""CIFAR training augmentation in plain torch, batched: random crop with padding, h-flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None,
                  pad: int = 4) -> torch.Tensor:
    """Randomly crop each image of ``x`` ``(B, C, H, W)`` to ``(H, W)`` out of its zero-padded
    ``(H + 2 pad, W + 2 pad)`` version, then flip it left-right with probability 1/2.

    Works on uint8 (before normalisation, padding with black as torchvision's
    ``RandomCrop(32, padding=4)`` does) or float. Random numbers come from ``generator``
    (CPU; the torch default when None), so the result does not depend on ``x``'s device.
    """
    b, c, h, w = x.shape
    if b == 0:
        return x
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(b, c, hp * wp)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.arange(w).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(-1), cols) + dx[:, None]  # flip: reversed cols
    rows = dy[:, None] + torch.arange(h)
    # one flat gather per image (7x faster than advanced indexing on a 2-core CPU)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).to(x.device)
    return padded.gather(2, flat.expand(b, c, h * w)).reshape(b, c, h, w)
