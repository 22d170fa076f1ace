"""Plain truncation kept factorised: a kernel cut in two at one cut, run as two thin layers.

A kernel ``W`` truncated to rank ``χ`` across a cut ``A|B`` (:func:`corranalysis.truncation.
truncate`, the one definition of a truncation) factors exactly as ``W̃ = L R`` with
``L (dim A, χ)`` and ``R (χ, dim B)`` (``L = U_χ√S_χ``, ``R = √S_χ V_χᵀ``). The cuts that run
as two layers in sequence are those with ``out`` on one side and ``in`` on the other:

=================  ==========================================  ==================================
cut                first layer (input side, ``R``)             second layer (output side, ``L``)
=================  ==========================================  ==================================
``out|in``         Linear(in → χ)                              Linear(χ → out, bias)
``out|in,kh,kw``   Conv(in → χ, kh×kw, the layer's stride …)   Conv 1×1 (χ → out, bias)
``out,kh,kw|in``   Conv 1×1 (in → χ)                           Conv(χ → out, kh×kw, stride …)
``out,kh|in,kw``   Conv(in → χ, 1×kw, horizontal stride …)     Conv(χ → out, kh×1, vertical …)
``out,kw|in,kh``   Conv(in → χ, kh×1, vertical stride …)       Conv(χ → out, 1×kw, horizontal …)
=================  ==========================================  ==================================

Zero padding commutes with the bias-free first layer, so each pair computes exactly
``conv(x, W̃)``. Parameters: ``χ·(dim A + dim B)`` plus the bias.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..kernels import matricize
from ..truncation import cut_dims, layout_of, parse_cuts, truncate

LINEAR_CUTS = ("out|in",)
CONV_CUTS = ("out|in,kh,kw", "out,kh,kw|in", "out,kh|in,kw", "out,kw|in,kh")


def executable_cuts(module: nn.Module) -> tuple[str, ...]:
    """The cuts of ``module``'s kernel that run as two layers (Linear or plain Conv2d)."""
    if isinstance(module, nn.Linear):
        return LINEAR_CUTS
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or isinstance(module.padding, str) or \
                module.padding_mode != "zeros":
            raise InputError(f"{type(module).__name__} with groups={module.groups}, padding="
                             f"{module.padding!r}: svd needs groups=1 and numeric zero padding")
        return CONV_CUTS
    raise InputError(f"svd factorises Linear and Conv2d layers, not {type(module).__name__}")


def cut_size(shape: tuple[int, ...], cut: str) -> tuple[int, int]:
    """``(dim A, dim B)`` of ``cut`` on a kernel of ``shape``."""
    layout = layout_of(shape)
    return cut_dims(layout, parse_cuts(cut, layout)[0])


def factor_params(shape: tuple[int, ...], cut: str, chi: int) -> int:
    """Kernel entries of the two factors at rank ``chi``: ``χ·(dim A + dim B)``."""
    return chi * sum(cut_size(shape, cut))


def norm_loss_at(weight: torch.Tensor, cut: str, chi: int) -> float:
    """The norm loss of truncating ``weight`` to rank ``chi`` across ``cut``."""
    return truncate(weight.detach(), cut, f"chi={chi}").metrics.norm_loss


