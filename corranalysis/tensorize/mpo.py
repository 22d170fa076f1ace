"""MPO / tensor-train (TT-matrix) layers standing in for ``nn.Linear`` and ``nn.Conv2d``.

A kernel ``W (out, in)`` is fine-grained into ``out = o_1···o_n`` and ``in = i_1···i_n`` and
written as a chain of cores ``G_k (r_{k-1}, o_k, i_k, r_k)`` (``r_0 = r_n = 1``). The
initialisation is TensorLy's sequential truncated SVD (``tensor_train_matrix``); the forward
pass contracts the input through the cores one at a time and never rebuilds the dense kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorly as tl
import torch
import torch.nn.functional as F
from tensorly.decomposition import tensor_train_matrix
from torch import nn

from ..errors import InputError
from ..kernels import prime_factors


def balanced_factors(n: int, sites: int) -> list[int]:
    """Split ``n`` into ``sites`` factors as equal as possible (descending; 1s pad).

    >>> balanced_factors(4096, 3)
    [16, 16, 16]
    """
    buckets = [1] * sites
    for p in sorted(prime_factors(n), reverse=True):
        buckets[buckets.index(min(buckets))] *= p
    return sorted(buckets, reverse=True)


def full_bonds(out_factors: Sequence[int], in_factors: Sequence[int]) -> list[int]:
    """Largest useful bond at each of the ``n - 1`` cuts: min(left size, right size)."""
    dims = [o * i for o, i in zip(out_factors, in_factors, strict=True)]
    return [min(math.prod(dims[: k + 1]), math.prod(dims[k + 1 :])) for k in range(len(dims) - 1)]


def bond_list(chi: int, out_factors: Sequence[int], in_factors: Sequence[int]) -> list[int]:
    """Bonds ``[r_1, ..., r_{n-1}]`` for a uniform ``chi``, capped at each cut's full rank."""
    return [min(chi, b) for b in full_bonds(out_factors, in_factors)]


def mpo_params(bonds: Sequence[int], out_factors: Sequence[int], in_factors: Sequence[int]) -> int:
    """Number of core entries for the given bonds."""
    r = [1, *bonds, 1]
    pairs = enumerate(zip(out_factors, in_factors, strict=True))
    return sum(r[k] * o * i * r[k + 1] for k, (o, i) in pairs)


