"""Readers of weight files (``.pt`` state dicts, ``.safetensors``, ``.npz``) and fitting a
state_dict into a model, naming every mismatch. Nothing in a file is ever executed."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import InputError

__all__ = ["load_checkpoint", "load_state_dict", "load_into", "check_fits", "read_arrays"]

_SHOW = 5  # how many names of each kind of mismatch an error message lists


def _check_not_empty(path: Path, what: str) -> None:
    """InputError when ``path`` is an empty file (its readers give no reason for it)."""
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"{what} {str(path)!r} cannot be read: the file is empty")


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line, also for exceptions without a message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines:
        text = lines[0] if len(lines[0]) <= 200 else lines[0][:197] + "..."
        if isinstance(exc, (OSError, ValueError, RuntimeError, EOFError)):
            return text
        return f"the file is damaged or not of this format ({type(exc).__name__}: {text})"
    if isinstance(exc, EOFError):
        return "the file ends early (truncated or not of this format)"
    return f"the file is damaged or not of this format ({type(exc).__name__})"


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a torch checkpoint, loaded with ``weights_only=True``.

    Accepts a plain state_dict or ``{"state_dict": ...}`` / ``{"model": ...}``. A
    pickle that needs arbitrary code is refused, never executed.
    """
    path = Path(path)
    _check_not_empty(path, "checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = [line for line in str(exc).splitlines() if "GLOBAL" in line]
        if detail:
            raise InputError(
                f"checkpoint {str(path)!r} is refused: it needs arbitrary code to load "
                f"({detail[0].strip()}); only tensors and plain containers are loaded "
                "(torch.load weights_only=True)"
            ) from exc
        raise InputError(f"checkpoint {str(path)!r} cannot be read: not a torch "
                         "checkpoint or corrupted") from exc
    except Exception as exc:  # a damaged file fails anywhere (zip, unpickler, tensor builders)
        raise InputError(f"checkpoint {str(path)!r} cannot be read: {_reason(exc)}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and obj and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise InputError(
            f"checkpoint {str(path)!r} is not a state_dict: expected a mapping of parameter "
            "names to tensors (or {'state_dict': ...}), got " + type(obj).__name__
        )
    return dict(obj)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    _check_not_empty(path, ".npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a damaged file fails anywhere (zip, zlib, array header)
        raise InputError(f".npz file {str(path)!r} cannot be read: {_reason(exc)}") from exc


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    _check_not_empty(path, ".safetensors file")
    try:
        return {k: v for k, v in load_file(str(path)).items()}
    except Exception as exc:  # SafetensorError, or a damaged file failing elsewhere
        raise InputError(f".safetensors file {str(path)!r} cannot be read: {_reason(exc)}"
                         ) from exc


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


def read_arrays(source: str | os.PathLike) -> tuple[dict[str, object], bool]:
    """The arrays of a weight file and whether they form a state_dict.

    ``.npz``: every array is a kernel (``False``); ``.safetensors`` and anything else (a torch
    checkpoint) are state dicts (``True``). InputError for a missing or unreadable file.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"source {str(path)!r} does not exist")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise InputError(f"source {str(path)!r} is not a readable file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path), False
    if suffix == ".safetensors":
        return _load_safetensors(path), True
    return load_checkpoint(path), True


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
