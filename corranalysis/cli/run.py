"""``corranalysis run``: the whole study from one configuration file."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import OverwriteOption, app, console


@app.command()
def run(
    config: Path = typer.Argument(..., help="study configuration (YAML), e.g. configs/quick.yaml"),
    force: list[str] = typer.Option([], help="redo a stage even if up to date (repeatable): "
                                    "train, spectra, sweep, linkage, retrain, report"),
    only: list[str] = typer.Option([], help="run only these stages (repeatable)"),
    seed: int | None = typer.Option(None, help="another seed (training and test subset), run "
                                    "into runs/NAME_seedN/"),
) -> None:
    """Run a study end to end into runs/NAME/, skipping stages already done."""
    from ..config import load_config
    from ..pipeline import Study

    conf = load_config(config)
    study = Study(conf if seed is None else conf.with_seed(seed), console=console)
    report = study.run(force=force, only=only or None)
    console.print(f"run directory: {study.run_dir}")
    if report is not None:
        console.print(f"report: [bold]{report / 'index.html'}[/]")
        print(report / "index.html")


@app.command()
def seeds(
    runs: list[Path] = typer.Argument(..., help="run directories of one study trained with "
                                      "different seeds (runs/NAME runs/NAME_seed1 ...)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="netCDF file to write "
                                    "(default: seeds.nc in the first run directory, where "
                                    "its report finds it)"),
    overwrite: OverwriteOption = False,
) -> None:
    """Which linkage findings hold across training seeds (their spread, and the sign and
    significance of every correlation in every seed). Rebuild the first run's report
    (`corranalysis report RUN`) to add a section on them."""
    import json

    from rich.table import Table

    from ..errors import InputError
    from ..io import check_output_path, write_netcdf
    from ..linkage import across_seeds
    from ..pipeline import check_run_dir, load_run

    if len(runs) < 2:
        raise InputError(f"seeds: give at least two run directories, got {len(runs)}")
    for r in runs:  # a wrong run is named as such, before the output beside it is checked
        check_run_dir(r)
    out = out if out is not None else runs[0] / "seeds.nc"
    check_output_path(out, inputs=runs, overwrite=overwrite)
    loaded = [load_run(r, required=("linkage",)) for r in runs]
    seed_list = [int(r.config.get("seed", 0)) for r in loaded]
    if len(set(seed_list)) != len(seed_list):
        raise InputError(f"seeds: the runs share seeds {seed_list}; give runs of different seeds")
    ds = across_seeds([r.datasets["linkage"] for r in loaded], seed_list)
    ds.attrs["runs"] = json.dumps([str(r) for r in runs])
    write_netcdf(ds, out)
    table = Table(title=f"across seeds {seed_list}")
    for col in ("measure", "target", "rho per seed", "holds", "partial holds"):
        table.add_column(col, overflow="fold")
    for m in ds["measure"].values:
        for t in ds["target"].values:
            rho = ds["spearman_rho"].sel(measure=m, target=t).values
            table.add_row(str(m), str(t), " ".join(f"{v:+.2f}" for v in rho),
                          str(bool(ds["holds"].sel(measure=m, target=t))),
                          str(bool(ds["partial_holds"].sel(measure=m, target=t))))
    console.print(table)
    console.print(f"wrote {out}")
    if out.parent.resolve() == runs[0].resolve():
        console.print(f"add it to the report: corranalysis report {runs[0]} (or rerun the "
                      "study's configuration: its report stage depends on seeds.nc)")
