"""The data sets corranalysis knows: shapes, classes, normalisation, official files."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, where it is published, and its pinned SHA-256."""

    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: image shape ``(in_channels, image_size, image_size)``, classes, mean/std."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    format: str = "idx"
    train_count: int = 0
    test_count: int = 0
    files: tuple[RemoteFile, ...] = ()
    debian_dir: str | None = None


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_CIFAR = "https://www.cs.toronto.edu/~kriz/"


def _idx_files(base: str, sums: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(n, base + n, s) for n, s in zip(names, sums, strict=True))


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), "idx", 60000, 10000,
        _idx_files(_FASHION, (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")),
        debian_dir="/usr/share/datasets/fashion-mnist"),
    "mnist": DatasetInfo(
        "mnist", 1, 28, 10, (0.1307,), (0.3081,), "idx", 60000, 10000,
        _idx_files(_MNIST, (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"))),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar10",
        50000, 10000,
        (RemoteFile("cifar-10-python.tar.gz", _CIFAR + "cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)),
    "cifar100": DatasetInfo(
        "cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar100",
        50000, 10000,
        (RemoteFile("cifar-100-python.tar.gz", _CIFAR + "cifar-100-python.tar.gz",
                    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),)),
}

_ALIASES = {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist":
            "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10",
            "cifar-100": "cifar100", "cifar_100": "cifar100"}


def resolve_name(name: str) -> str:
    """The canonical name of data set ``name`` (case and ``-``/``_`` forgiving)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise InputError(f"data set {name!r} is unknown; valid: {', '.join(DATASETS)}")
    return key


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of data set ``name``."""
    return DATASETS[resolve_name(name)]
