"""Device selection: ``"auto"`` picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``)."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: CUDA is not available here; use 'cpu' or 'auto'")
        return torch.device(name)
    raise InputError(f"device {device!r} is unknown; valid: {', '.join(DEVICES)} (or 'cuda:N')")
