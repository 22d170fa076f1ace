"""Data sets: Fashion-MNIST, MNIST (IDX), CIFAR-10/100 (python version), in memory.

Files are found in this order: ``data_dir`` (CLI ``--data-dir``),
``$CORRANALYSIS_DATA``, Debian's ``dataset-fashion-mnist`` (Fashion-MNIST), the
user cache ``~/.cache/corranalysis``, else downloaded from the official location
and checked against pinned SHA-256 sums.
"""

from .cifar import RestrictedUnpickler, read_cifar
from .download import cache_dir, download
from .idx import read_idx, write_idx
from .loaders import (
    BatchLoader,
    ImageDataset,
    augment_batch,
    dataset_checksum,
    load_dataset,
    locate,
    make_loaders,
)
from .registry import DATASETS, DatasetInfo, RemoteFile, get_info, resolve_name

__all__ = [
    "DATASETS", "BatchLoader", "DatasetInfo", "ImageDataset", "RemoteFile",
    "RestrictedUnpickler", "augment_batch", "cache_dir", "dataset_checksum", "download",
    "get_info", "load_dataset", "locate", "make_loaders", "read_cifar", "read_idx",
    "resolve_name", "write_idx",
]
