"""CP convolution: 1×1 (in→R), depthwise kh×1, depthwise 1×kw, 1×1 (R→out).

``W[o, i, h, w] ≈ Σ_r A_out[o, r] A_in[i, r] A_h[h, r] A_w[w, r]`` from TensorLy's
``parafac`` (ALS, SVD initialisation). At ``R ≥ max_cp_rank`` the exact decomposition
(unit vectors over all but the largest leg) is used instead of ALS.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import parafac
from threadpoolctl import threadpool_limits
from torch import nn


def max_cp_rank(shape: tuple[int, ...]) -> int:
    """A rank with an exact CP decomposition always: product of all dims but the largest."""
    return math.prod(shape) // max(shape)


def cp_params(out: int, inp: int, kh: int, kw: int, rank: int, bias: bool = True) -> int:
    """Parameters of a CP convolution."""
    return rank * (out + inp + kh + kw) + (out if bias else 0)


def _exact_cp(w: np.ndarray, rank: int) -> list[np.ndarray]:
    """Exact CP factors: unit vectors on every leg but the largest, which holds the entries."""
    shape = w.shape
    big = int(np.argmax(shape))
    others = [d for d in range(w.ndim) if d != big]
    n = math.prod(shape[d] for d in others)
    idx = np.array(np.unravel_index(np.arange(n), [shape[d] for d in others]))
    factors: list[np.ndarray] = [np.zeros((s, rank)) for s in shape]
    for j, d in enumerate(others):
        factors[d][idx[j], np.arange(n)] = 1.0
    factors[big][:, :n] = np.moveaxis(w, big, -1).reshape(n, shape[big]).T
    return factors


def cp4(weight: np.ndarray, rank: int, n_iter_max: int = 200) -> tuple[list[np.ndarray], float]:
    """CP factors ``[A_out, A_in, A_h, A_w]`` (weights folded into ``A_out``) and relative error."""
    w = weight.astype(np.float64)
    if rank >= max_cp_rank(w.shape):
        factors = _exact_cp(w, rank)
    else:
        # ALS on small matrices: BLAS threads only add synchronisation, and on a busy CPU
        # they spin (64×64×3×3 at R = 50: 14 s for 5 sweeps with 2 threads, 0.6 s with 1)
        with tl.backend_context("numpy"), warnings.catch_warnings(), \
                threadpool_limits(1, user_api="blas"):
            warnings.simplefilter("ignore", UserWarning)  # SVD init padded when rank > a leg
            cp = parafac(
                w, rank=rank, init="svd", n_iter_max=n_iter_max, tol=1e-9, random_state=0
            )
        factors = [np.asarray(f).copy() for f in cp.factors]
        factors[0] = factors[0] * np.asarray(cp.weights)[None, :]
    with tl.backend_context("numpy"):
        rec = np.asarray(tl.cp_to_tensor((np.ones(rank), factors)))
    err = float(np.linalg.norm(rec - w) / max(np.linalg.norm(w), 1e-30))
    return factors, err


class CPConv2d(nn.Module):
    """CP-factorised ``nn.Conv2d``: ``(B, in, H, W) -> (B, out, H', W')``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rank: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        bias: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = kernel_size
        self.rank = rank
        self.first = nn.Conv2d(in_channels, rank, 1, bias=False)
        self.vertical = nn.Conv2d(
            rank, rank, (kh, 1), stride=(stride[0], 1), padding=(padding[0], 0),
            dilation=(dilation[0], 1), groups=rank, bias=False,
        )
        self.horizontal = nn.Conv2d(
            rank, rank, (1, kw), stride=(1, stride[1]), padding=(0, padding[1]),
            dilation=(1, dilation[1]), groups=rank, bias=False,
        )
        self.last = nn.Conv2d(rank, out_channels, 1, bias=bias)

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set the factors from a conv kernel; returns the relative reconstruction error."""
        (a_out, a_in, a_h, a_w), err = cp4(weight.detach().cpu().double().numpy(), self.rank)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.last.weight.dtype)  # noqa: E731
        with torch.no_grad():
            self.first.weight.copy_(t(a_in.T)[:, :, None, None])
            self.vertical.weight.copy_(t(a_h.T)[:, None, :, None])
            self.horizontal.weight.copy_(t(a_w.T)[:, None, None, :])
            self.last.weight.copy_(t(a_out)[:, :, None, None])
            if bias is not None and self.last.bias is not None:
                self.last.bias.copy_(bias.detach())
        self.init_rel_error = err
        return err

    def dense_weight(self) -> torch.Tensor:
        """The dense kernel ``(out, in, kh, kw)`` (checks only)."""
        return torch.einsum(
            "or,ir,hr,wr->oihw",
            self.last.weight[:, :, 0, 0], self.first.weight[:, :, 0, 0].T,
            self.vertical.weight[:, 0, :, 0].T, self.horizontal.weight[:, 0, 0, :].T,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.horizontal(self.vertical(self.first(x))))
