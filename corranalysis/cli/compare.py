"""``corranalysis compare``: tensorization methods at equal parameter budgets, one loop."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import BatchSizeOption, Checkpoint, DatasetOption, LrOption, ModelOption, app, console


def _numbers(text: str, what: str, kind: type = float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} {text!r}: give comma-separated numbers") from None


@app.command("compare")
def compare_cmd(
    checkpoint: Checkpoint,
    layers: str = typer.Option(..., "--layers", help="layer name or glob, e.g. 'features.[1-9]*'"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (resumable)"),
    model: ModelOption = None,
    dataset: DatasetOption = None,
    compressions: str = typer.Option("2,5,10", help="target compressions of the layers"),
    methods: str = typer.Option("svd,tucker,cp,mpo,adtn", help="methods compared (those that "
                                "apply to every layer)"),
    adtn_depths: str = typer.Option("1", help="ADTN depths (brick-wall periods) tried"),
    epochs: int = typer.Option(1, "--epochs", help="fine-tuning epochs of every variant"),
    lr: LrOption = 1e-3,
    batch_size: BatchSizeOption = 32,
    train_size: int = typer.Option(None, "--train-size", help="seeded training subset size"),
    test_size: int = typer.Option(None, "--test-size", help="seeded test subset size"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda"),
    finished_only: bool = typer.Option(False, "--finished-only", help="run nothing: gather "
                                       "the finished variants, list the others as not run"),
) -> None:
    """Encode LAYERS of CHECKPOINT with every method at each budget, fine-tune each the same
    way, and write OUT/compare.nc (plus one run folder per variant)."""
    from ..runtime import Optim
    from ..tensorize.compare import compare
    from ..tensorize.run import FINE_TUNE

    optim = Optim(**{**FINE_TUNE.as_dict(), "lr": lr})
    compare(checkpoint, model, dataset, layers=layers, out=out,
            compressions=_numbers(compressions, "--compressions"),
            methods=[m.strip() for m in methods.split(",") if m.strip()],
            adtn_depths=_numbers(adtn_depths, "--adtn-depths", int), epochs=epochs, optim=optim,
            batch_size=batch_size, train_size=train_size, test_size=test_size, seed=seed,
            device=device, log=lambda s: console.print(s, highlight=False),
            finished_only=finished_only)
