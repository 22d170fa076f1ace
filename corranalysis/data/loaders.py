"""Batches of an in-memory data set for training and evaluation, and :func:`make_loaders`."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

import torch

from ..errors import InputError
from .augment import augment_batch
from .datasets import ImageDataset, load_dataset
from .registry import DatasetInfo, get_info

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


def make_loaders(name: str, *, batch_size: int = 256, eval_batch_size: int = 1000,
                 data_dir: str | os.PathLike | None = None, train_size: int | None = None,
                 test_size: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu", download: bool = True,
                 augment: bool | None = None) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """``(train loader, test loader, info)`` of data set ``name``.

    The train loader shuffles with a generator seeded by ``seed`` (and augments CIFAR
    unless ``augment=False``); the test loader keeps file order. ``train_size`` /
    ``test_size`` take seeded random subsets. Batches are ``(x float32 [B, C, H, W],
    y int64 [B])`` on the CPU, pinned for a CUDA ``device``.
    """
    info = get_info(name)
    train = load_dataset(info.name, "train", data_dir=data_dir, download=download,
                         size=train_size, seed=seed, augment=augment)
    test = load_dataset(info.name, "test", data_dir=data_dir, download=download,
                        size=test_size, seed=seed, augment=False)
    opts = loader_defaults(device)
    return (BatchLoader(train, batch_size, shuffle=True, seed=seed, **opts),  # type: ignore[arg-type]
            BatchLoader(test, eval_batch_size, shuffle=False, **opts),  # type: ignore[arg-type]
            info)
