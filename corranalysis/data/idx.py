"""IDX files (MNIST, Fashion-MNIST), gzipped or not, with every header checked."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it ends in ``.gz``; errors name the file."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"data file {str(path)!r} is corrupted or truncated: {exc}") from exc


def read_idx(path: Path, magic: int, num_classes: int | None = None) -> np.ndarray:
    """Array of an IDX file: uint8 images ``(N, H, W)`` or labels ``(N,)``.

    Checks the magic number, that the byte count matches the header, and (labels)
    that every label is in ``[0, num_classes)``.
    """
    data = read_bytes(path)
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"data file {str(path)!r} is truncated: {len(data)} bytes, "
                         f"shorter than its {header}-byte IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise InputError(f"data file {str(path)!r} is not an IDX {kind} file: magic number "
                         f"0x{found:08x}, expected 0x{magic:08x}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise InputError(f"data file {str(path)!r} is truncated or corrupted: header says "
                         f"{dims} = {expected} bytes of data, found {len(data) - header}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    if magic == LABELS_MAGIC and num_classes is not None and arr.size and arr.max() >= num_classes:
        raise InputError(f"data file {str(path)!r} has label {int(arr.max())} outside "
                         f"0..{num_classes - 1}")
    return arr


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write a uint8 array as an IDX file (images if 3-D, labels if 1-D); for tests and users."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)
    return Path(path)
