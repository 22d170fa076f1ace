"""``corranalysis run``: the whole study from one configuration file."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console


@app.command()
def run(
    config: Path = typer.Argument(..., help="study configuration (YAML), e.g. configs/quick.yaml"),
    force: list[str] = typer.Option([], help="redo a stage even if up to date (repeatable): "
                                    "train, spectra, sweep, linkage, retrain, report"),
    only: list[str] = typer.Option([], help="run only these stages (repeatable)"),
) -> None:
    """Run a study end to end into runs/NAME/, skipping stages already done."""
    from ..config import load_config
    from ..pipeline import Study

    study = Study(load_config(config), console=console)
    report = study.run(force=force, only=only or None)
    console.print(f"run directory: {study.run_dir}")
    if report is not None:
        console.print(f"report: [bold]{report / 'index.html'}[/]")
        print(report / "index.html")
