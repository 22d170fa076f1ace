"""quimb views of a kernel: a Tensor with its legs as named indices, and an MPS over its legs."""

from __future__ import annotations

import numpy as np
import quimb.tensor as qtn

from ._legs import LegLayout

__all__ = ["kernel_tensor", "kernel_mps", "bond_spectra"]


def kernel_tensor(weight: np.ndarray, layout: LegLayout, layer: str = "kernel") -> qtn.Tensor:
    """The kernel as a quimb Tensor whose indices are its (fine-grained) legs."""
    data = np.asarray(weight, dtype=np.float64).reshape(layout.sizes)
    return qtn.Tensor(data, inds=layout.names, tags={layer})


def kernel_mps(weight: np.ndarray, layout: LegLayout, **split_opts) -> qtn.MatrixProductState:
    """The kernel as a quimb MPS over its legs in order (no truncation by default).

    Its bonds are the contiguous cuts ``legs[:i] | legs[i:]``.
    """
    data = np.asarray(weight, dtype=np.float64).reshape(-1)
    split_opts.setdefault("cutoff", 0.0)
    return qtn.MatrixProductState.from_dense(data, dims=list(layout.sizes), **split_opts)


def bond_spectra(mps: qtn.MatrixProductState) -> list[np.ndarray]:
    """Singular values across each bond i = 1..L-1 of ``mps`` (quimb, descending)."""
    return [np.sort(np.asarray(mps.singular_values(i), dtype=np.float64))[::-1]
            for i in range(1, mps.L)]
