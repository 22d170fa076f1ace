"""Your own data sets: image folders, ``.npz`` files, factories and torch Datasets, loaded into
the same kind of object the built-in data sets give.

====================================  ======================================================
spec (``--dataset`` / ``dataset=``)   what it gives
====================================  ======================================================
``imagefolder:PATH``                  uint8 images (:mod:`.imagefolder`), normalised per
                                      channel with the training split's mean and std
``PATH.npz``                          ``x_train, y_train, x_test, y_test`` (:mod:`.npz`),
                                      normalised per channel with the training split's
                                      mean and std
``package.module:factory``            ``factory()`` returns ``(train, test)`` torch
                                      Datasets of ``(x float (C, H, W), int y)``, used as
                                      given (no normalisation: your code decides)
====================================  ======================================================

Each becomes a :class:`~corranalysis.data.registry.Source`: a :class:`DatasetInfo`
(``in_channels``, ``image_size``, ``num_classes``, ``mean``/``std``, ``classes``), the two
splits and a SHA-256 of the contents (image files, arrays, or the items a factory gives),
recorded as ``dataset_checksum``. Files are read once per session (again when they change).

A factory's (or any given) Datasets are read through once to check them (and to hash them,
with the random generators seeded, so random transforms give one checksum); the test split
is then kept in memory, while the training split stays your Dataset, read lazily, so random
augmentation in it is drawn afresh every epoch.

The checks of the built-in data sets apply to all: square images of one shape, finite
pixels, labels ``0..K-1`` with every class present in the training split, test labels
among the training classes; each failure is one :class:`InputError` naming the input.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError
from .arrays import array_digest, channel_stats, check_classes
from .datasets import ImageDataset, combine
from .imagefolder import read_imagefolder
from .npz import read_npz
from .registry import DatasetInfo, Source, register_source
from .spec import DataSpec, import_factory

__all__ = ["from_datasets", "from_arrays", "is_loader", "is_dataset"]

#: Sources kept loaded (the most recent first out): a study loads the same data several times.
_KEEP = 2
_CACHE: OrderedDict[Hashable, Source] = OrderedDict()


def _cached(key: Hashable, load: Callable[[], Source]) -> Source:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    source = load()
    _CACHE[key] = source
    while len(_CACHE) > _KEEP:
        _CACHE.popitem(last=False)
    return source


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


# --------------------------------------------------------------------------- arrays (files)


def from_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray, *, format: str, digests: list[tuple[str, str]],
                files: tuple[Path, ...] = (), classes: tuple[str, ...] = ()) -> Source:
    """A :class:`Source` of checked ``(N, C, S, S)`` image arrays (uint8 or float32) and int64
    labels, normalised per channel with the training split's mean and std."""
    k = check_classes(y_train, y_test, f"data set {name!r}")
    if classes and k != len(classes):
        raise InputError(f"data set {name!r}: {len(classes)} classes named but labels "
                         f"0..{k - 1}")
    train_images = torch.from_numpy(x_train)
    mean, std = channel_stats(train_images)
    info = DatasetInfo(name, int(x_train.shape[1]), int(x_train.shape[2]), k, mean, std,
                       format, len(x_train), len(x_test), classes=classes)
    checksum = combine(digests)
    train = ImageDataset(train_images, torch.from_numpy(y_train), info, list(files), checksum,
                         split="train")
    test = ImageDataset(torch.from_numpy(x_test), torch.from_numpy(y_test), info, list(files),
                        checksum, split="test")
    return Source(info, train, test, checksum, tuple(files))


def _open_imagefolder(spec: DataSpec) -> Source:
    root = spec.path.resolve()
    stamps = tuple(_stamp(p) for p in sorted(root.rglob("*")) if p.is_file())

    def load() -> Source:
        got = read_imagefolder(root, spec.text)
        return from_arrays(spec.text, got.train_images, got.train_labels, got.test_images,
                           got.test_labels, format="imagefolder", digests=got.digests,
                           files=tuple(got.files), classes=got.classes)

    return _cached(("imagefolder", str(root), stamps), load)


