"""CIFAR-10/100 "python version": the tar archive or its extracted folder.

The batches are pickles. They are read through :class:`RestrictedUnpickler`,
which admits only the few globals the official files contain (numpy array
reconstruction), so a crafted file cannot run code.
"""

from __future__ import annotations

import _codecs
import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
SPLITS = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
LABEL_KEYS = {"cifar10": b"labels", "cifar100": b"fine_labels"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
PIXELS = 3 * 32 * 32


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles of numpy arrays use it, and for nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return _codecs.encode(text, "latin1", errors)


# (module, name) → what it resolves to. The official batches (pickled by Python 2) need
# numpy's _reconstruct, ndarray and dtype; the rest covers the same layout pickled by
# Python 3 (protocol 2: _codecs.encode of latin-1 text; protocol 5: _frombuffer).
_ALLOWED: dict[tuple[str, str], tuple[str, str] | object] = {}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = ("numpy._core.multiarray", "_reconstruct")
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = ("numpy._core.multiarray", "scalar")
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = ("numpy._core.numeric", "_frombuffer")
_ALLOWED[("numpy", "ndarray")] = ("numpy", "ndarray")
_ALLOWED[("numpy", "dtype")] = ("numpy", "dtype")
_ALLOWED[("_codecs", "encode")] = _latin1_encode


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of the official CIFAR batches.

    Anything else (``os.system``, ``builtins.eval``, ...) raises
    ``pickle.UnpicklingError`` before it can be called.
    """

    def find_class(self, module: str, name: str):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if callable(target):
            return target
        return super().find_class(*target)  # type: ignore[misc]


def load_batch(data: bytes, where: str) -> dict:
    """A CIFAR batch dict from pickle bytes, through the restricted unpickler."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise InputError(f"CIFAR batch {where!r} is refused: {exc}; only the official "
                             "CIFAR pickles (dicts of numpy arrays and lists) are loaded") from exc
        raise InputError(f"CIFAR batch {where!r} is corrupted or truncated: {exc}") from exc
    except Exception as exc:  # any malformed pickle: EOFError, ValueError, MemoryError, ...
        raise InputError(f"CIFAR batch {where!r} is corrupted or truncated: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise InputError(f"CIFAR batch {where!r} is not a dict (got {type(obj).__name__})")
    return obj


def batch_folder(path: Path, dataset: str) -> Path | None:
    """The folder holding the batches when ``path`` is (or holds) the extracted folder."""
    for base in (path / FOLDERS[dataset], path):
        if base.is_dir() and all((base / n).is_file() for s in SPLITS[dataset].values()
                                 for n in s):
            return base
    return None


def read_members(path: Path, dataset: str, names: list[str]) -> list[tuple[str, str, bytes]]:
    """``(name, where, bytes)`` of batches ``names`` from the archive or extracted folder."""
    folder = FOLDERS[dataset]
    out = []
    if path.is_dir():
        base = batch_folder(path, dataset) or path
        for name in names:
            f = base / name
            if not f.is_file():
                raise InputError(f"CIFAR folder {str(base)!r} lacks batch {name!r}")
            out.append((name, str(f), f.read_bytes()))
        return out
    wanted = {f"{folder}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:  # one forward pass: no seeking back in gzip
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    raise InputError(f"CIFAR archive {str(path)!r}: {member.name} is not a file")
                found[name] = fh.read()
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"CIFAR archive {str(path)!r} is corrupted or truncated: {exc}") from exc
    for name in names:
        if name not in found:
            raise InputError(f"CIFAR archive {str(path)!r} lacks {folder}/{name}; "
                             f"expected the official {ARCHIVES[dataset]}")
        out.append((name, f"{path}:{folder}/{name}", found[name]))
    return out


def parse_batch(data: bytes, where: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one pickled batch."""
    batch = load_batch(data, where)
    key = LABEL_KEYS[dataset]
    x, y = batch.get(b"data"), batch.get(key)
    if not isinstance(x, np.ndarray) or y is None:
        raise InputError(f"CIFAR batch {where!r} lacks 'data' or {key.decode()!r}")
    try:
        y = np.asarray(y, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"CIFAR batch {where!r}: {key.decode()!r} is not a list of "
                         "integers") from exc
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXELS or len(y) != len(x):
        raise InputError(f"CIFAR batch {where!r} has data {x.dtype}{x.shape} and "
                         f"{len(y)} labels; expected uint8 (N, {PIXELS}) and N labels")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES[dataset]):
        raise InputError(f"CIFAR batch {where!r} has labels outside "
                         f"0..{NUM_CLASSES[dataset] - 1}")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar_split(path: Path, dataset: str, split: str
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Images, labels and ``(batch name, SHA-256 of its bytes)`` of one split.

    The digests are those of the pickled batches, the same for the archive and
    for its extracted folder.
    """
    images, labels, digests = [], [], []
    for name, where, data in read_members(path, dataset, SPLITS[dataset][split]):
        x, y = parse_batch(data, where, dataset)
        images.append(x)
        labels.append(y)
        digests.append((name, hashlib.sha256(data).hexdigest()))
    return np.concatenate(images), np.concatenate(labels), digests


def read_cifar(path: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one split.

    ``path`` is the official tar archive or a folder holding the extracted batches.
    """
    images, labels, _ = read_cifar_split(path, dataset, split)
    return images, labels
