"""Atomic file writes and netCDF (h5netcdf) input/output for result datasets."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import xarray as xr
import yaml

from .errors import InputError

ENGINE = "h5netcdf"


#: The attribute that marks a netCDF file as a corranalysis result (every result carries it).
OURS_ATTR = "version_corranalysis"


def _parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"output {str(path)!r}: directory {str(parent)!r} does not exist; "
            "create it first or choose an existing directory"
        )
    return parent


def written_by_us(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a netCDF result written by corranalysis (it has :data:`OURS_ATTR`)."""
    try:
        with h5py.File(path, "r") as f:
            return OURS_ATTR in f.attrs
    except (OSError, ValueError):
        return False


def check_output_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                      overwrite: bool = False, directory: bool = False) -> Path:
    """``path`` as a Path once it is safe to write there; InputError before any work otherwise.

    Refused: a path naming one of ``inputs``; a missing or unwritable directory; for a file
    output (``directory=False``), an existing directory or an existing file that is not a
    corranalysis result (unless ``overwrite``); for a directory output, an existing file.
    """
    path = Path(path)
    target = path.resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == target:
            raise InputError(f"output {str(path)!r} names an input file; choose another output "
                             "path (inputs are never changed)")
    if directory:
        if path.exists() and not path.is_dir():
            raise InputError(f"output {str(path)!r} is an existing file; give a directory")
        parent = path if path.is_dir() else _parent(path)
    else:
        if path.is_dir():
            raise InputError(f"output {str(path)!r} is an existing directory; give a file path "
                             f"such as {str(path / 'out.nc')!r}")
        if path.exists() and not overwrite and not written_by_us(path):
            raise InputError(f"output {str(path)!r} exists and was not written by corranalysis; "
                             "choose another path or pass --overwrite (overwrite=True)")
        parent = _parent(path)
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"output {str(path)!r}: directory {str(parent)!r} is not writable "
                         f"({exc.strerror or exc}); choose another output path") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Nothing is left at ``path`` (nor a temp file) when the body raises.
    """
    path = Path(path)
    _parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        shareable(tmp_path)  # mkstemp makes 0600; results are for sharing
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _encodable(ds: xr.Dataset) -> xr.Dataset:
    """Make attrs netCDF-safe: dicts/lists/bools/None become JSON strings."""
    ds = ds.copy()

    def fix(attrs: dict) -> dict:
        out = {}
        for key, value in attrs.items():
            if isinstance(value, (dict, list, tuple, bool)) or value is None:
                out[key] = "json:" + json.dumps(value, default=str)
            else:
                out[key] = value
        return out

    ds.attrs = fix(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = fix(ds[name].attrs)
    return ds


def _decoded(ds: xr.Dataset) -> xr.Dataset:
    def unfix(attrs: dict) -> dict:
        return {
            k: json.loads(v[5:]) if isinstance(v, str) and v.startswith("json:") else v
            for k, v in attrs.items()
        }

    ds.attrs = unfix(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = unfix(ds[name].attrs)
    return ds


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` as netCDF4 (h5netcdf), atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        _encodable(ds).to_netcdf(tmp, engine=ENGINE, invalid_netcdf=True)
    return Path(path)


def read_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Read a dataset written by :func:`write_netcdf` fully into memory."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"netCDF file {str(path)!r} does not exist")
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            return _decoded(ds.load())
    except (OSError, ValueError) as exc:
        raise InputError(f"netCDF file {str(path)!r} cannot be read: {exc}") from exc


def read_yaml(path: str | os.PathLike, what: str) -> object:
    """The parsed content of YAML (or JSON) file ``path``; ``what`` names it in errors
    ("configuration", "plan file")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r} is not valid YAML (does not parse): {exc}"
                         ) from None


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)


def shareable(path: str | os.PathLike) -> None:
    """Give ``path`` the permissions a new file or folder gets under the user's umask
    (``mkstemp``/``mkdtemp`` make them private: 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)
