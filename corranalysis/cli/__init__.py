"""Command-line interface: a thin shell over the public API.

Each verb lives in its own module and registers on :data:`app`. User mistakes
(:class:`corranalysis.errors.InputError`) print one red line and exit with code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from ..errors import InputError
from . import run, spectra  # noqa: F401  (register the verbs)
from ._app import app, console
from .compare import compare_cmd as _compare_cmd  # noqa: F401  (registers the verb)
from .report import report_cmd as _report_cmd  # noqa: F401  (registers report and figures)
from .retrain import retrain_cmd as _retrain_cmd  # noqa: F401  (registers the verb)
from .sweep import sweep_cmd as _sweep_cmd  # noqa: F401  (registers the verb)
from .tensorize import tensorize as _tensorize  # noqa: F401  (registers the verb)
from .train import train_cmd as _train_cmd  # noqa: F401  (registers train and evaluate)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``corranalysis`` console script.

    Exit codes: 0 success; 2 for every user mistake (an :class:`InputError`, or a usage error
    from the command-line parser: unknown verb or option, missing or malformed value), with
    one red line and no traceback; 130 when interrupted.
    """
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="corranalysis")
    except InputError as exc:
        _error(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage mistakes raised by the parser
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            sys.exit(2)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        where = ctx.command_path if ctx is not None else "corranalysis"
        _error(f"{message} (see '{where} --help')")
    sys.exit(rv if isinstance(rv, int) else 0)


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)
