"""Data sets: Fashion-MNIST, MNIST (IDX), CIFAR-10/100 (python version), in memory.

Files are found in this order: ``data_dir`` (CLI ``--data-dir``),
``$CORRANALYSIS_DATA``, Debian's ``dataset-fashion-mnist`` (Fashion-MNIST), the
user cache (``$CORRANALYSIS_CACHE`` or ``~/.cache/corranalysis``), else downloaded
from the official location and checked against pinned SHA-256 sums.

>>> train_loader, test_loader, info = make_loaders("fashion-mnist", train_size=5000)
>>> x, y = next(iter(train_loader))   # float32 [256, 1, 28, 28], int64 [256]
"""

from .augment import augment_batch
from .cifar import RestrictedUnpickler, read_cifar
from .datasets import ImageDataset, dataset_checksum, load_dataset, official_checksum
from .download import cache_dir, download
from .idx import read_idx, write_idx
from .loaders import BatchLoader, loader_defaults, make_loaders
from .locate import locate
from .registry import DATASETS, DatasetInfo, RemoteFile, get_info, resolve_name

__all__ = [
    "DATASETS", "BatchLoader", "DatasetInfo", "ImageDataset", "RemoteFile",
    "RestrictedUnpickler", "augment_batch", "cache_dir", "dataset_checksum", "download",
    "get_info", "load_dataset", "loader_defaults", "locate", "make_loaders",
    "official_checksum", "read_cifar", "read_idx", "resolve_name", "write_idx",
]
