"""Finding a data set's files, loading it in memory, and batching it for training."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from .cifar import ARCHIVES, FOLDERS, read_cifar
from .download import cache_dir, download
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .registry import DatasetInfo, get_info

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SPLITS = ("train", "test")


def _candidates(info: DatasetInfo, data_dir) -> list[tuple[str, Path]]:
    out = []
    if data_dir is not None:
        out.append(("--data-dir", Path(data_dir)))
    if os.environ.get("CORRANALYSIS_DATA"):
        out.append(("$CORRANALYSIS_DATA", Path(os.environ["CORRANALYSIS_DATA"])))
    if info.debian_dir:
        out.append(("Debian package", Path(info.debian_dir)))
    out.append(("cache", cache_dir() / info.name))
    return out


def _idx_in(folder: Path, info: DatasetInfo) -> dict[str, Path] | None:
    for base in (folder, folder / info.name):
        found = {}
        for split in SPLITS:
            for stem in IDX_FILES[split]:
                for name in (stem + ".gz", stem):
                    if (base / name).is_file():
                        found[stem] = base / name
                        break
        if len(found) == 4:
            return found
    return None


def _cifar_in(folder: Path, info: DatasetInfo) -> Path | None:
    for base in (folder, folder / info.name):
        if (base / FOLDERS[info.name]).is_dir():
            return base / FOLDERS[info.name]
        if (base / ARCHIVES[info.name]).is_file():
            return base / ARCHIVES[info.name]
    return None


def locate(name: str, data_dir=None, download_missing: bool = True):
    """Where data set ``name`` is: ``--data-dir``, ``$CORRANALYSIS_DATA``, Debian, cache, download.

    Returns a dict of IDX paths (MNIST-like) or the CIFAR archive/folder path.
    """
    info = get_info(name)
    find = _idx_in if info.format == "idx" else _cifar_in
    searched = []
    for label, folder in _candidates(info, data_dir):
        hit = find(folder, info)
        if hit:
            return hit
        searched.append(f"{label} {str(folder)!r}")
    if download_missing:
        folder = cache_dir() / info.name
        for remote in info.files:
            download(remote, folder)
        hit = find(folder, info)
        if hit:
            return hit
    debian = " (or `apt-get install dataset-fashion-mnist`)" if info.debian_dir else ""
    raise InputError(
        f"data set {info.name!r} was not found (searched {'; '.join(searched)}). Provide it "
        f"one of three ways: pass --data-dir DIR (data_dir=) holding the official files; set "
        f"$CORRANALYSIS_DATA to such a folder{debian}; or allow the download into "
        f"{str(cache_dir() / info.name)!r} (download=True, needs internet)"
    )


def _subset(n: int, size: int | None, seed: int) -> np.ndarray | None:
    if size is None or size >= n:
        return None
    if size < 1:
        raise InputError(f"subset size {size} must be >= 1")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))


class ImageDataset(Dataset):
    """A data set split held in memory as uint8 tensors, normalised on access.

    ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``; ``__getitem__``
    gives a float32 image normalised by the data set's mean/std and its label.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo,
                 files: list[Path], checksum: str, augment: bool = False):
        self.images, self.labels, self.info = images, labels, info
        self.files, self.checksum, self.augment = files, checksum, augment
        self.mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` → float32 normalised."""
        return (images.float().div_(255.0) - self.mean) / self.std

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.normalise(self.images[i: i + 1])[0], int(self.labels[i])


def _checksum(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        inner = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                inner.update(block)
        h.update(inner.digest())
    return h.hexdigest()


def load_dataset(name: str, split: str = "train", *, data_dir=None, download: bool = True,
                 size: int | None = None, seed: int = 0) -> ImageDataset:
    """One split of a data set in memory; ``size`` takes a seeded random subset."""
    info = get_info(name)
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown; valid: {', '.join(SPLITS)}")
    where = locate(info.name, data_dir, download)
    if info.format == "idx":
        img_stem, lab_stem = IDX_FILES[split]
        files = [where[img_stem], where[lab_stem]]
        images = read_idx(files[0], IMAGES_MAGIC)[:, None]
        labels = read_idx(files[1], LABELS_MAGIC, info.num_classes).astype(np.int64)
        if len(images) != len(labels):
            raise InputError(f"data files {str(files[0])!r} and {str(files[1])!r} disagree: "
                             f"{len(images)} images, {len(labels)} labels")
    else:
        files = [where] if where.is_file() else sorted(p for p in where.iterdir() if p.is_file())
        images, labels = read_cifar(where, info.name, split)
    pick = _subset(len(labels), size, seed)
    if pick is not None:
        images, labels = images[pick], labels[pick]
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)),
                        torch.from_numpy(np.ascontiguousarray(labels)), info, files,
                        _checksum(files), augment=(split == "train" and info.format != "idx"))


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR training augmentation on a float batch: random crop with padding, h-flip."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(x.shape[1])[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    flip = torch.rand(b, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class BatchLoader:
    """Batches of an in-memory :class:`ImageDataset`: ``(x float32 [B,C,H,W], y int64 [B])``.

    Shuffled with :attr:`generator` (seeded) when ``shuffle``; fixed order otherwise.
    Whole batches are normalised at once, so a 2-core CPU is not held up by
    per-item Python work; ``pin_memory`` for GPU transfers.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pin_memory: bool = False, drop_last: bool = False):
        if batch_size < 1:
            raise InputError(f"batch size {batch_size} must be >= 1")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.pin_memory, self.drop_last = pin_memory, drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.dataset.normalise(self.dataset.images[idx])
            if self.dataset.augment and self.shuffle:
                x = augment_batch(x, self.generator)
            y = self.dataset.labels[idx]
            if self.pin_memory:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y


def make_loaders(name: str, *, batch_size: int = 256, eval_batch_size: int = 1000,
                 data_dir=None, train_size: int | None = None, test_size: int | None = None,
                 seed: int = 0, device="cpu", download: bool = True):
    """(train loader shuffled with a seeded generator, test loader in fixed order, info)."""
    info = get_info(name)
    train = load_dataset(info.name, "train", data_dir=data_dir, download=download,
                         size=train_size, seed=seed)
    test = load_dataset(info.name, "test", data_dir=data_dir, download=download,
                        size=test_size, seed=seed)
    pin = str(device).startswith("cuda") or (str(device) == "auto" and torch.cuda.is_available())
    return (BatchLoader(train, batch_size, shuffle=True, seed=seed, pin_memory=pin),
            BatchLoader(test, eval_batch_size, shuffle=False, pin_memory=pin), info)


def dataset_checksum(name: str, data_dir=None) -> str:
    """SHA-256 over the files of both splits of data set ``name`` (as found)."""
    info = get_info(name)
    where = locate(info.name, data_dir, download_missing=False)
    if info.format == "idx":
        files = [where[stem] for split in SPLITS for stem in IDX_FILES[split]]
    else:
        files = [where] if where.is_file() else sorted(p for p in where.iterdir() if p.is_file())
    return _checksum(files)
