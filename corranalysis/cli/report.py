"""``corranalysis report`` and ``corranalysis figures``: the study report and paper figures."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ._app import app, console

WIDTHS = {"auto": None, "one": 3.4, "two": 7.0}


REPORT_HELP = (
    "Build the HTML report (index.html, summary.md, every figure as PNG and PDF). Of a run: "
    "the study report, with a section \"Tensorization at equal budgets\" for every "
    "comparison (`corranalysis compare`) found in the run directory (compare.nc, "
    "compare_*/compare.nc) or given with --compare; their fine-tuned variants also appear in "
    "the compression figures. Of a folder of comparisons (e.g. `corranalysis report "
    "runs/tensorize`): the tensorization report, one figure and table per comparison, the "
    "best method per budget on the first screen.")


@app.command("report", help=REPORT_HELP)
def report_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `corranalysis run` "
                                   "(runs/NAME), or a folder of tensorization comparisons "
                                   "(compare_*/compare.nc, e.g. runs/tensorize)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="report directory "
                                    "(default reports/NAME, NAME: the folder's name)"),
    compare: list[Path] = typer.Option([], "--compare", help="a compare.nc, or a folder "
                                       "holding compare.nc or compare_*/compare.nc, of the "
                                       "run's model (repeatable); compare.nc files in the "
                                       "run directory itself are read anyway"),
) -> None:
    """The report of a run or of a folder of comparisons (:data:`REPORT_HELP`)."""
    from ..pipeline import load_run
    from ..report import (
        build_report,
        build_tensorization_report,
        comparison_files,
        read_comparisons,
    )

    is_run = run_dir.is_dir() and any((run_dir / f).is_file()
                                      for f in ("config.yaml", "run.json"))
    found = comparison_files(run_dir) if run_dir.is_dir() else []
    if run_dir.is_dir() and not is_run and not found:
        raise InputError(f"{str(run_dir)!r} is not a run directory (no config.yaml / run.json) "
                         "nor a folder of tensorization comparisons (compare.nc, "
                         "compare_*/compare.nc); give runs/NAME (written by `corranalysis run "
                         "CONFIG`) or a folder like runs/tensorize")
    if is_run or not run_dir.is_dir():
        run = load_run(run_dir)
        comparisons = read_comparisons(*found, *compare)
        path = build_report(run, out, comparisons=comparisons)
    else:
        comparisons = read_comparisons(*found, *compare)
        path = build_tensorization_report(
            comparisons, out if out is not None else Path("reports") / run_dir.resolve().name,
            source=run_dir)
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