def best_cut(weight: torch.Tensor, cuts: tuple[str, ...], budget: float,
             bias: int = 0) -> tuple[str, int, float] | None:
    """``(cut, χ, norm loss)`` of least norm loss among ``cuts`` whose factors, plus ``bias``
    entries, fit in ``budget`` parameters; None when no cut fits even at χ = 1."""
    shape = tuple(weight.shape)
    best = None
    for cut in cuts:
        a, b = cut_size(shape, cut)
        chi = min(a, b, int((budget - bias) // (a + b)))
        if chi < 1:
            continue
        loss = norm_loss_at(weight, cut, chi)
        if best is None or loss < best[2]:
            best = (cut, chi, loss)
    return best


def _factors(weight: torch.Tensor, cut: str, chi: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``L (dim A, χ)``, ``R (χ, dim B)`` of the rank-χ truncation and its relative error."""
    shape = tuple(weight.shape)
    layout = layout_of(shape)
    c = parse_cuts(cut, layout)[0]
    t = truncate(weight.detach(), cut, f"chi={chi}")
    m = np.asarray(matricize(t.weight.detach().cpu().double().numpy(), layout.names,
                             layout.sizes, c))
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    root = np.sqrt(s[:chi])
    return u[:, :chi] * root, root[:, None] * vh[:chi], t.metrics.rel_error


def _pair(v: tuple[int, int] | int) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class FactorizedLinear(nn.Module):
    """``nn.Linear`` as ``second(first(x))``: ``first`` in → χ (no bias), ``second`` χ → out."""

    cut = "out|in"

    def __init__(self, in_features: int, out_features: int, chi: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.chi = in_features, out_features, chi
        self.first = nn.Linear(in_features, chi, bias=False)
        self.second = nn.Linear(chi, out_features, bias=bias)

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set the factors from ``weight (out, in)``; returns the relative error."""
        left, right, err = _factors(weight, self.cut, self.chi)
        with torch.no_grad():
            self.second.weight.copy_(torch.from_numpy(left))
            self.first.weight.copy_(torch.from_numpy(right))
            if bias is not None and self.second.bias is not None:
                self.second.bias.copy_(bias.detach())
        self.init_rel_error = err
        return err

    def dense_weight(self) -> torch.Tensor:
        """The ``(out, in)`` kernel the pair computes (for checks)."""
        return self.second.weight @ self.first.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}, chi={self.chi}"


class FactorizedConv2d(nn.Module):
    """``nn.Conv2d`` as two convolutions split at ``cut`` (one of :data:`CONV_CUTS`)."""

    def __init__(self, conv: nn.Conv2d, cut: str, chi: int) -> None:
        super().__init__()
        if cut not in CONV_CUTS:
            raise InputError(f"svd cut {cut!r}: a convolution runs as two layers at one of "
                             f"{', '.join(CONV_CUTS)}")
        self.cut, self.chi = cut, chi
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.weight_shape = tuple(conv.weight.shape)
        kh, kw = _pair(conv.kernel_size)
        (sh, sw), (ph, pw), (dh, dw) = (_pair(conv.stride), _pair(conv.padding),
                                         _pair(conv.dilation))
        whole = {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw)}
        rows = {"stride": (sh, 1), "padding": (ph, 0), "dilation": (dh, 1)}
        cols = {"stride": (1, sw), "padding": (0, pw), "dilation": (1, dw)}
        one = {"stride": 1, "padding": 0, "dilation": 1}
        first_k, first_geo, second_k, second_geo = {
            "out|in,kh,kw": ((kh, kw), whole, (1, 1), one),
            "out,kh,kw|in": ((1, 1), one, (kh, kw), whole),
            "out,kh|in,kw": ((1, kw), cols, (kh, 1), rows),
            "out,kw|in,kh": ((kh, 1), rows, (1, kw), cols),
        }[cut]
        self.first = nn.Conv2d(conv.in_channels, chi, first_k, bias=False, **first_geo)
        self.second = nn.Conv2d(chi, conv.out_channels, second_k, bias=conv.bias is not None,
                                **second_geo)

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Set both convolutions from ``weight (out, in, kh, kw)``; returns the relative error."""
        left, right, err = _factors(weight, self.cut, self.chi)
        o, i, kh, kw = self.weight_shape
        chi = self.chi
        # rows of L / columns of R follow the legs of each side in stored order
        shapes = {  # (second from L, first from R), built only for this cut
            "out|in,kh,kw": lambda: (left.reshape(o, chi, 1, 1), right.reshape(chi, i, kh, kw)),
            "out,kh,kw|in": lambda: (left.reshape(o, kh, kw, chi).transpose(0, 3, 1, 2),
                                     right.reshape(chi, i, 1, 1)),
            "out,kh|in,kw": lambda: (left.reshape(o, kh, chi).transpose(0, 2, 1)[..., None],
                                     right.reshape(chi, i, kw)[:, :, None, :]),
            "out,kw|in,kh": lambda: (left.reshape(o, kw, chi).transpose(0, 2, 1)[:, :, None, :],
                                     right.reshape(chi, i, kh)[..., None]),
        }
        second, first = shapes[self.cut]()
        with torch.no_grad():
            self.second.weight.copy_(torch.from_numpy(np.ascontiguousarray(second)))
            self.first.weight.copy_(torch.from_numpy(np.ascontiguousarray(first)))
            if bias is not None and self.second.bias is not None:
                self.second.bias.copy_(bias.detach())
        self.init_rel_error = err
        return err

    def dense_weight(self) -> torch.Tensor:
        """The ``(out, in, kh, kw)`` kernel the pair computes (for checks)."""
        a, b = self.second.weight, self.first.weight  # (o, χ, ·, ·), (χ, i, ·, ·)
        o, i, kh, kw = self.weight_shape
        w = torch.einsum("orpq,rist->oipsqt", a, b)  # spatial taps combine per axis
        return w.reshape(o, i, a.shape[2] * b.shape[2], a.shape[3] * b.shape[3]).reshape(
            o, i, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}, chi={self.chi}"


def svd_params(shape: tuple[int, ...], cut: str, chi: int, bias: int) -> int:
    """Parameters of the factorised layer: the two factors plus ``bias`` entries."""
    return factor_params(shape, cut, chi) + bias


__all__ = ["CONV_CUTS", "LINEAR_CUTS", "FactorizedConv2d", "FactorizedLinear", "best_cut",
           "executable_cuts", "factor_params", "svd_params"]
