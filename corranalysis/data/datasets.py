"""A data set split in memory (uint8 or float tensors, normalised on access) and its checksum."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import InputError
from .augment import augment_batch
from .cifar import SPLITS as CIFAR_SPLITS
from .cifar import read_cifar_split, read_members
from .idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_bytes
from .locate import locate
from .registry import IDX_NAMES, DatasetInfo, Source, get_info, open_source
from .spec import parse_spec

SPLITS = ("train", "test")
IDX_FILES = {"train": IDX_NAMES[:2], "test": IDX_NAMES[2:]}

# SHA-256 of file contents already read this session: (path, size, mtime_ns, member) → hex.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


def _key(path: Path, member: str = "") -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, member)


def combine(digests: list[tuple[str, str]]) -> str:
    """One SHA-256 over ``(name, sha256)`` pairs, in the order given."""
    return hashlib.sha256("".join(f"{n} {d}\n" for n, d in digests).encode()).hexdigest()


class ImageDataset(Dataset):
    """One split held in memory, normalised on access.

    ``images`` uint8 ``(N, C, H, W)`` (pixels 0..255, scaled to [0, 1] before
    normalising) or float32 (values as given); ``labels`` int64 ``(N,)``; ``info`` the
    :class:`DatasetInfo`; ``files`` the paths read; ``checksum`` the SHA-256 over the
    contents of the files read (gunzipped IDX, pickled CIFAR batches: a re-compressed
    or extracted copy of the same data has the same checksum). ``__getitem__`` gives
    ``(float32 (C, H, W) normalised by the data set's mean/std, int label)``, randomly
    cropped and flipped first when ``augment`` (CIFAR training split).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo,
                 files: list[Path] | None = None, checksum: str = "", augment: bool = False,
                 split: str = "train"):
        if (images.dtype not in (torch.uint8, torch.float32) or images.ndim != 4
                or labels.shape != images.shape[:1]):
            raise InputError(f"data set {info.name!r}: images must be uint8 or float32 "
                             f"(N, C, H, W) and labels (N,); got {tuple(images.shape)} "
                             f"{images.dtype} and {tuple(labels.shape)}")
        self.images, self.labels, self.info = images, labels.long(), info
        self.files, self.checksum = list(files or []), checksum
        self.augment, self.split = augment, split
        self.mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
        pixel = 255.0 if images.dtype == torch.uint8 else 1.0
        self._scale = 1.0 / (pixel * self.std)  # (x / pixel − mean) / std = x · scale + shift
        self._shift = -self.mean / self.std

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, augment={self.augment})")

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` in 0..255 → float32 ``(x / 255 − mean) / std``; float32
        images → ``(x − mean) / std`` (a new tensor: ``images`` is never changed)."""
        scale, shift = self._scale.to(images.device), self._shift.to(images.device)
        if images.dtype == torch.uint8:
            return images.float().mul_(scale).add_(shift)
        return images.float() * scale + shift

    def subset(self, pick: np.ndarray | None) -> ImageDataset:
        """The images at the indices ``pick`` (None: self), as a data set of the same kind."""
        if pick is None:
            return self
        index = torch.from_numpy(np.asarray(pick, dtype=np.int64))
        return ImageDataset(self.images[index], self.labels[index], self.info, self.files,
                            self.checksum, augment=self.augment, split=self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i: i + 1] if i >= 0 else self.images[i:][:1]
        if not len(x):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        if self.augment:
            x = augment_batch(x)
        return self.normalise(x)[0], int(self.labels[i])


def _subset(n: int, size: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random subset of ``size`` out of ``n`` (None: all)."""
    if size is None:
        return None
    if int(size) != size or size < 1:
        raise InputError(f"subset size {size!r} must be a whole number >= 1 (or None for all)")
    if size >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False))


def _read_idx_file(path: Path, magic: int, num_classes: int | None) -> np.ndarray:
    data = read_bytes(path)
    _DIGESTS[_key(path)] = hashlib.sha256(data).hexdigest()
    return parse_idx(data, str(path), magic, num_classes)


def _idx_digest(path: Path) -> str:
    key = _key(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(read_bytes(path)).hexdigest()
    return _DIGESTS[key]


def _cifar_key(where: Path, member: str) -> tuple[str, int, int, str]:
    return _key(where if where.is_file() else where / member, member)


def _cifar_digests(where: Path, name: str, split: str) -> list[tuple[str, str]]:
    names = CIFAR_SPLITS[name][split]
    keys = [_cifar_key(where, n) for n in names]
    if any(k not in _DIGESTS for k in keys):
        for key, (_, _, data) in zip(keys, read_members(where, name, names), strict=True):
            _DIGESTS[key] = hashlib.sha256(data).hexdigest()
    return [(n, _DIGESTS[k]) for n, k in zip(names, keys, strict=True)]


def _files(where: dict[str, Path] | Path, info: DatasetInfo, split: str) -> list[Path]:
    if isinstance(where, dict):
        return [where[stem] for stem in IDX_FILES[split]]
    if where.is_file():
        return [where]
    return [where / n for n in CIFAR_SPLITS[info.name][split]]


def load_dataset(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None,
                 download: bool = True, size: int | None = None, seed: int = 0,
                 augment: bool | None = None) -> ImageDataset:
    """One split (``"train"`` or ``"test"``) of data set ``name`` in memory.

    ``size`` takes a seeded random subset (the same for the same ``seed``, kept in
    file order). ``augment`` (default: the CIFAR training split) turns on random
    crop 32 with padding 4 and horizontal flips. Files are found as :func:`locate` says.

    ``name`` may also be a spec of your own data (``imagefolder:PATH``, ``PATH.npz``,
    ``package.module:factory``; see :mod:`corranalysis.data.sources`): its split is an
    :class:`ImageDataset` (image folders, ``.npz``, a factory's test split) or the factory's
    own training Dataset, checked.
    """
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown; valid: {', '.join(SPLITS)}")
    spec = parse_spec(name)
    if spec.kind != "builtin":
        return source_split(open_source(spec), split, size, seed, augment)
    info = get_info(name)
    where = locate(info.name, data_dir, download)
    files = _files(where, info, split)
    if isinstance(where, dict):
        images = _read_idx_file(files[0], IMAGES_MAGIC, None)[:, None]
        labels = _read_idx_file(files[1], LABELS_MAGIC, info.num_classes).astype(np.int64)
        if len(images) != len(labels):
            raise InputError(f"data files {str(files[0])!r} and {str(files[1])!r} disagree: "
                             f"{len(images)} images, {len(labels)} labels")
        digests = [(stem, _idx_digest(f)) for stem, f in zip(IDX_FILES[split], files,
                                                             strict=True)]
    else:
        images, labels, digests = read_cifar_split(where, info.name, split)
        for member, digest in digests:
            _DIGESTS[_cifar_key(where, member)] = digest
    if images.shape[1:] != (info.in_channels, info.image_size, info.image_size):
        raise InputError(f"data set {info.name!r} in {str(files[0])!r} has images of shape "
                         f"{images.shape[1:]}, expected "
                         f"{(info.in_channels, info.image_size, info.image_size)}")
    pick = _subset(len(labels), size, seed)
    if pick is not None:
        images, labels = images[pick], labels[pick]
    if augment is None:
        augment = split == "train" and info.format != "idx"
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)),
                        torch.from_numpy(np.ascontiguousarray(labels)), info, files,
                        combine(digests), augment=augment, split=split)


def source_split(source: Source, split: str, size: int | None, seed: int,
                 augment: bool | None) -> Dataset:
    """Split ``split`` of a loaded spec's data, subset and augmented as asked."""
    data = source.train if split == "train" else source.test
    pick = _subset(len(data), size, seed)
    if isinstance(data, ImageDataset):
        data = data.subset(pick)
        if augment is not None and augment != data.augment:
            data = ImageDataset(data.images, data.labels, data.info, data.files,
                                data.checksum, augment=augment, split=data.split)
        return data
    if augment:
        raise InputError(f"data set {source.info.name!r}: augment=True applies to images "
                         "held in memory; augment in your factory's Dataset instead")
    return data if pick is None else Subset(data, pick.tolist())


def dataset_checksum(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 identifying data set ``name`` as found (both splits, train then test).

    Computed over the file contents (gunzipped IDX, pickled CIFAR batches), so the
    official download, Debian's re-compressed copy and an extracted CIFAR folder agree.
    Never downloads; contents already read by :func:`load_dataset` are not re-read.
    A spec of your own data gives the checksum of its source (loaded once per session).
    """
    if parse_spec(name).kind != "builtin":
        return open_source(name).checksum
    info = get_info(name)
    where = locate(info.name, data_dir, download_missing=False)
    if isinstance(where, dict):
        return combine([(stem, _idx_digest(where[stem])) for stem in IDX_NAMES])
    return combine([d for split in SPLITS for d in _cifar_digests(where, info.name, split)])


def official_checksum(name: str) -> str | None:
    """The :func:`dataset_checksum` of the official files, where their contents are pinned
    (Fashion-MNIST, MNIST); None otherwise (and for your own data)."""
    if parse_spec(name).kind != "builtin":
        return None
    info = get_info(name)
    if info.format != "idx":
        return None
    return combine([(f.name.removesuffix(".gz"), f.raw_sha256) for f in info.files])
