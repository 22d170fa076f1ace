"""CLI verbs ``train`` and ``evaluate``: shells over :mod:`corranalysis.runtime`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import (
    DATASET_HELP,
    BatchSizeOption,
    LrOption,
    MomentumOption,
    OptimizerOption,
    ScheduleOption,
    WarmupOption,
    WeightDecayOption,
    app,
    console,
)

# The defaults shown here are the runtime's (corranalysis.runtime.DEFAULT_OPTIM, BATCH_SIZE);
# tests/test_training.py checks that they agree.


@app.command("train")
def train_cmd(
    model: str = typer.Option(..., "--model", "-m",
                              help="registry name (cnn4, fc2, lenet5, resnet18, resnet20, "
                                   "resnet50, vgg16) or package.module:factory"),
    dataset: str = typer.Option(..., "--dataset", "-d", help=DATASET_HELP),
    epochs: int = typer.Option(..., "--epochs", "-e", help="number of epochs"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory (created)"),
    optimizer: OptimizerOption = "sgd",
    lr: LrOption = 0.02,
    momentum: MomentumOption = 0.9,
    weight_decay: WeightDecayOption = 5e-4,
    schedule: ScheduleOption = "cosine",
    warmup: WarmupOption = 0.1,
    label_smoothing: float = typer.Option(0.0, help="label smoothing of the training loss"),
    batch_size: BatchSizeOption = 32,
    eval_batch_size: int = typer.Option(1000, help="evaluation batch size"),
    train_size: int | None = typer.Option(None, help="seeded training subset size"),
    test_size: int | None = typer.Option(None, help="seeded test subset size"),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    data_dir: Path | None = typer.Option(None, help="data set directory"),
    threads: int | None = typer.Option(None, help="torch CPU threads"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a different run in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
) -> None:
    """Train a model; resumable (rerun the same command after an interruption)."""
    from ..runtime import train

    run = train(
        model, dataset, epochs=epochs, out=out, optimizer=optimizer, lr=lr, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, warmup=warmup,
        label_smoothing=label_smoothing, batch_size=batch_size, eval_batch_size=eval_batch_size,
        train_size=train_size, test_size=test_size, seed=seed, device=device, data_dir=data_dir,
        overwrite=overwrite, progress=progress, num_threads=threads,
    )
    console.print(
        f"{run['model']} on {run['dataset']}: test accuracy {run['test_accuracy']:.4f}, "
        f"test loss {run['test_loss']:.4f}, {run['epochs_completed']} epochs, "
        f"{run['wall_seconds']:.0f} s → {out}", highlight=False,
    )


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Path = typer.Argument(..., help="weight file: .pt (a state_dict or training "
                                      "checkpoint), .safetensors, .npz or .onnx"),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="model name (default: from run.json beside it)"),
    dataset: str | None = typer.Option(None, "--dataset", "-d",
                                       help=f"{DATASET_HELP} (default: from run.json beside "
                                            "it)"),
    test_size: int | None = typer.Option(None, help="seeded test subset size"),
    batch_size: int = typer.Option(1000, help="evaluation batch size"),
    seed: int = typer.Option(0, help="seed of the test subset"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    data_dir: Path | None = typer.Option(None, help="data set directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON object"),
) -> None:
    """Evaluate a checkpoint on a data set's test split: prints accuracy and loss."""
    from ..errors import InputError
    from ..runtime import evaluate, load_trained

    trained = load_trained(checkpoint, model, dataset, eval_batch_size=batch_size,
                           test_size=test_size, data_dir=data_dir, seed=seed, device=device)
    if trained.test is None:
        raise InputError(f"evaluate {str(checkpoint)!r}: give --dataset (no run.json beside it)")
    result = evaluate(trained.model, trained.test, trained.device)
    if as_json:
        print(json.dumps({"checkpoint": str(checkpoint), "model": trained.model_spec,
                          "dataset": trained.dataset, "accuracy": result.accuracy,
                          "loss": result.loss, "n": result.n}))
    else:
        print(f"accuracy {result.accuracy:.4f}  loss {result.loss:.4f}  "
              f"({trained.model_spec} on {trained.dataset}, {checkpoint})")
