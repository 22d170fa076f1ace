"""IDX files (MNIST, Fashion-MNIST), gzipped or not, with every header checked."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it is gzip data; errors name the file."""
    try:
        raw = Path(path).read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"data file {str(path)!r} is corrupted or truncated (broken gzip "
                         f"or unreadable): {exc}") from exc


def parse_idx(data: bytes, where: str, magic: int, num_classes: int | None = None) -> np.ndarray:
    """Array of IDX bytes: uint8 images ``(N, H, W)`` or labels ``(N,)``.

    Checks the magic number, that the byte count matches the header, and (labels)
    that every label is in ``[0, num_classes)``. ``where`` names the file in errors.
    """
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < header:
        raise InputError(f"data file {where!r} is truncated: {len(data)} bytes, "
                         f"shorter than the {header}-byte header of an IDX {kind} file")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise InputError(f"data file {where!r} is not an IDX {kind} file: magic number "
                         f"0x{found:08x}, expected 0x{magic:08x}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise InputError(f"data file {where!r} is truncated or corrupted: its header says "
                         f"{'x'.join(map(str, dims))} = {expected} bytes of data, "
                         f"found {len(data) - header}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    if magic == LABELS_MAGIC and num_classes is not None and arr.size and arr.max() >= num_classes:
        raise InputError(f"data file {where!r} has label {int(arr.max())} outside "
                         f"0..{num_classes - 1}")
    return arr


def read_idx(path: Path, magic: int, num_classes: int | None = None) -> np.ndarray:
    """Array of an IDX file (gzipped or not); see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), str(path), magic, num_classes)


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write a uint8 array as an IDX file (images if 3-D, labels if 1-D).

    Gzipped when ``compress`` (default: when the name ends in ``.gz``). For tests
    and for users who build their own data in this format.
    """
    array = np.asarray(array)
    if array.ndim not in (1, 3) or (array.size and (array.min() < 0 or array.max() > 255)):
        raise InputError(f"IDX array for {str(path)!r} must be 1-D labels or 3-D (N, H, W) "
                         f"images of values 0..255; got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    Path(path).write_bytes(payload)
    return Path(path)