def contract_cores(x: torch.Tensor, cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply the MPO to rows of ``x``: ``(N, prod i_k) -> (N, prod o_k)``, core by core."""
    n = x.shape[0]
    t = x.reshape(n, 1, 1, -1)  # (N, out done, bond, in remaining)
    for core in cores:
        r, o, i, s = core.shape
        done = t.shape[1]
        t = t.reshape(n, done, r, i, -1)
        t = torch.einsum("bpric,rois->bposc", t, core)
        t = t.reshape(n, done * o, s, -1)
    return t.reshape(n, -1)


def tt_matrix_init(
    weight: np.ndarray, out_factors: Sequence[int], in_factors: Sequence[int], bonds: Sequence[int]
) -> tuple[list[np.ndarray], float]:
    """Sequential truncated SVDs of ``weight (out, in)`` into TT-matrix cores; relative error."""
    t = weight.astype(np.float64).reshape(*out_factors, *in_factors)
    with tl.backend_context("numpy"):
        cores = [np.asarray(c) for c in tensor_train_matrix(t, rank=[1, *bonds, 1])]
    dense = _to_matrix(cores)
    err = float(np.linalg.norm(dense - weight) / max(np.linalg.norm(weight), 1e-30))
    return cores, err


def _to_matrix(cores: Sequence[np.ndarray]) -> np.ndarray:
    """Dense ``(out, in)`` from cores ``(r, o, i, s)`` (checks only, never in training)."""
    m = np.ones((1, 1, 1))  # (out so far, in so far, bond)
    for c in cores:
        m = np.einsum("abr,rois->aobis", m, c)
        a, o, b, i, s = m.shape
        m = m.reshape(a * o, b * i, s)
    return m[:, :, 0]


class MPOLinear(nn.Module):
    """``nn.Linear`` with an MPO kernel. Input ``(..., in)`` -> output ``(..., out)``."""

    def __init__(
        self,
        in_factors: Sequence[int],
        out_factors: Sequence[int],
        bonds: Sequence[int],
        bias: bool = True,
    ) -> None:
        super().__init__()
        if len(in_factors) != len(out_factors) or len(bonds) != len(in_factors) - 1:
            raise InputError("MPO: in/out factors need the same number of sites and n-1 bonds")
        self.in_factors, self.out_factors = list(in_factors), list(out_factors)
        self.bonds = list(bonds)
        self.in_features, self.out_features = math.prod(in_factors), math.prod(out_factors)
        r = [1, *bonds, 1]
        self.cores = nn.ParameterList(
            nn.Parameter(torch.randn(r[k], o, i, r[k + 1]) / math.sqrt(r[k] * i))
            for k, (o, i) in enumerate(zip(out_factors, in_factors, strict=True))
        )
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    @classmethod
    def from_dense(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        in_factors: Sequence[int],
        out_factors: Sequence[int],
        bonds: Sequence[int],
    ) -> tuple[MPOLinear, float]:
        """MPO of ``weight (out, in)`` at the given bonds and its relative reconstruction error."""
        mod = cls(in_factors, out_factors, bonds, bias=bias is not None)
        mod.load_dense(weight, bias)
        return mod, mod.init_rel_error

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set the cores from ``weight (out, in)``; returns the relative reconstruction error."""
        w = weight.detach().cpu().double().numpy().reshape(self.out_features, self.in_features)
        cores, err = tt_matrix_init(w, self.out_factors, self.in_factors, self.bonds)
        with torch.no_grad():
            for p, c in zip(self.cores, cores, strict=True):
                p.copy_(torch.from_numpy(c))
            if bias is not None and self.bias is not None:
                self.bias.copy_(bias.detach())
        self.init_rel_error = err
        return err

    def dense_weight(self) -> torch.Tensor:
        """The dense ``(out, in)`` kernel (for checks; the forward pass never builds it)."""
        return torch.from_numpy(_to_matrix([c.detach().cpu().double().numpy() for c in self.cores]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = contract_cores(x.reshape(-1, self.in_features), list(self.cores))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_factors}, out={self.out_factors}, bonds={self.bonds}"


class MPOConv2d(nn.Module):
    """``nn.Conv2d`` whose kernel ``(out, in, kh, kw)`` is an MPO with a first spatial site.

    Sites: ``(1, kh·kw)``, then ``(o_k, i_k)`` for the channel factors. The forward pass
    unfolds patches ``(B·L, kh·kw, in)`` and contracts them through the cores; the spatial
    core goes first because it shrinks the row (no output leg), which keeps the
    intermediates of the chain small.
    """

    def __init__(
        self,
        in_factors: Sequence[int],
        out_factors: Sequence[int],
        bonds: Sequence[int],
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        bias: bool = True,
        chunk_rows: int = 1 << 18,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        kk = self.kernel_size[0] * self.kernel_size[1]
        self.mpo = MPOLinear([kk, *in_factors], [1, *out_factors], bonds, bias=bias)
        self.in_channels, self.out_channels = math.prod(in_factors), math.prod(out_factors)
        self.chunk_rows = chunk_rows

    @staticmethod
    def site_factors(
        in_factors: Sequence[int], out_factors: Sequence[int], kernel_size: tuple[int, int]
    ) -> tuple[list[int], list[int]]:
        """(out, in) factors of all sites including the spatial one."""
        return [1, *out_factors], [kernel_size[0] * kernel_size[1], *in_factors]

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set the cores from a conv kernel ``(out, in, kh, kw)``; returns the relative error."""
        w = weight.reshape(weight.shape[0], weight.shape[1], -1).transpose(1, 2)  # (out, kk, in)
        return self.mpo.load_dense(w.reshape(weight.shape[0], -1), bias)

    @property
    def init_rel_error(self) -> float:
        return self.mpo.init_rel_error

    def dense_weight(self) -> torch.Tensor:
        kh, kw = self.kernel_size
        w = self.mpo.dense_weight().reshape(self.out_channels, kh * kw, self.in_channels)
        return w.transpose(1, 2).reshape(self.out_channels, self.in_channels, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        cols = cols.reshape(b, self.in_channels, kh * kw, ho * wo)
        rows = cols.permute(0, 3, 2, 1).reshape(b * ho * wo, -1)  # (B·L, kh·kw·in)
        if torch.is_grad_enabled() or rows.shape[0] <= self.chunk_rows:
            y = self.mpo(rows)
        else:  # inference on big batches: bound the intermediate size
            y = torch.cat([self.mpo(r) for r in rows.split(self.chunk_rows)])
        return y.reshape(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
