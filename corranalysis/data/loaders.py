"""Batches of an in-memory data set for training and evaluation; :func:`make_loaders` (a data
set by name or spec) and :func:`as_loaders` (also torch Datasets and DataLoaders as given)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..errors import InputError
from .augment import augment_batch
from .datasets import ImageDataset, load_dataset, source_split
from .registry import DatasetInfo, Source, get_info
from .sources import from_datasets, is_dataset, is_loader

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader:
    """Batches ``(x float32 [B, C, H, W], y int64 [B])`` of an in-memory :class:`ImageDataset`.

    Each batch is gathered, augmented (uint8) and normalised as one tensor
    operation, so no per-item Python work holds up a 2-core CPU. Shuffled with
    :attr:`generator` (a seeded CPU ``torch.Generator``, reseedable between epochs)
    when ``shuffle``; in file order otherwise. ``augment`` (default: the data set's
    flag, only when shuffling) draws crops and flips from the same generator, so a
    seed fixes the whole epoch. ``pin_memory`` pins batches for fast GPU copies;
    ``prefetch`` > 0 builds that many batches ahead in a background thread (the
    in-memory equivalent of DataLoader workers: same batches, same order).
    Use it like a ``DataLoader``: ``len()``, iteration, ``.dataset``, ``.batch_size``.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pin_memory: bool = False, drop_last: bool = False,
                 augment: bool | None = None, prefetch: int = 0):
        if int(batch_size) != batch_size or batch_size < 1:
            raise InputError(f"batch size {batch_size!r} must be a whole number >= 1")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.generator = torch.Generator().manual_seed(int(seed))
        self.pin_memory, self.drop_last, self.prefetch = pin_memory, drop_last, int(prefetch)
        self.augment = (dataset.augment and shuffle) if augment is None else augment

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __repr__(self) -> str:
        return (f"BatchLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, augment={self.augment}, batches={len(self)})")

    def _batches(self) -> Iterator[Batch]:
        n, ds = len(self.dataset), self.dataset
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if order is None:
                images, labels = ds.images[lo:hi], ds.labels[lo:hi]
            else:
                idx = order[lo:hi]
                images, labels = ds.images[idx], ds.labels[idx]
            if self.augment:
                images = augment_batch(images, self.generator)
            x = ds.normalise(images)
            if self.pin_memory:
                x, labels = x.pin_memory(), labels.pin_memory()
            yield x, labels

    def __iter__(self) -> Iterator[Batch]:
        if self.prefetch > 0:
            return _prefetched(self._batches(), self.prefetch)
        return self._batches()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _prefetched(batches: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Items of ``batches`` produced ``depth`` ahead by a background thread, in order."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer
            put(_Raised(exc))

    thread = threading.Thread(target=work, name="corranalysis-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def loader_defaults(device: str | torch.device = "cpu") -> dict[str, object]:
    """``pin_memory`` and ``prefetch`` for ``device``: none on a CPU (a 2-core machine
    needs its cores for the model), pinned batches built 2 ahead for a GPU."""
    name = str(device)
    cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    return {"pin_memory": cuda and torch.cuda.is_available(), "prefetch": 2 if cuda else 0}


def _loader(data: Any, batch_size: int, *, shuffle: bool, seed: int,
            opts: dict[str, Any]) -> Iterable | None:
    """A :class:`BatchLoader` of an :class:`ImageDataset`; a torch ``DataLoader`` (seeded
    shuffling, no worker processes) of any other Dataset; None for None."""
    if data is None:
        return None
    if isinstance(data, ImageDataset):
        return BatchLoader(data, batch_size, shuffle=shuffle, seed=seed, **opts)
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch size {batch_size!r} must be a whole number >= 1")
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(data, batch_size=int(batch_size), shuffle=shuffle, generator=generator,
                      pin_memory=bool(opts["pin_memory"]))


def make_loaders(name: str, *, batch_size: int = 256, eval_batch_size: int = 1000,
                 data_dir: str | os.PathLike | None = None, train_size: int | None = None,
                 test_size: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu", download: bool = True,
                 augment: bool | None = None) -> tuple[Any, BatchLoader, DatasetInfo]:
    """``(train loader, test loader, info)`` of data set ``name``.

    The train loader shuffles with a generator seeded by ``seed`` (and augments CIFAR
    unless ``augment=False``); the test loader keeps file order. ``train_size`` /
    ``test_size`` take seeded random subsets. Batches are ``(x float32 [B, C, H, W],
    y int64 [B])`` on the CPU, pinned for a CUDA ``device``.

    ``name`` may be a spec of your own data (``imagefolder:PATH``, ``PATH.npz``,
    ``package.module:factory``, see :mod:`corranalysis.data.sources`); a factory's training
    split comes as a torch ``DataLoader`` over its Dataset (shuffled with the same seed).
    """
    info = get_info(name)
    train = load_dataset(info.name, "train", data_dir=data_dir, download=download,
                         size=train_size, seed=seed, augment=augment)
    test = load_dataset(info.name, "test", data_dir=data_dir, download=download,
                        size=test_size, seed=seed, augment=False)
    opts = loader_defaults(device)
    return (_loader(train, batch_size, shuffle=True, seed=seed, opts=opts),
            _loader(test, eval_batch_size, shuffle=False, seed=seed, opts=opts),  # type: ignore[return-value]
            info)


DATA_FORMS = ("a data set name or spec, a torch Dataset or DataLoader of (x, y), or a "
              "(train, test) pair of Datasets or of DataLoaders")


def as_loaders(data: Any, *, batch_size: int = 256, eval_batch_size: int = 1000,
               data_dir: str | os.PathLike | None = None, train_size: int | None = None,
               test_size: int | None = None, seed: int = 0,
               device: str | torch.device = "cpu", download: bool = True
               ) -> tuple[Iterable | None, Iterable, DatasetInfo | None]:
    """``(train loader or None, test loader, info or None)`` of data in any form a stage
    accepts:

    * a name or spec (``str``): :func:`make_loaders`;
    * a torch Dataset of ``(x float (C, H, W), int y)`` items: the evaluation data, checked
      and held in memory (:func:`~corranalysis.data.sources.from_datasets`); train is None;
    * a ``DataLoader`` (or any loader with a ``batch_size``): the evaluation data as given;
      train and info are None (the caller knows the model's sizes);
    * a ``(train, test)`` pair of Datasets (checked; ``train`` read lazily) or of
      DataLoaders (as given); ``train`` may be None.

    ``train_size``/``test_size`` take seeded subsets of Datasets (not of DataLoaders).
    """
    if isinstance(data, str):
        return make_loaders(data, batch_size=batch_size, eval_batch_size=eval_batch_size,
                            data_dir=data_dir, train_size=train_size, test_size=test_size,
                            seed=seed, device=device, download=download)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            d is None or is_loader(d) or is_dataset(d) for d in data):
        train, test = data
    elif is_loader(data) or is_dataset(data):
        train, test = None, data
    else:
        raise InputError(f"data ({type(data).__name__}): give {DATA_FORMS}")
    given = [d for d in (train, test) if d is not None]
    if test is None:
        raise InputError("data: the test split is None; give evaluation data")
    if all(is_loader(d) for d in given):
        return train, test, None
    if any(is_loader(d) for d in given):
        raise InputError("data: give a (train, test) pair of two Datasets or of two "
                         "DataLoaders, not one of each")
    source: Source = from_datasets(train, test)
    opts = loader_defaults(device)
    train_split = (None if train is None
                   else source_split(source, "train", train_size, seed, None))
    test_split = source_split(source, "test", test_size, seed, None)
    return (_loader(train_split, batch_size, shuffle=True, seed=seed, opts=opts),
            _loader(test_split, eval_batch_size, shuffle=False, seed=seed, opts=opts),  # type: ignore[return-value]
            source.info)
