"""Where a data set's files are: ``data_dir``, ``$CORRANALYSIS_DATA``, Debian, cache, download."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .cifar import ARCHIVES, FOLDERS, batch_folder
from .download import cache_dir, download
from .registry import IDX_NAMES, DatasetInfo, get_info
from .spec import check_spec, parse_spec

ENV_DATA = "CORRANALYSIS_DATA"
# Sub-folders also searched under each place (torchvision keeps IDX files in <Name>/raw).
_IDX_SUBDIRS = {"fashion-mnist": ("FashionMNIST/raw",), "mnist": ("MNIST/raw",)}


def search_path(info: DatasetInfo, data_dir: str | os.PathLike | None = None
                ) -> list[tuple[str, Path]]:
    """``(label, folder)`` searched for ``info``, in order. A named place that does not
    exist (``data_dir`` or ``$CORRANALYSIS_DATA``) is an :class:`InputError`."""
    out = []
    if data_dir is not None and str(data_dir) != "":
        out.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_DATA):
        out.append((f"${ENV_DATA}", Path(os.environ[ENV_DATA]).expanduser()))
    for label, path in out:
        if not path.exists():
            raise InputError(f"{label} {str(path)!r} does not exist; give a folder holding "
                             f"the {info.name} files (or leave it out to search elsewhere)")
        if path.is_file() and info.format == "idx":
            raise InputError(f"{label} {str(path)!r} is a file; give the folder holding the "
                             f"four {info.name} IDX files")
    if info.debian_dir and Path(info.debian_dir).is_dir():
        out.append(("Debian package", Path(info.debian_dir)))
    out.append(("cache", cache_dir() / info.name))
    return out


def _idx_in(folder: Path, info: DatasetInfo) -> tuple[dict[str, Path] | None, list[str]]:
    """The four IDX files (``.gz`` or not) under ``folder``; else None and what was seen."""
    seen: list[str] = []
    for sub in (".", info.name, *_IDX_SUBDIRS.get(info.name, ())):
        base = folder / sub
        if not base.is_dir():
            continue
        found = {}
        for stem in IDX_NAMES:
            hit = next((base / n for n in (stem + ".gz", stem) if (base / n).is_file()), None)
            if hit is not None:
                found[stem] = hit
        if len(found) == len(IDX_NAMES):
            return found, []
        if found:
            missing = [s for s in IDX_NAMES if s not in found]
            seen.append(f"{str(base)!r} lacks {', '.join(missing)}")
    return None, seen


def _cifar_in(folder: Path, info: DatasetInfo) -> tuple[Path | None, list[str]]:
    """The CIFAR archive or extracted batch folder at/under ``folder``; else None."""
    if folder.is_file():
        return folder, []
    for base in (folder, folder / info.name):
        if not base.is_dir():
            continue
        extracted = batch_folder(base, info.name)
        if extracted is not None:
            return extracted, []
        if (base / ARCHIVES[info.name]).is_file():
            return base / ARCHIVES[info.name], []
    return None, []


def locate(name: str, data_dir: str | os.PathLike | None = None,
           download_missing: bool = True) -> dict[str, Path] | Path:
    """Where data set ``name`` is, searching ``data_dir`` (CLI ``--data-dir``),
    ``$CORRANALYSIS_DATA``, Debian's ``/usr/share/datasets`` (Fashion-MNIST), the cache,
    and else downloading into the cache (when ``download_missing``).

    Returns ``{IDX stem: path}`` (MNIST-like) or the CIFAR archive / batch folder path; for
    a spec of your own data, the folder or file it names (a factory has none: InputError).
    """
    spec = parse_spec(name)
    if spec.kind in ("imagefolder", "npz"):
        check_spec(spec)
        return spec.path
    if spec.kind != "builtin":
        raise InputError(f"data set {spec.text!r} is made by a factory; it has no files to "
                         "locate")
    info = get_info(name)
    find = _idx_in if info.format == "idx" else _cifar_in
    searched = []
    for label, folder in search_path(info, data_dir):
        hit, notes = find(folder, info)
        if hit:
            return hit
        searched.append(f"{label} {str(folder)!r}" + (f" ({'; '.join(notes)})" if notes else ""))
    cache = cache_dir() / info.name
    ways = (
        f"pass --data-dir DIR (data_dir=) naming a folder with the official files "
        f"({', '.join(f.name for f in info.files)}"
        + (f" or the extracted {FOLDERS[info.name]}/" if info.format != "idx" else "")
        + f"); set ${ENV_DATA} to such a folder"
        + (" (or install Debian's dataset-fashion-mnist)" if info.debian_dir else "")
        + f"; or let it download into {str(cache)!r} (download=True, needs internet; "
        f"$CORRANALYSIS_CACHE moves the cache)"
    )
    if not download_missing:
        raise InputError(f"data set {info.name!r} was not found (searched "
                         f"{'; '.join(searched)}). Provide it one of three ways: {ways}")
    try:
        for remote in info.files:
            if not (cache / remote.name).is_file():
                download(remote, cache)
    except InputError as exc:
        raise InputError(f"data set {info.name!r} was not found locally and {exc}. "
                         f"Provide it one of three ways: {ways}") from exc
    hit, _ = find(cache, info)
    if not hit:
        raise InputError(f"data set {info.name!r}: the download into {str(cache)!r} did not "
                         f"give the expected files. Provide it one of three ways: {ways}")
    return hit
