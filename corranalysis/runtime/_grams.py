"""Input Gram matrices of layers: what a layer sees on real data, for data-aware measures.

A layer that is linear in its kernel computes, per output position, ``W_mat @ p`` where
``W_mat`` is the kernel matricised ``(out, D)`` across the cut ``out|rest`` and ``p`` a
*patch* of its input of length D (a Linear layer's input row, D = in; a Conv2d's
receptive field, D = in·kh·kw, in the kernel's leg order). The *input Gram*
``C = Σ p pᵀ`` (float64, ``(D, D)``) over every patch of the data then gives the output
error of any change ΔW of the kernel exactly, without another pass over the data::

    ‖ΔW ⋆ X‖² = tr(ΔW_mat C ΔW_matᵀ)

and the data-aware truncation whitens the kernel with ``C``
(:func:`corranalysis.truncation.truncate` with ``gram=``). Supported: Linear, Conv1d
and Conv2d with ``groups=1`` and zero padding; other layers have no Gram.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_device
from ..errors import InputError
from ._evaluate import batches

__all__ = ["gram_supported", "input_grams", "output_error"]


def gram_supported(module: nn.Module) -> bool:
    """Whether :func:`input_grams` can describe ``module`` (Linear, or Conv1d/Conv2d with
    one group and zero padding)."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1
            and module.padding_mode == "zeros" and isinstance(module.padding, tuple))


def _patches(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The patches ``(N, D)`` that ``module`` multiplies by its matricised kernel."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(-2)
        ks, st, pad, dil = ((1, *module.kernel_size), (1, *module.stride),
                            (0, *module.padding), (1, *module.dilation))
    else:
        ks, st, pad, dil = module.kernel_size, module.stride, module.padding, module.dilation
    cols = F.unfold(x, ks, dilation=dil, padding=pad, stride=st)  # (B, D, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


@torch.no_grad()
def input_grams(model: nn.Module, data: Iterable, layers: Sequence[str],
                device: str | torch.device = "auto",
                max_batches: int | None = None) -> dict[str, torch.Tensor]:
    """The input Gram ``C = Σ p pᵀ`` (float64 on the CPU, ``(D, D)``) of each of ``layers``
    that :func:`gram_supported`, over the batches of ``data`` (the first ``max_batches``).

    One forward pass in eval mode with hooks; weights are not changed. Layers that are
    not supported are left out of the result.
    """
    dev = resolve_device(device)
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise InputError(f"layers {unknown} are not in the model")
    wanted = [n for n in layers if gram_supported(modules[n])]
    grams: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, _out: object) -> None:
            p = _patches(module, args[0].detach()).to(torch.float64)
            g = (p.T @ p).cpu()
            grams[name] = grams[name] + g if name in grams else g
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in wanted]
    was_training = model.training
    model.to(dev).eval()
    try:
        for b, (x, _) in enumerate(batches(data, dev)):
            if max_batches is not None and b >= max_batches:
                break
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return grams


def output_error(weight: torch.Tensor, new_weight: torch.Tensor, gram: torch.Tensor,
                 transposed: bool = False) -> float:
    """‖(W̃ − W) ⋆ X‖² / ‖W ⋆ X‖² from the input Gram of X (dimensionless, ≥ 0).

    ``weight``/``new_weight``: the kernel before and after, ``(out, ...)``; ``gram``:
    :func:`input_grams`' matrix for the layer. NaN when the layer sees no input energy.
    """
    if transposed:
        return float("nan")
    w = weight.detach().reshape(weight.shape[0], -1).to(torch.float64).cpu()
    dw = new_weight.detach().reshape(w.shape).to(torch.float64).cpu() - w
    den = float(((w @ gram) * w).sum())
    if not den > 0:
        return float("nan")
    return max(0.0, float(((dw @ gram) * dw).sum()) / den)

