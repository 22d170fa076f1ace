"""Data sets: Fashion-MNIST, MNIST (IDX), CIFAR-10/100 (python version), and your own, in memory.

Files of the built-in data sets are found in this order: ``data_dir`` (CLI
``--data-dir``), ``$CORRANALYSIS_DATA``, Debian's ``dataset-fashion-mnist``
(Fashion-MNIST), the user cache (``$CORRANALYSIS_CACHE`` or ``~/.cache/corranalysis``),
else downloaded from the official location and checked against pinned SHA-256 sums.

Your own data set is named by a spec wherever a name is taken (:mod:`.spec`,
:mod:`.sources`): ``imagefolder:PATH`` (one sub-folder of PNG/JPEG images per class),
``PATH.npz`` (``x_train, y_train, x_test, y_test``) or ``package.module:factory``
(returning train and test torch Datasets). In the API, torch Datasets and DataLoaders are
taken as they are (:func:`as_loaders`).

>>> train_loader, test_loader, info = make_loaders("fashion-mnist", train_size=5000)
>>> x, y = next(iter(train_loader))   # float32 [256, 1, 28, 28], int64 [256]
>>> train_loader, test_loader, info = make_loaders("imagefolder:shapes")  # doctest: +SKIP
"""

from .augment import augment_batch
from .cifar import RestrictedUnpickler, read_cifar
from .datasets import ImageDataset, dataset_checksum, load_dataset, official_checksum
from .download import cache_dir, download
from .idx import read_idx, write_idx
from .imagefolder import read_imagefolder
from .loaders import BatchLoader, as_loaders, loader_defaults, make_loaders
from .locate import locate
from .npz import read_npz
from .registry import DATASETS, DatasetInfo, RemoteFile, Source, get_info, open_source, resolve_name
from .sources import from_arrays, from_datasets, is_dataset, is_loader
from .spec import DataSpec, is_spec, parse_spec

__all__ = [
    "DATASETS", "BatchLoader", "DataSpec", "DatasetInfo", "ImageDataset", "RemoteFile",
    "RestrictedUnpickler", "Source", "as_loaders", "augment_batch", "cache_dir",
    "dataset_checksum", "download", "from_arrays", "from_datasets", "get_info", "is_dataset",
    "is_loader", "is_spec", "load_dataset", "loader_defaults", "locate", "make_loaders",
    "official_checksum", "open_source", "parse_spec", "read_cifar", "read_idx",
    "read_imagefolder", "read_npz", "resolve_name", "write_idx",
]
