"""Small data sets in the official file formats, for tests (IDX, CIFAR python pickles), and
where the real Fashion-MNIST is (Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.data import write_idx

#: Debian's Fashion-MNIST, the real data the tests train on where it is installed
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not DEBIAN.is_dir(), reason="dataset-fashion-mnist absent")

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_idx_set(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True,
                 seed: int = 0, size: int = 28) -> dict[str, np.ndarray]:
    """The four MNIST-layout IDX files (gzipped when ``gz``) of random images and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_STEMS[0]: rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        IDX_STEMS[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_STEMS[2]: rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        IDX_STEMS[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arr)
    return arrays


def cifar_batch(n: int, classes: int, rng: np.random.Generator, cifar100: bool = False) -> dict:
    """One batch dict with the official keys and types (bytes keys, uint8 (N, 3072) data)."""
    batch = {b"batch_label": b"testing batch 1 of 1",
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [b"img_%04d.png" % i for i in range(n)]}
    if cifar100:
        batch[b"fine_labels"] = rng.integers(0, classes, n).tolist()
        batch[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
    else:
        batch[b"labels"] = rng.integers(0, classes, n).tolist()
    return batch


def cifar_batches(dataset: str = "cifar10", n: int = 4, seed: int = 0) -> dict[str, object]:
    """The official member files: CIFAR-10 data_batch_1..5, test_batch, batches.meta;
    CIFAR-100 train, test, meta."""
    rng = np.random.default_rng(seed)
    if dataset == "cifar10":
        out: dict[str, object] = {f"data_batch_{i}": cifar_batch(n, 10, rng) for i in range(1, 6)}
        out["test_batch"] = cifar_batch(n, 10, rng)
        out["batches.meta"] = {b"label_names": [b"class%d" % i for i in range(10)],
                               b"num_cases_per_batch": n, b"num_vis": 3072}
    else:
        out = {"train": cifar_batch(n, 100, rng, True), "test": cifar_batch(n, 100, rng, True),
               "meta": {b"fine_label_names": [b"f%d" % i for i in range(100)],
                        b"coarse_label_names": [b"c%d" % i for i in range(20)]}}
    return out


FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def write_cifar_tar(path: Path, batches: dict[str, object], dataset: str = "cifar10",
                    protocol: int = 2, raw: dict[str, bytes] | None = None) -> Path:
    """The official archive layout: ``<folder>/<member>`` pickles in a ``.tar.gz``.

    ``raw`` members are written as given (crafted or damaged pickles)."""
    members = {k: pickle.dumps(v, protocol=protocol) for k, v in batches.items()}
    members.update(raw or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{FOLDERS[dataset]}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class Interrupted(Exception):
    """Stands in for a kill during training."""


class KillingLoader(DataLoader):
    """A DataLoader that dies (raises :class:`Interrupted`) when its ``kill_at``-th pass
    starts (never when ``kill_at`` is None)."""

    def __init__(self, *args, kill_at: int | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kill_at, self.calls = kill_at, 0

    def __iter__(self):
        self.calls += 1
        if self.calls == self.kill_at:
            raise Interrupted
        return super().__iter__()


def diagonal_pixels(n: int, seed: int, side: int = 8, classes: int = 4) -> TensorDataset:
    """``n`` noisy ``(1, side, side)`` images whose class ``y`` is a bright pixel at
    ``(y, y)``: learnable in a few steps, for tests that train."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, 1, side, side, generator=g) * 0.5
    x[torch.arange(n), 0, y, y] += 3.0
    return TensorDataset(x, y)
