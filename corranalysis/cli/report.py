"""``corranalysis report`` and ``corranalysis figures``: the study report and paper figures."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ._app import app, console

WIDTHS = {"auto": None, "one": 3.4, "two": 7.0}


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `corranalysis run` "
                                   "(runs/NAME)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="report directory "
                                    "(default reports/NAME)"),
) -> None:
    """Build the HTML report (index.html, summary.md, every figure as PNG and PDF) of a run."""
    from ..pipeline import load_run
    from ..report import build_report

    path = build_report(load_run(run_dir), out)
    console.print(f"report: [bold]{path / 'index.html'}[/]")
    print(path / "index.html")


@app.command("figures")
def figures_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `corranalysis run`"),
    out: Path = typer.Option(..., "--out", "-o", help="directory for the figure files"),
    width: str = typer.Option("auto", help="auto (each figure's own) | one (3.4 in) | "
                              "two (7.0 in) journal columns"),
    layers: str | None = typer.Option(None, help="only these layers, comma-separated"),
    fmt: str = typer.Option("pdf", "--format", help="pdf | svg | png (comma-separated)"),
) -> None:
    """Write the paper figures alone: one vector PDF per figure, journal column widths."""
    from ..pipeline import load_run
    from ..report import build_figures

    if width not in WIDTHS:
        raise InputError(f"--width {width!r} is unknown; valid: {', '.join(WIDTHS)}")
    formats = [f.strip().lower() for f in fmt.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("pdf", "svg", "png")]
    if bad or not formats:
        raise InputError(f"--format {fmt!r}: give pdf, svg or png (comma-separated)")
    chosen = [x.strip() for x in layers.split(",") if x.strip()] if layers else None
    paths = build_figures(load_run(run_dir, required=()), out, width=WIDTHS[width],
                          layers=chosen, formats=formats)
    for p in paths:
        print(p)
    console.print(f"{len(paths)} figure file(s) in [bold]{out}[/]")
