"""Provenance attributes recorded on every result: versions, git commit, device, seed.

Two checksums name what a result was made from, each with one meaning everywhere (run.json,
sweep.nc, recovery.nc, the report):

* ``model_sha256``: the SHA-256 of the weight file's bytes (:func:`file_sha256`), what
  ``sha256sum model.pt`` prints; recorded where the model came from a file;
* ``params_sha256``: the SHA-256 of the model's tensors (:func:`params_sha256`), the same for
  the same weights in any file format; what tells whether two results used the same weights.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("corranalysis", "torch", "numpy", "scipy", "xarray", "quimb", "h5netcdf", "tensorly")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str | Path | None = None) -> str:
    """The git commit of the working tree holding ``path`` (this package by default), or ''."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def params_sha256(model: Any) -> str:
    """SHA-256 of a model's state: the name, then the bytes, of every tensor of its
    ``state_dict()`` in order (parameters and buffers). Equal for equal weights whatever
    file they were read from; recorded as ``params_sha256`` (``model_sha256`` is the weight
    file's checksum, :func:`file_sha256`)."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def provenance(**extra: object) -> dict[str, str]:
    """Flat string attributes for an xarray result: versions, git commit, time and ``extra``.

    Non-string values in ``extra`` are JSON-encoded so the attributes survive netCDF.
    """
    attrs: dict[str, str] = {f"version_{k}": v for k, v in package_versions().items()}
    attrs["git_commit"] = git_commit()
    attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    for key, value in extra.items():
        attrs[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    return attrs
