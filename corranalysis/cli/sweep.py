"""``corranalysis sweep``: truncation trials of a checkpoint evaluated on a data set."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import Checkpoint, DatasetOption, ModelOption, OverwriteOption, app, console


def summary_table(ds):
    """Per scope and layer: cuts, trials, lowest accuracy, largest tolerated norm loss
    (accuracy drop within 1 point) over the cuts."""
    from rich.table import Table

    from ..linkage import SCOPES, curves, scope_trials, tolerated_norm_loss

    base = float(ds.attrs["baseline_accuracy"])
    table = Table(title=f"sweep (baseline accuracy {base:.4f})")
    for col in ("scope", "layer", "cuts", "trials", "min accuracy",
                "tolerated norm loss (1 pt)"):
        table.add_column(col, justify="left" if col in ("scope", "layer") else "right")
    for scope in SCOPES:
        by_layer: dict[str, list] = {}
        cut_labels: dict[str, set[str]] = {}
        for (layer, cuts), rows in curves(scope_trials(ds, scope)).items():
            by_layer.setdefault(layer, []).append(rows)
            cut_labels.setdefault(layer, set()).update(cuts.split(";"))
        for layer, groups in by_layer.items():
            table.add_row(scope, layer, str(len(cut_labels[layer])),
                          str(sum(g.sizes["trial"] for g in groups)),
                          f"{min(float(g.accuracy.min()) for g in groups):.4f}",
                          f"{max(tolerated_norm_loss(g, base, 1.0) for g in groups):.4f}")
    return table


@app.command("sweep")
def sweep_cmd(
    checkpoint: Checkpoint,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    out: Path = typer.Option(..., "--out", "-o", help="sweep netCDF file to write"),
    test_size: int | None = typer.Option(None, help="seeded test subset size"),
    layers: str | None = typer.Option(None, help="glob(s) on layer names, comma-separated"),
    kinds: str | None = typer.Option(None, help="layer kinds, e.g. conv2d,linear"),
    cuts: list[str] = typer.Option(["all"], help="all | contiguous | cut labels (repeat or "
                                   "separate with ';')"),
    keeps: str | None = typer.Option(None, help="keep specs, comma-separated, e.g. "
                                     "'frac=0.5,chi=4,loss=0.1' (default: frac 1 → one "
                                     "singular value, plus loss budgets)"),
    plans: str = typer.Option("layer", help="comma-separated: layer, all-cuts, all-layers"),
    legs: str = typer.Option("natural", help="natural | prime | binary"),
    batch_size: int = typer.Option(1000, help="evaluation batch size"),
    seed: int = typer.Option(0, help="seed of the test subset"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    data_dir: Path | None = typer.Option(None, help="data set directory"),
    resume: bool = typer.Option(False, "--resume", help="continue from <out>.parts/"),
    overwrite: OverwriteOption = False,
    workers: int | None = typer.Option(None, help="Dask LocalCluster worker processes"),
    scheduler: str | None = typer.Option(None, help="address of an existing Dask scheduler"),
    method: str = typer.Option("fast", help="fast (batch-major) | naive"),
    truncation: str = typer.Option("svd", help="svd | data-aware | svd,data-aware (data-aware: "
                                   "least output error on each layer's out|rest cut)"),
    calibration_size: int = typer.Option(2000, help="training images whose input Grams the "
                                         "data-aware truncation uses"),
    stop_drop: float | None = typer.Option(None, help="stop a trial once its accuracy drop "
                                           "exceeds this many points beyond 3 standard errors"),
    stop_within: bool = typer.Option(False, "--stop-within", help="with --stop-drop: also stop "
                                     "a trial certain to stay within that many points of the "
                                     "baseline (its accuracy then a paired estimate)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
) -> None:
    """Truncate layers along cuts with keep specs and evaluate every trial on the test set."""
    from ..devices import resolve_device
    from ..errors import InputError
    from ..io import check_output_path, read_netcdf
    from ..kernels import as_cuts
    from ..runtime import load_trained, run_record
    from ..sweep import CheckpointSource, sweep

    check_output_path(out, inputs=[checkpoint], overwrite=overwrite or resume)
    if workers is not None and scheduler is not None:
        raise InputError("give --workers or --scheduler, not both")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be >= 1")
    dev = str(resolve_device(device))
    record = run_record(checkpoint)
    model, dataset = model or record.get("model"), dataset or record.get("dataset")
    if not model or not dataset:
        raise InputError(f"sweep {str(checkpoint)!r}: give --model and --dataset (no run.json "
                         "beside the checkpoint names them)")
    source = CheckpointSource(str(checkpoint), model, dataset, test_size, batch_size,
                              str(data_dir) if data_dir else None, seed,
                              "cpu" if (workers or scheduler) else dev)
    truncations = [t.strip() for t in truncation.split(",") if t.strip()]
    if calibration_size < 1:
        raise InputError(f"--calibration-size {calibration_size}: must be >= 1")
    net, data = source.load()
    calibration = None
    if "data-aware" in truncations:
        calibration = load_trained(checkpoint, model, dataset, train_size=calibration_size,
                                   test_size=1, data_dir=data_dir, seed=seed,
                                   device=dev).train
    config = {"checkpoint": str(checkpoint), "model": model, "dataset": dataset,
              "test_size": test_size, "batch_size": batch_size, "seed": seed,
              "calibration_size": calibration_size if calibration is not None else None}
    sweep(net, data, layers=layers, cuts=as_cuts(cuts), keeps=keeps, device=dev, plans=plans,
          kinds=kinds, legs=legs, truncations=truncations, calibration=calibration,
          stop_drop=stop_drop, stop_within=stop_within, out=out, resume=resume,
          workers=workers, scheduler=scheduler,
          method=method, progress=progress, overwrite=overwrite,
          source=source if (workers or scheduler) else None, config=config,
          checkpoint=checkpoint)
    console.print(summary_table(read_netcdf(out)))
    console.print(f"wrote {out}")
