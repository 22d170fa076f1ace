"""Checkpoints: load a state_dict safely and fit it into a model, naming every mismatch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import InputError
from .kernels import load_checkpoint

__all__ = ["load_state_dict", "load_into", "check_fits"]

_SHOW = 5  # how many names of each kind of mismatch an error message lists


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict stored at ``path`` (loaded on the CPU with ``weights_only=True``).

    Accepts a plain state_dict or ``{"state_dict": ...}`` / ``{"model": ...}`` (so a training
    ``checkpoint.pt`` works too). A missing file, an unreadable file, or a pickle that needs
    arbitrary code raises :class:`InputError`; nothing is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist; give the path of a .pt file")
    return load_checkpoint(path)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return f"{len(names)} ({shown}{more})"


def check_fits(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Raise :class:`InputError` unless ``state_dict`` has exactly ``model``'s keys and shapes.

    The message names missing keys, unexpected keys and shape mismatches (the first few of
    each, with counts).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches {_listing(shapes)}")
    what = f"checkpoint {source!r}" if source else "state_dict"
    raise InputError(
        f"{what} does not fit model {type(model).__name__}: " + "; ".join(parts)
        + " — check the model name, in_channels and num_classes (data set) it was trained with"
    )


def load_into(model: nn.Module,
              path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a checkpoint (path or state_dict) into ``model`` strictly; return ``model``.

    Keys or shapes that do not fit raise :class:`InputError` (see :func:`check_fits`) before
    any weight is changed. Tensors are copied onto the model's own device and dtype.
    """
    if isinstance(path_or_state_dict, Mapping):
        state, source = dict(path_or_state_dict), ""
    else:
        state, source = load_state_dict(path_or_state_dict), str(path_or_state_dict)
    check_fits(model, state, source)
    model.load_state_dict(state, strict=True)
    return model
