"""``corranalysis retrain``: recovery curves of a truncated checkpoint (dense / projected)."""

from __future__ import annotations

import copy
from pathlib import Path

import typer

from ..errors import InputError
from ..io import check_output_path
from ._app import app, console


@app.command("retrain")
def retrain_cmd(
    checkpoint: Path = typer.Argument(..., help="model.pt (a state_dict)"),
    model: str = typer.Option(..., "--model", "-m", help="model name or package.module:factory"),
    dataset: str = typer.Option(..., "--dataset", "-d", help="data set name"),
    plan: str = typer.Option(..., help="plan file (YAML/JSON {layer: {cuts: [..], keep: "
                             "'frac=0.2'}}) or 'auto' (with --sweep)"),
    epochs: int = typer.Option(..., "--epochs", "-e", help="epochs of re-training"),
    out: Path = typer.Option(..., "--out", "-o", help="recovery netCDF file to write"),
    sweep: Path | None = typer.Option(None, "--sweep", help="sweep file for --plan auto"),
    min_drop: float = typer.Option(10.0, help="--plan auto: accuracy drop (points) at least"),
    mode: str = typer.Option("both", help="dense | projected | both"),
    optimizer: str = typer.Option("sgd", help="sgd | adam"),
    lr: float = typer.Option(0.01, help="learning rate"),
    momentum: float = typer.Option(0.9, help="SGD momentum"),
    weight_decay: float = typer.Option(0.0, help="L2 weight decay"),
    batch_size: int = typer.Option(128, help="training batch size"),
    eval_batch_size: int = typer.Option(1000, help="evaluation batch size"),
    train_size: int | None = typer.Option(None, help="seeded training subset size"),
    test_size: int | None = typer.Option(None, help="seeded test subset size"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    data_dir: Path | None = typer.Option(None, help="data set directory"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
) -> None:
    """Truncate a checkpoint by a plan, re-train it and record test accuracy per epoch."""
    import xarray as xr

    from ..io import write_netcdf
    from ..recovery import MODES, plan_from_option, retrain
    from ..sweeps import load_checkpoint_and_data
    from ..truncation import resolve_plan

    check_output_path(out)
    modes = list(MODES) if mode == "both" else [mode]
    if any(m not in MODES for m in modes):
        raise InputError(f"--mode {mode!r} is unknown; valid: dense, projected, both")
    if epochs < 0:
        raise InputError(f"--epochs {epochs}: must be >= 0")
    chosen = plan_from_option(plan, str(sweep) if sweep else None, min_drop)
    net, train_loader, test_loader = load_checkpoint_and_data(
        checkpoint, model, dataset, test_size=test_size, train_size=train_size,
        batch_size=batch_size, eval_batch_size=eval_batch_size,
        data_dir=str(data_dir) if data_dir else None, seed=seed, device=device)
    resolved = resolve_plan(net, chosen)
    console.print(f"plan: {resolved.to_json()}")
    results = []
    for m in modes:
        ds = retrain(copy.deepcopy(net), resolved, train_loader, test_loader, epochs, m,
                     optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                     device=device, seed=seed, progress=progress)
        console.print(f"{m}: accuracy " + " → ".join(f"{a:.4f}" for a in ds.accuracy.values)
                      + f" (untruncated {ds.attrs['baseline_accuracy']:.4f})")
        results.append(ds)
    out_ds = xr.concat(results, dim=xr.DataArray(modes, dims="mode", name="mode"),
                       combine_attrs="drop_conflicts")
    out_ds.attrs.update(checkpoint=str(checkpoint), model=model, dataset=dataset,
                        modes=",".join(modes), plan_source=plan)
    write_netcdf(out_ds, out)
    console.print(f"wrote {out}")
