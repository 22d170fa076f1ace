"""Downloads into the cache: SHA-256 verified, written atomically (no half file survives)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import InputError
from .registry import RemoteFile

TIMEOUT_S = 60


def cache_dir() -> Path:
    """The user cache: ``$CORRANALYSIS_CACHE`` or ``~/.cache/corranalysis``."""
    return Path(os.environ.get("CORRANALYSIS_CACHE", Path.home() / ".cache" / "corranalysis"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download(remote: RemoteFile, folder: Path) -> Path:
    """Fetch ``remote`` into ``folder``; verify its SHA-256; rename into place only then."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    fd, tmp = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=folder)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url,
                                                                timeout=TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        digest = sha256_of(tmp_path)
        if digest != remote.sha256:
            raise InputError(f"download of {remote.url} failed its checksum: SHA-256 {digest}, "
                             f"expected {remote.sha256}; nothing was kept")
        os.replace(tmp_path, target)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise InputError(f"download of {remote.url} failed: {exc}") from exc
    finally:
        tmp_path.unlink(missing_ok=True)
