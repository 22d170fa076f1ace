"""``corranalysis tensorize``: replace layers by tensor networks, fine-tune, record accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import DATASET_HELP, app, console


@app.command("tensorize")
def tensorize(
    checkpoint: Path = typer.Argument(..., help="trained model weights (.pt, .safetensors, "
                                      ".npz or .onnx)"),
    model: str | None = typer.Option(None, "--model", help="registry name or "
                                     "package.module:factory (default: from run.json)"),
    dataset: str | None = typer.Option(None, "--dataset", help=f"{DATASET_HELP} "
                                       "(default: from run.json)"),
    spec: Path = typer.Option(..., "--spec", help="SPEC.yaml: layer/glob -> method + settings"),
    epochs: int = typer.Option(1, "--epochs", help="fine-tuning epochs after encoding"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    train_size: int = typer.Option(None, "--train-size", help="seeded training subset size"),
    test_size: int = typer.Option(None, "--test-size", help="seeded test subset size"),
    lr: float = typer.Option(1e-3, "--lr", help="fine-tuning peak learning rate"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, adamw or sgd"),
    weight_decay: float = typer.Option(0.0, help="L2 weight decay"),
    warmup: float = typer.Option(0.1, help="fraction of the steps spent in linear warm-up"),
    batch_size: int = typer.Option(32, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda"),
    data_dir: Path = typer.Option(None, "--data-dir"),
) -> None:
    """Encode CHECKPOINT's layers per SPEC, fine-tune, write tensorized.pt + tensorize.nc."""
    from ..runtime import Optim
    from ..tensorize.run import tensorize_run

    optim = Optim(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup=warmup)
    tensorize_run(
        checkpoint, model, dataset, spec, epochs=epochs, out=out, optim=optim,
        batch_size=batch_size, train_size=train_size, test_size=test_size, seed=seed,
        device=device, data_dir=data_dir, log=lambda s: console.print(s, highlight=False),
    )
