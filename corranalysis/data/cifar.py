"""CIFAR-10/100 "python version": the tar archive or its extracted folder.

The batches are pickles. They are read through :class:`RestrictedUnpickler`,
which admits only the few globals the official files contain (numpy array
reconstruction), so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
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

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of the official CIFAR batches."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def load_batch(data: bytes, where: str) -> dict:
    """A CIFAR batch dict from pickle bytes, through the restricted unpickler."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"CIFAR batch {where!r} is refused: {exc}; only the official "
                         "CIFAR pickles (dicts of numpy arrays and lists) are loaded") from exc
    except (EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"CIFAR batch {where!r} is corrupted or truncated: {exc}") from exc
    if not isinstance(obj, dict):
        raise InputError(f"CIFAR batch {where!r} is not a dict (got {type(obj).__name__})")
    return obj


def _members(path: Path, dataset: str, names: list[str]) -> dict[str, bytes]:
    folder = FOLDERS[dataset]
    out: dict[str, bytes] = {}
    if path.is_dir():
        base = path / folder if (path / folder).is_dir() else path
        for name in names:
            f = base / name
            if not f.is_file():
                raise InputError(f"CIFAR folder {str(base)!r} lacks batch {name!r}")
            out[str(f)] = f.read_bytes()
        return out
    try:
        with tarfile.open(path, "r:*") as tar:
            for name in names:
                try:
                    member = tar.getmember(f"{folder}/{name}")
                except KeyError:
                    raise InputError(f"CIFAR archive {str(path)!r} lacks {folder}/{name}") from None
                fh = tar.extractfile(member)
                if fh is None:
                    raise InputError(f"CIFAR archive {str(path)!r}: {folder}/{name} is not a file")
                out[f"{path}:{folder}/{name}"] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"CIFAR archive {str(path)!r} is corrupted or truncated: {exc}") from exc
    return out


def read_cifar(path: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one split.

    ``path`` is the official tar archive or a folder holding the extracted batches.
    """
    images, labels = [], []
    for where, data in _members(path, dataset, SPLITS[dataset][split]).items():
        batch = load_batch(data, where)
        x = batch.get(b"data")
        y = batch.get(LABEL_KEYS[dataset])
        if not isinstance(x, np.ndarray) or y is None:
            raise InputError(f"CIFAR batch {where!r} lacks 'data' or "
                             f"{LABEL_KEYS[dataset].decode()!r}")
        y = np.asarray(y, dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
            raise InputError(f"CIFAR batch {where!r} has data {x.dtype}{x.shape} and "
                             f"{len(y)} labels; expected uint8 (N, 3072) and N labels")
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES[dataset]):
            raise InputError(f"CIFAR batch {where!r} has labels outside "
                             f"0..{NUM_CLASSES[dataset] - 1}")
        images.append(x.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)
