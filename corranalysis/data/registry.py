"""The data sets corranalysis knows: shapes, classes, normalisation, official files; and the
sources of the user's own data sets (image folders, ``.npz`` files, factories), which
register here by kind (see :mod:`.spec`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .spec import SYNTAX, DataSpec, check_spec, parse_spec


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, where it is published, and its pinned SHA-256 sums.

    ``sha256`` is the digest of the file as published (what a download must match);
    ``raw_sha256`` that of its gunzipped content (``""`` when not gzipped), which also
    identifies a re-compressed copy such as Debian's (its ``.gz`` bytes differ).
    ``mirrors`` are tried in order after ``url``.
    """

    name: str
    url: str
    sha256: str
    raw_sha256: str = ""
    mirrors: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: image shape ``(in_channels, image_size, image_size)``, classes, mean/std.

    ``mean``/``std`` are per channel, of pixels scaled to [0, 1] for uint8 images (of the
    values as given for float images). ``format`` says where it comes from (``idx``,
    ``cifar10``, ``cifar100``, ``imagefolder``, ``npz``, ``factory``, ``datasets``);
    ``classes`` names the classes where the data names them (an image folder's sub-folders).
    """

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
    classes: tuple[str, ...] = ()


@dataclass
class Source:
    """A data set that is not built in, loaded and checked: its :class:`DatasetInfo`, both
    splits (torch Datasets of ``(x float32 (C, H, W), int label)``), the SHA-256 identifying
    its contents, and the files read."""

    info: DatasetInfo
    train: Any
    test: Any
    checksum: str
    files: tuple[Any, ...] = field(default=())


#: Openers of data sets that are not built in, by spec kind (``imagefolder``, ``npz``,
#: ``factory``): ``opener(spec) -> Source``. Registered by :mod:`.sources`.
_SOURCES: dict[str, Callable[[DataSpec], Source]] = {}


def register_source(kind: str, opener: Callable[[DataSpec], Source]) -> None:
    """Register ``opener`` as the way to load data sets of spec kind ``kind``."""
    _SOURCES[kind] = opener


def open_source(spec: str | DataSpec) -> Source:
    """The loaded, checked :class:`Source` of a spec that is not a built-in name."""
    parsed = spec if isinstance(spec, DataSpec) else parse_spec(spec)
    if parsed.kind not in _SOURCES:
        raise InputError(f"data set {parsed.text!r} is not a spec of your own data; "
                         f"expected {SYNTAX}")
    check_spec(parsed)
    return _SOURCES[parsed.kind](parsed)


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
_MNIST_MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/",)
_CIFAR = "https://www.cs.toronto.edu/~kriz/"

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_files(base: str, sums: tuple[tuple[str, str], ...],
               mirrors: tuple[str, ...] = ()) -> tuple[RemoteFile, ...]:
    """The four ``.gz`` files at ``base``; ``sums``: (gz, raw) SHA-256 in IDX_NAMES order."""
    return tuple(
        RemoteFile(n + ".gz", base + n + ".gz", gz, raw, tuple(m + n + ".gz" for m in mirrors))
        for n, (gz, raw) in zip(IDX_NAMES, sums, strict=True)
    )


def _norm(name: object) -> str:
    """``"Fashion_MNIST"``, ``"fashion-mnist"``, ``"FashionMNIST"`` → ``"fashionmnist"``."""
    return re.sub(r"[\s_\-]", "", str(name).lower())


_ALIASES = {"fmnist": "fashion-mnist"}


def _spec_kind(key: object) -> str:
    try:
        return parse_spec(key).kind
    except InputError:
        return "invalid"


class _Registry(dict):
    """A dict of data sets whose lookups (``in``, ``[]``, ``get``) forgive case and ``-``/``_``.

    Iteration, ``keys()`` and ``repr`` show the built-in data sets only; ``in`` is also
    true for any well-formed spec of the user's own data (``imagefolder:PATH``,
    ``PATH.npz``, ``package.module:factory``: what can be loaded, judged by its syntax),
    and ``[]`` loads such a data set to give its :class:`DatasetInfo`.
    """

    def canonical(self, name: object) -> str | None:
        norm = _norm(name)
        norm = _norm(_ALIASES.get(norm, norm))
        return next((k for k in dict.keys(self) if _norm(k) == norm), None)

    def __missing__(self, key: object) -> DatasetInfo:
        canonical = self.canonical(key)
        if canonical is not None:
            return dict.__getitem__(self, canonical)
        if _spec_kind(key) in _SOURCES:
            return open_source(key).info  # type: ignore[arg-type]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return (dict.__contains__(self, key) or self.canonical(key) is not None
                or _spec_kind(key) in _SOURCES)

    def get(self, key, default=None):  # type: ignore[override]
        return self[key] if key in self else default


DATASETS: dict[str, DatasetInfo] = _Registry({
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), "idx", 60000, 10000,
        # .gz sums: the files on the official S3 site (MD5s 8d4fb7e6…, 25c81989…, bef4ecab…,
        # bb300cfd… as in the upstream README). Raw sums: computed here from Debian's
        # dataset-fashion-mnist, whose .gz files are re-compressed (other bytes, same content;
        # the raw MD5s f4a8712d…, 9018921c…, 8181f547…, 15d48437… match torchvision's).
        _idx_files(_FASHION, (
            ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
             "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))),
        debian_dir="/usr/share/datasets/fashion-mnist"),
    "mnist": DatasetInfo(
        "mnist", 1, 28, 10, (0.1307,), (0.3081,), "idx", 60000, 10000,
        # The published SHA-256 sums of LeCun's files (identical on both mirrors).
        _idx_files(_MNIST, (
            ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
             "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
             "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
             "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
             "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
            _MNIST_MIRRORS)),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar10",
        50000, 10000,
        # SHA-256 as published with Keras/TFDS (MD5 c58f30108f718f92721af3b95e74349a).
        (RemoteFile("cifar-10-python.tar.gz", _CIFAR + "cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)),
    "cifar100": DatasetInfo(
        "cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar100",
        50000, 10000,
        # SHA-256 as published with Keras/TFDS (MD5 eb9058c3a382ffc7106e4002c42a8d85).
        (RemoteFile("cifar-100-python.tar.gz", _CIFAR + "cifar-100-python.tar.gz",
                    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),)),
})


def resolve_name(name: str) -> str:
    """The canonical name of data set ``name`` (forgiving case, ``-``/``_``, ``cifar-10``), or
    the spec of the user's own data set as written, once what it names is seen to exist
    (the folder or file; the factory's module is found, not run)."""
    spec = parse_spec(name)
    if spec.kind != "builtin":
        check_spec(spec)
        return spec.text
    canonical = _Registry.canonical(DATASETS, spec.target)  # type: ignore[arg-type]
    if canonical is None:
        hint = (f" ({spec.target!r} is a folder: for one sub-folder of images per class, "
                f"give 'imagefolder:{spec.target}')" if spec.path.is_dir() else "")
        raise InputError(f"data set {name!r} is unknown{hint}; valid: {', '.join(DATASETS)}, "
                         f"or your own: {SYNTAX.partition(', ')[2]}")
    return canonical


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of data set ``name`` (a spec of your own data is loaded)."""
    spec = parse_spec(name)
    if spec.kind != "builtin":
        return open_source(spec).info
    return dict.__getitem__(DATASETS, resolve_name(name))
