"""Downloads into the cache: SHA-256 verified, written atomically (no half file survives)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import InputError
from ..progress import progress_bar
from .registry import RemoteFile

TIMEOUT_S = 60
CHUNK = 1 << 20
USER_AGENT = "corranalysis (https://pypi.org/project/corranalysis)"


def cache_dir() -> Path:
    """The user cache: ``$CORRANALYSIS_CACHE`` or ``~/.cache/corranalysis``."""
    return Path(os.environ.get("CORRANALYSIS_CACHE") or Path.home() / ".cache" / "corranalysis")


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, out, name: str, progress: bool | None) -> str:
    """Stream ``url`` into the open file ``out``; the SHA-256 of what arrived.

    Raises on any network error, and when fewer bytes arrive than announced.
    """
    h = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        disable = True if progress is False else (False if progress else None)
        with progress_bar(total=total, unit="B", unit_scale=True, desc=f"download {name}",
                          disable=disable, leave=False) as bar:
            while block := resp.read(CHUNK):
                out.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
        if total is not None and got != total:
            raise http.client.IncompleteRead(b"", total - got)
    return h.hexdigest()


def download(remote: RemoteFile, folder: Path, progress: bool | None = None) -> Path:
    """Fetch ``remote`` into ``folder`` (trying its mirrors in turn) and verify its SHA-256.

    The bytes go to a temporary file beside the target, renamed into place only
    once the checksum matches; on any failure or interruption (Ctrl-C included)
    the temporary file is removed, so no half file survives. ``progress``: a
    progress bar (``None``: only on a terminal). Errors are :class:`InputError`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    failures = []
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=folder)
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _fetch(url, out, remote.name, progress)
            if digest != remote.sha256:
                failures.append(f"{url}: failed its checksum (SHA-256 {digest}, "
                                f"expected {remote.sha256})")
                continue
            os.replace(tmp_path, target)
            return target
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError,
                ValueError) as exc:
            failures.append(f"{url}: {exc or type(exc).__name__}")
        finally:
            tmp_path.unlink(missing_ok=True)
    raise InputError(f"download of {remote.name} failed, nothing was kept: "
                     + "; ".join(failures))
