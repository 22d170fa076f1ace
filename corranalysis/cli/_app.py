"""The Typer application every CLI verb registers on, and its console."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="corranalysis",
    help="Correlation compressibility of neural-network kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# Options shared by several verbs: one declaration each.
Checkpoint = Annotated[Path, typer.Argument(
    help="weight file: .pt (a state_dict or training checkpoint), .safetensors, .npz or .onnx")]
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="model name or package.module:factory (default: from the run.json "
    "beside the checkpoint)")]
#: what ``--dataset`` may name (corranalysis.data.spec)
DATASET_HELP = ("fashion-mnist, mnist, cifar10, cifar100, imagefolder:PATH, PATH.npz or "
                "package.module:factory")
DatasetOption = Annotated[str | None, typer.Option(
    "--dataset", "-d", help=f"{DATASET_HELP} (default: from run.json)")]
# The optimiser options of the verbs that train (train, retrain); each verb gives its defaults.
OptimizerOption = Annotated[str, typer.Option(help="sgd (Nesterov momentum), adam or adamw")]
LrOption = Annotated[float, typer.Option(help="peak learning rate (after warm-up)")]
MomentumOption = Annotated[float, typer.Option(help="SGD momentum")]
WeightDecayOption = Annotated[float, typer.Option(help="L2 weight decay")]
ScheduleOption = Annotated[str, typer.Option(
    help="cosine, step (×0.1 at 50%/75%) or constant")]
WarmupOption = Annotated[float, typer.Option(help="fraction of the steps spent in linear warm-up")]
BatchSizeOption = Annotated[int, typer.Option(help="training batch size")]
OverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="replace an existing --out that corranalysis did not write")]
