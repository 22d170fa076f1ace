"""Command-line interface: a thin shell over the public API.

Each verb lives in its own module and registers on :data:`app`. User mistakes
(:class:`corranalysis.errors.InputError`) print one red line and exit with code 2.
"""

from __future__ import annotations

import sys

import click

from ..errors import InputError
from . import run, spectra  # noqa: F401  (register the verbs)
from ._app import app, console
from .report import report_cmd as _report_cmd  # noqa: F401  (registers report and figures)
from .retrain import retrain_cmd as _retrain_cmd  # noqa: F401  (registers the verb)
from .sweep import sweep_cmd as _sweep_cmd  # noqa: F401  (registers the verb)
from .tensorize import tensorize as _tensorize  # noqa: F401  (registers the verb)
from .train import train_cmd as _train_cmd  # noqa: F401  (registers train and evaluate)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``corranalysis`` console script."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="corranalysis")
    except InputError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        console.print("aborted")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
