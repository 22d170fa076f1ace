"""The Typer application every CLI verb registers on, and its console."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="corranalysis",
    help="Correlation compressibility of neural-network kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
