"""Save and load tensorized models: the spec, the base model's recipe and the state dict.

The file is a plain ``torch.save`` dict (loadable with ``weights_only=True``)::

    {"format": "corranalysis.tensorized/1", "spec": {...}, "model": {"name", "in_channels",
     "num_classes", "image_size"}, "state_dict": {...}, "table": [...]}

``load`` rebuilds ``create(name)``, runs ``apply(..., init=False)`` and loads the state dict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..io import atomic_path
from ..models import create
from .apply import apply
from .spec import validate_spec

FORMAT = "corranalysis.tensorized/1"


def save(
    path: str | os.PathLike,
    model: nn.Module,
    spec: dict[str, Any],
    *,
    model_name: str | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a tensorized model atomically; ``model_name`` etc. let :func:`load` rebuild it."""
    payload = {
        "format": FORMAT,
        "spec": validate_spec(spec),
        "model": {"name": model_name, "in_channels": in_channels, "num_classes": num_classes,
                  "image_size": image_size},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load(
    path: str | os.PathLike, base: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, spec)`` from a file written by :func:`save` (``base``: the untensorized model,
    else rebuilt with ``corranalysis.models.create`` from the recorded name and sizes)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tensorized checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user input problem
        raise InputError(f"tensorized checkpoint {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f"{str(path)!r} is not a tensorized checkpoint (written by corranalysis tensorize)"
        )
    if base is None:
        info = data["model"]
        if not info.get("name"):
            raise InputError(f"{str(path)!r} records no model name; pass the base model")
        base = create(info["name"], info["in_channels"], info["num_classes"],
                      image_size=info.get("image_size"))
    model, _ = apply(base, data["spec"], init=False)
    model.load_state_dict(data["state_dict"])
    return model, data["spec"]
