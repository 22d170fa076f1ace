"""Helpers shared by CLI verbs."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import InputError


def cut_labels(items: list[str]) -> str | list[str]:
    """``--cuts`` values (repeatable, or ';'-separated) as ``"all"``/``"contiguous"`` or labels."""
    labels = [c.strip() for item in items for c in item.split(";") if c.strip()]
    if len(labels) == 1 and labels[0] in ("all", "contiguous"):
        return labels[0]
    return labels or "all"


def checkpoint_dims(state_dict: dict) -> tuple[int, int]:
    """(in_channels, num_classes) read off a state_dict: first kernel's ``in``, last's ``out``."""
    kernels = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim >= 2]
    if not kernels:
        raise InputError("checkpoint holds no kernel (no '*.weight' with >= 2 dims)")
    return int(kernels[0].shape[1]), int(kernels[-1].shape[0])


def model_for_checkpoint(spec: str, checkpoint: Path) -> nn.Module:
    """Build model ``spec`` sized for ``checkpoint`` (run.json beside it, else its shapes)."""
    from ..kernels import load_checkpoint
    from ..models import resolve_model

    run_json = Path(checkpoint).parent / "run.json"
    dims = None
    if run_json.is_file():
        try:
            run = json.loads(run_json.read_text())
            dims = int(run["in_channels"]), int(run["num_classes"])
        except (KeyError, ValueError, TypeError):
            dims = None
    if dims is None:
        dims = checkpoint_dims(load_checkpoint(checkpoint))
    return resolve_model(spec, in_channels=dims[0], num_classes=dims[1])
