"""Tucker-2 convolution: 1×1 (in→r_in), kh×kw (r_in→r_out), 1×1 (r_out→out).

The kernel ``W (out, in, kh, kw)`` is approximated by ``core ×_out U_out ×_in U_in`` with
``core (r_out, r_in, kh, kw)``, ``U_out (out, r_out)`` and ``U_in (in, r_in)``, from TensorLy's
``partial_tucker`` (HOSVD initialisation + HOOI) on the two channel modes.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import partial_tucker
from torch import nn


def tucker_params(
    out: int, inp: int, kh: int, kw: int, r_out: int, r_in: int, bias: bool = True
) -> int:
    """Parameters of a Tucker-2 convolution."""
    return inp * r_in + r_in * r_out * kh * kw + r_out * out + (out if bias else 0)


def tucker2(
    weight: np.ndarray, r_out: int, r_in: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(core, U_out, U_in, relative error)``: Tucker-2 of ``(out, in, kh, kw)``."""
    w = weight.astype(np.float64)
    with tl.backend_context("numpy"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SVD size clipped to the unfolding
        (core, (u_out, u_in)), _ = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], init="svd")
        rec = tl.tenalg.multi_mode_dot(core, [u_out, u_in], modes=[0, 1])
    err = float(np.linalg.norm(rec - w) / max(np.linalg.norm(w), 1e-30))
    return np.asarray(core), np.asarray(u_out), np.asarray(u_in), err


class TuckerConv2d(nn.Module):
    """Tucker-2 factorised ``nn.Conv2d``: ``(B, in, H, W) -> (B, out, H', W')``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        r_in: int,
        r_out: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.ranks = (r_out, r_in)
        self.first = nn.Conv2d(in_channels, r_in, 1, bias=False)
        self.core = nn.Conv2d(
            r_in, r_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.last = nn.Conv2d(r_out, out_channels, 1, bias=bias)

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set the factors from a conv kernel; returns the relative reconstruction error."""
        core, u_out, u_in, err = tucker2(weight.detach().cpu().double().numpy(), *self.ranks)
        dt = self.core.weight.dtype
        with torch.no_grad():
            self.first.weight.copy_(torch.from_numpy(u_in.T.copy())[:, :, None, None].to(dt))
            self.core.weight.copy_(torch.from_numpy(core).to(dt))
            self.last.weight.copy_(torch.from_numpy(u_out)[:, :, None, None].to(dt))
            if bias is not None and self.last.bias is not None:
                self.last.bias.copy_(bias.detach())
        self.init_rel_error = err
        return err

    def dense_weight(self) -> torch.Tensor:
        """The dense kernel ``(out, in, kh, kw)`` (checks only)."""
        return torch.einsum(
            "or,rskl,si->oikl",
            self.last.weight[:, :, 0, 0], self.core.weight, self.first.weight[:, :, 0, 0],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))