def _open_npz(spec: DataSpec) -> Source:
    path = spec.path.resolve()

    def load() -> Source:
        arrays = read_npz(path, spec.text)
        digests = [array_digest(k, arrays[k]) for k in ("x_train", "y_train", "x_test",
                                                         "y_test")]
        return from_arrays(spec.text, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                           arrays["y_test"], format="npz", digests=digests, files=(path,))

    return _cached(("npz", str(path), _stamp(path)), load)


# --------------------------------------------------------------------------- torch Datasets


def is_loader(obj: object) -> bool:
    """Whether ``obj`` gives batches: a torch ``DataLoader`` or a corranalysis ``BatchLoader``
    (anything with a ``batch_size`` that iterates)."""
    return isinstance(obj, DataLoader) or (hasattr(obj, "batch_size")
                                           and hasattr(obj, "__iter__"))


def is_dataset(obj: object) -> bool:
    """Whether ``obj`` is a map-style Dataset of ``(x, y)`` items (``len`` and ``[i]``)."""
    if isinstance(obj, (str, bytes, dict, torch.Tensor, np.ndarray)) or is_loader(obj):
        return False
    return isinstance(obj, Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__"))


def _label(y: object, where: str) -> int:
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point() \
            and y.dtype != torch.bool:
        return int(y.item())
    if isinstance(y, np.ndarray) and y.size == 1 and np.issubdtype(y.dtype, np.integer):
        return int(y.item())
    if isinstance(y, (int, np.integer)) and not isinstance(y, (bool, np.bool_)):
        return int(y)
    raise InputError(f"{where}: the label is {type(y).__name__} {y!r}; give an int class "
                     "index (0..K-1)")


def _item(item: object, where: str) -> tuple[torch.Tensor, int]:
    """``(x float32 (C, H, W), label)`` of one ``(x, y)`` item, or InputError at ``where``."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise InputError(f"{where} is {type(item).__name__}; items must be (x, y) pairs")
    x, y = item
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{where}: x is {type(x).__name__}; give a float tensor (C, H, W)")
    if not x.is_floating_point():
        raise InputError(f"{where}: x is {x.dtype}; give a float tensor (C, H, W) (e.g. "
                         "x.float() / 255 for uint8 pixels)")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"{where}: x has shape {tuple(x.shape)}; give a float tensor "
                         "(C, H, W)")
    return x.detach().cpu().to(torch.float32), _label(y, where)


class _Checked(Dataset):
    """A user's Dataset whose items come out as ``(float32 (C, H, W), int)`` (and whose
    shape is checked against the first item's), read lazily."""

    def __init__(self, data: Any, name: str, shape: tuple[int, ...]):
        self.data, self.name, self.shape = data, name, shape

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Checked({self.name!r}, n={len(self)}, shape={self.shape})"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = _item(self.data[i], f"{self.name}: item {i}")
        if tuple(x.shape) != self.shape:
            raise InputError(f"{self.name}: item {i} has x of shape {tuple(x.shape)}, the "
                             f"first {self.shape}; give items of one shape")
        return x, y


def _scan(data: Any, name: str, keep: bool, shape: tuple[int, ...] | None = None
          ) -> tuple[np.ndarray, tuple[int, ...], str, torch.Tensor | None]:
    """Read every item of ``data`` once: (labels, item shape, SHA-256 of the items, the
    images stacked when ``keep``); InputError at the first bad item."""
    try:
        n = len(data)
    except TypeError:
        raise InputError(f"{name} ({type(data).__name__}) has no length; give a map-style "
                         "torch Dataset (len and [i])") from None
    if n == 0:
        raise InputError(f"{name} is empty; give at least one (x, y) item")
    labels = np.empty(n, dtype=np.int64)
    digest = hashlib.sha256()
    images = None
    for i in range(n):
        where = f"{name}: item {i}"
        try:
            raw = data[i]
        except Exception as exc:
            raise InputError(f"{where} could not be read: {type(exc).__name__}: {exc}"
                             ) from exc
        x, labels[i] = _item(raw, where)
        if shape is None:
            shape = tuple(x.shape)
            if shape[1] != shape[2]:
                raise InputError(f"{where}: x is {shape[2]}×{shape[1]} pixels; give square "
                                 "images (C, S, S)")
        elif tuple(x.shape) != shape:
            raise InputError(f"{where} has x of shape {tuple(x.shape)}, but item 0 of the "
                             f"training data has {shape}; give items of one shape")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{where}: x holds NaN or infinite values; give finite values")
        if keep:
            if images is None:
                images = torch.empty((n, *shape), dtype=torch.float32)
            images[i] = x
        digest.update(x.contiguous().numpy().tobytes())
        digest.update(int(labels[i]).to_bytes(8, "little", signed=True))
    if labels.min() < 0:
        raise InputError(f"{name} holds the label {int(labels.min())}; labels must be class "
                         "indices 0..K-1")
    return labels, shape, digest.hexdigest(), images  # type: ignore[return-value]


def _seeded_scan(*args: Any, **kwargs: Any) -> Any:
    """:func:`_scan` with torch, NumPy and Python's random generators seeded (0) and restored
    after, so random transforms give the same items (and checksum) every time."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            np.random.seed(0)
            random.seed(0)
            return _scan(*args, **kwargs)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def from_datasets(train: Any, test: Any, *, name: str = "given Datasets",
                  format: str = "datasets") -> Source:
    """A :class:`Source` of two torch Datasets of ``(x float (C, H, W), int y)`` items
    (``train`` may be None: evaluation data only), checked item by item.

    The test split is read into memory (an :class:`ImageDataset` of float32 images, used
    as given); the training split stays ``train``, read lazily (items converted to float32
    tensors and checked for shape). InputError naming the data set and item for a bad item,
    labels that are not contiguous ``0..K-1`` or test labels beyond the training classes.
    """
    for split, data in (("train", train), ("test", test)):
        if (data is not None or split == "test") and not is_dataset(data):
            raise InputError(f"data set {name!r}: the {split} split is "
                             f"{type(data).__name__}; give a torch Dataset of (x, y) items")
    what = f"data set {name!r}"
    shape = None
    if train is not None:
        train_labels, shape, train_digest, _ = _seeded_scan(train, f"{what} (train)", False)
    test_labels, shape, test_digest, test_images = _seeded_scan(test, f"{what} (test)", True,
                                                                shape)
    if train is not None:
        k = check_classes(train_labels, test_labels, what)
        digests = [("train", train_digest), ("test", test_digest)]
    else:
        k, digests = int(test_labels.max()) + 1, [("test", test_digest)]
    c, s = int(shape[0]), int(shape[1])
    info = DatasetInfo(name, c, s, k, (0.0,) * c, (1.0,) * c, format,
                       0 if train is None else len(train), len(test))
    checksum = combine(digests)
    test_set = ImageDataset(test_images, torch.from_numpy(test_labels), info, [], checksum,
                            split="test")
    train_set = None if train is None else _Checked(train, f"{what} (train)", tuple(shape))
    return Source(info, train_set, test_set, checksum)


def _open_factory(spec: DataSpec) -> Source:
    def load() -> Source:
        factory = import_factory(spec)
        try:
            made = factory()  # type: ignore[operator]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"data set {spec.text!r}: calling the factory raised "
                             f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(made, (tuple, list)) or len(made) != 2:
            raise InputError(f"data set {spec.text!r}: the factory returned "
                             f"{type(made).__name__}; it must return (train, test) torch "
                             "Datasets")
        return from_datasets(made[0], made[1], name=spec.text, format="factory")

    return _cached(("factory", spec.text), load)


register_source("imagefolder", _open_imagefolder)
register_source("npz", _open_npz)
register_source("factory", _open_factory)
