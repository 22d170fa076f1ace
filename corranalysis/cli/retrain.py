"""``corranalysis retrain``: recovery curves of a truncated checkpoint by mode."""

from __future__ import annotations

import copy
from pathlib import Path

import typer

from ._app import (
    BatchSizeOption,
    Checkpoint,
    DatasetOption,
    LrOption,
    ModelOption,
    MomentumOption,
    OptimizerOption,
    OverwriteOption,
    ScheduleOption,
    WarmupOption,
    WeightDecayOption,
    app,
    console,
)


@app.command("retrain")
def retrain_cmd(
    checkpoint: Checkpoint,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    plan: str = typer.Option(..., help="plan file (YAML/JSON {layer: {cuts: [..], keep: "
                             "'frac=0.2'}}) or 'auto' (with --sweep: every swept layer "
                             "compressed to --budget)"),
    epochs: int = typer.Option(..., "--epochs", "-e", help="epochs of re-training"),
    out: Path = typer.Option(..., "--out", "-o", help="recovery netCDF file to write"),
    sweep: Path | None = typer.Option(None, "--sweep", help="sweep file for --plan auto"),
    budget: float = typer.Option(0.5, help="--plan auto: fraction of the swept kernels' "
                                 "parameters to keep (0 < budget < 1)"),
    mode: list[str] = typer.Option(["control", "dense", "projected"],
                                   help="control (the untruncated model) | dense | projected | "
                                   "local (repeatable, or 'all')"),
    optimizer: OptimizerOption = "sgd",
    lr: LrOption = 0.002,
    momentum: MomentumOption = 0.9,
    weight_decay: WeightDecayOption = 5e-4,
    schedule: ScheduleOption = "cosine",
    warmup: WarmupOption = 0.1,
    batch_size: BatchSizeOption = 32,
    eval_batch_size: int = typer.Option(1000, help="evaluation batch size"),
    train_size: int | None = typer.Option(None, help="seeded training subset size"),
    test_size: int | None = typer.Option(None, help="seeded test subset size"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    data_dir: Path | None = typer.Option(None, help="data set directory"),
    overwrite: OverwriteOption = False,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
) -> None:
    """Truncate a checkpoint by a plan, re-train it and record test accuracy per epoch."""
    import xarray as xr

    from ..errors import InputError, check_opt
    from ..io import check_output_path, write_netcdf
    from ..retrain import MODES, plan_from_option, retrain
    from ..runtime import Optim, load_trained
    from ..truncation import resolve_plan

    check_output_path(out, inputs=[checkpoint, sweep, plan], overwrite=overwrite)
    modes = list(MODES) if mode == ["all"] else list(dict.fromkeys(mode))
    for m in modes:
        check_opt("--mode", m, MODES)
    if epochs < 0:
        raise InputError(f"--epochs {epochs}: must be >= 0")
    optim = Optim(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                  schedule=schedule, warmup=warmup)
    trained = load_trained(checkpoint, model, dataset, batch_size=batch_size,
                           eval_batch_size=eval_batch_size, train_size=train_size,
                           test_size=test_size, data_dir=data_dir, seed=seed, device=device)
    if trained.test is None:
        raise InputError(f"retrain {str(checkpoint)!r}: give --dataset (no run.json beside it)")
    chosen = plan_from_option(plan, str(sweep) if sweep else None, budget, trained.model)
    resolved = resolve_plan(trained.model, chosen)
    console.print(f"plan: {resolved.to_json()}")
    results = []
    for m in modes:
        ds = retrain(copy.deepcopy(trained.model), resolved, trained.train, trained.test, epochs,
                     m, optim=optim, device=trained.device, seed=seed, progress=progress,
                     checkpoint=checkpoint)
        console.print(f"{m}: accuracy " + " → ".join(f"{a:.4f}" for a in ds.accuracy.values)
                      + f" (untruncated {ds.attrs['baseline_accuracy']:.4f}); re-truncated at "
                      f"the plan's χ {float(ds.retruncated_accuracy[-1]):.4f}, norm loss "
                      f"{float(ds.network_norm_loss[-1]):.3f}")
        results.append(ds)
    out_ds = xr.concat(results, dim=xr.DataArray(modes, dims="mode", name="mode"),
                       combine_attrs="drop_conflicts")
    out_ds.attrs.update(checkpoint=str(checkpoint), model=trained.model_spec,
                        dataset=str(trained.dataset), modes=",".join(modes), plan_source=plan)
    if plan == "auto":
        out_ds.attrs["budget"] = budget
    write_netcdf(out_ds, out)
    console.print(f"wrote {out}")
