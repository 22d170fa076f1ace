"""Data set specs: what ``--dataset`` / ``dataset=`` may name, parsed without reading anything.

=========================  ==========================================================
``fashion-mnist`` …        a built-in data set (:data:`~corranalysis.data.DATASETS`)
``imagefolder:PATH``       a folder of PNG/JPEG images, one sub-folder per class
                           (``PATH/<class>/…``, or ``PATH/train/<class>/…`` and
                           ``PATH/test/<class>/…``)
``PATH.npz``               a NumPy archive holding ``x_train, y_train, x_test, y_test``
``package.module:factory`` a callable returning ``(train, test)`` torch Datasets
=========================  ==========================================================
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: The kinds of data set a spec names.
KINDS = ("builtin", "imagefolder", "npz", "factory")
IMAGEFOLDER = "imagefolder:"
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
SYNTAX = ("a built-in name, 'imagefolder:PATH' (a folder with one sub-folder of PNG/JPEG "
          "images per class), 'PATH.npz' (holding x_train, y_train, x_test, y_test) or "
          "'package.module:factory' (returning train and test torch Datasets)")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data set spec: ``kind`` (one of :data:`KINDS`) and ``target`` (the built-in
    name as given, the folder or file path, or ``module:attribute``)."""

    kind: str
    target: str

    @property
    def text(self) -> str:
        """The spec as written (``imagefolder:`` in lower case, the rest as given)."""
        return IMAGEFOLDER + self.target if self.kind == "imagefolder" else self.target

    @property
    def path(self) -> Path:
        """The folder (imagefolder) or file (npz) the spec names."""
        return Path(self.target).expanduser()


def parse_spec(value: object) -> DataSpec:
    """The :class:`DataSpec` of ``value``, from its syntax alone (no file is read).

    Anything not shaped like a path, ``imagefolder:`` or ``module:factory`` is a built-in
    name (whether it is known is :func:`~corranalysis.data.resolve_name`'s job).
    """
    if not isinstance(value, str):
        raise InputError(f"data set {value!r} ({type(value).__name__}): give a name or "
                         f"spec string: {SYNTAX}")
    text = value.strip()
    if text.lower().startswith(IMAGEFOLDER):
        path = text[len(IMAGEFOLDER):].strip()
        if not path:
            raise InputError(f"data set {value!r}: give the folder after 'imagefolder:' "
                             "(imagefolder:PATH)")
        return DataSpec("imagefolder", path)
    if text.lower().endswith(".npz"):
        return DataSpec("npz", text)
    if ":" in text:
        if not _FACTORY.match(text):
            raise InputError(f"data set {value!r} is not a valid spec; expected {SYNTAX}")
        return DataSpec("factory", text)
    return DataSpec("builtin", text)


def is_spec(value: object) -> bool:
    """Whether ``value`` is a well-formed spec of a data set that is not built in."""
    try:
        return parse_spec(value).kind != "builtin"
    except InputError:
        return False


_WHERE = "install it, put its folder on PYTHONPATH, or run from its folder"


def _with_cwd() -> None:
    """Let a factory's module be found in the current folder too (after everything else on
    ``sys.path``), as ``python -m`` would: the ``corranalysis`` command does not add it."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def check_spec(spec: DataSpec) -> None:
    """InputError when what ``spec`` names is plainly absent: a missing folder or file, a
    module that cannot be found (found, not run: its parent packages are imported)."""
    if spec.kind == "imagefolder" and not spec.path.is_dir():
        what = "is a file" if spec.path.is_file() else "does not exist"
        raise InputError(f"data set {spec.text!r}: folder {spec.target!r} {what}; give a "
                         "folder with one sub-folder of PNG/JPEG images per class "
                         "(PATH/<class>/*.png, or PATH/train/<class>/ and PATH/test/<class>/)")
    if spec.kind == "npz" and not spec.path.is_file():
        what = "is a folder" if spec.path.is_dir() else "does not exist"
        raise InputError(f"data set {spec.text!r}: file {spec.target!r} {what}; give an "
                         ".npz file holding x_train, y_train, x_test, y_test")
    if spec.kind == "factory":
        module = spec.target.partition(":")[0]
        _with_cwd()
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            found, why = None, f" ({exc})"
        else:
            why = ""
        if found is None:
            raise InputError(f"data set {spec.text!r}: module {module!r} cannot be found"
                             f"{why}; {_WHERE}")


def import_object(target: str, what: str, returns: str) -> Callable[..., object]:
    """The callable ``target`` names (``package.module:attribute``, dotted attributes
    allowed): the one importer of the user's own code (data set and model factories).

    The module is found on ``sys.path``, else in the current folder (:func:`_with_cwd`).
    Each failure is one :class:`InputError` starting with ``what`` (``"data set 'm:f'"``,
    ``"model 'm:f'"``); ``returns`` says what the callable should return.
    """
    module_name, _, attr = str(target).partition(":")
    if not module_name or not attr:
        raise InputError(f"{what}: expected 'package.module:factory' (a callable returning "
                         f"{returns})")
    _with_cwd()
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{what}: cannot import module {module_name!r} ({exc}); {_WHERE}"
                         ) from None
    except Exception as exc:  # the user's module failed while importing
        raise InputError(f"{what}: importing module {module_name!r} raised "
                         f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{what}: {attr!r} is {type(obj).__name__}, not callable; name a "
                         f"function returning {returns}")
    return obj


def import_factory(spec: DataSpec) -> Callable[..., object]:
    """The callable ``spec`` names (``package.module:attribute``, dotted attributes allowed)."""
    return import_object(spec.target, f"data set {spec.text!r}", "(train, test) Datasets")
