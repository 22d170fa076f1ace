"""Writing a report folder: checked, built aside, renamed into place, readable by others.

One home for what every report (the study's, the tensorization comparison's) does with its
output: :func:`check_out` refuses a folder that is not a report (or would replace the run),
:func:`report_folder` builds the report in a temporary folder beside the target, made
shareable (a web server, a colleague), and renames it into place only when the build
finished, replacing an earlier report at the end; a failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jinja2

from ..errors import InputError
from ..io import shareable


def env() -> jinja2.Environment:
    """The templates of ``corranalysis/report/templates`` (autoescaped, strict)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("corranalysis.report", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def check_out(out: Path, inputs: Path | None = None) -> None:
    """InputError when ``out`` would replace ``inputs`` (or a folder above it), is a file,
    or is a folder holding something other than a report (no index.html)."""
    if inputs is not None and (out.resolve() == inputs.resolve()
                               or out.resolve() in inputs.resolve().parents):
        raise InputError(f"--out {str(out)!r} would replace the run directory "
                         f"{str(inputs)!r}; give a directory outside it (default reports/NAME)")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a directory for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise InputError(f"--out {str(out)!r} exists and holds something other than a report; "
                         "choose another directory or empty it")


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; an earlier report is moved aside first, removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "report")
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old / "report", out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def report_folder(out: Path, inputs: Path | None = None) -> Iterator[Path]:
    """A temporary folder (with ``figures/``) to build the report ``out`` in; renamed onto
    ``out`` when the block finishes, removed when it fails. ``inputs``: the folder the
    report is made from, which ``out`` must not replace."""
    check_out(out, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    shareable(tmp)  # the report folder is for sharing (a web server, a colleague)
    try:
        (tmp / "figures").mkdir()
        yield tmp
        swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
