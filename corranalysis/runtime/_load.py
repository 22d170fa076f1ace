"""Loading a trained model with its data: the one place every verb gets (model, data) from.

The model is named by a registry name or ``package.module:factory`` (default: the ``model`` of
the ``run.json`` beside the checkpoint) and sized for its data: the data set's channels,
classes and image size; without a data set (or with evaluation data only), the ``run.json``
beside the checkpoint, else the checkpoint's own first and last kernels. The checkpoint (a
``.pt``, ``.safetensors``, ``.npz`` or ``.onnx`` file) is fitted strictly (every missing,
unexpected or misshapen key is named; a tied weight stored once fills all its keys) and the
data is checked to fit the model's input.

The data is whatever :func:`corranalysis.data.as_loaders` takes: a built-in name, a spec of
your own data (``imagefolder:PATH``, ``PATH.npz``, ``package.module:factory``), a torch
Dataset or DataLoader (evaluation data), or a ``(train, test)`` pair of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DATASETS, as_loaders, make_loaders, resolve_name
from ..devices import resolve_device
from ..errors import InputError
from ..kernels import check_finite, load_into, read_arrays
from ..models import resolve_model
from ._optim import BATCH_SIZE

__all__ = ["GIVEN_FORMATS", "Trained", "check_data_fits", "check_weights", "load_trained",
           "run_record"]

#: ``dataset_format`` of a run.json whose data was given as objects (torch Datasets or
#: DataLoaders): its ``dataset`` describes them and cannot be loaded again by name
GIVEN_FORMATS = ("datasets", "dataloaders")
#: the weight files a checkpoint may be (:data:`corranalysis.kernels.READERS`), for messages
_FORMATS = ".pt, .safetensors, .npz or .onnx"


@dataclass
class Trained:
    """A trained model (eval mode, on ``device``) with its data.

    ``train``/``test`` are loaders of ``(x, y)`` batches (None when no data set was asked for;
    ``train`` is None for evaluation data alone); ``info`` has ``in_channels``,
    ``num_classes``, ``image_size`` (and ``name``, ``mean``, ``std`` … where the data gives
    a :class:`~corranalysis.data.DatasetInfo`); ``dataset`` is the name or spec, or a
    description of data given as objects; ``record`` is the ``run.json`` beside the
    checkpoint, if any.
    """

    model: nn.Module
    train: Iterable | None
    test: Iterable | None
    info: Any
    device: torch.device
    checkpoint: Path | None = None
    model_spec: str = ""
    dataset: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def run_record(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` beside ``checkpoint`` (``{}`` when there is none or it is unreadable)."""
    path = Path(checkpoint).parent / "run.json"
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _dims_of(state: Mapping[str, torch.Tensor], source: str) -> tuple[int, int]:
    """(in_channels, num_classes) read off a state_dict: first kernel's ``in``, last's ``out``."""
    kernels = [v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2]
    if not kernels:
        raise InputError(f"checkpoint {source!r} holds no kernel (no '*.weight' with >= 2 dims)")
    return int(kernels[0].shape[1]), int(kernels[-1].shape[0])


def check_weights(state: Mapping[str, torch.Tensor], source: str) -> None:
    """InputError unless every floating-point tensor of ``state`` is real, non-empty and
    finite (the one check of weights; integer buffers such as counters pass). ``source``
    names where they come from (``"checkpoint 'model.pt'"``, ``"model"``)."""
    for key, value in state.items():
        if value.is_complex():
            raise InputError(f"{source}: {key!r} is complex ({value.dtype}); "
                             "weights must be real floating-point tensors")
        if not value.is_floating_point():
            continue
        if value.numel() == 0 and value.ndim > 0:
            raise InputError(f"{source}: {key!r} is empty (shape "
                             f"{tuple(value.shape)}); the checkpoint is damaged")
        check_finite(key, value, source)


def _dataset_label(dataset: Any, info: Any) -> str | None:
    """What ``Trained.dataset`` records: the name or spec as given, else a description."""
    if dataset is None or isinstance(dataset, str):
        return dataset
    name = getattr(info, "name", None)
    return str(name) if name else f"given {type(dataset).__name__}"


def _check_labels(test: Iterable, num_classes: int, what: str) -> None:
    """InputError when in-memory evaluation labels reach beyond the model's classes."""
    labels = getattr(getattr(test, "dataset", None), "labels", None)
    if isinstance(labels, torch.Tensor) and len(labels) and int(labels.max()) >= num_classes:
        raise InputError(f"{what}: labels run to {int(labels.max())}, but the model has "
                         f"{num_classes} classes (0..{num_classes - 1}); give data of the "
                         "model's classes")


def check_data_fits(model: nn.Module, data: Iterable, device: torch.device,
                    what: str = "data") -> None:
    """InputError when the first batch of ``data`` does not fit ``model``'s input."""
    try:
        x = next(iter(data))[0]
    except StopIteration:
        raise InputError(f"{what} is empty; give at least one sample") from None
    try:
        with torch.no_grad():
            model.to(device).eval()(x[:2].to(device))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"{what}: inputs of shape {tuple(x.shape[1:])} do not fit the model ({first}); "
            "choose a data set with the model's input channels and image size"
        ) from None


def load_trained(
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    model: str | nn.Module | None = None,
    dataset: Any = None,
    *,
    loaders: tuple[Iterable, Iterable, Any] | None = None,
    batch_size: int | None = None,
    eval_batch_size: int = 1000,
    train_size: int | None = None,
    test_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    download: bool = True,
    with_data: bool = True,
) -> Trained:
    """The model of ``checkpoint`` (a path or a state_dict), fitted and checked, with its data.

    ``checkpoint``: a weight file of any format of :data:`corranalysis.kernels.READERS`
    (``.pt`` state dict or training checkpoint, ``.safetensors``, ``.npz``, ``.onnx``),
    loaded strictly with :func:`corranalysis.kernels.load_into` (a tied weight stored once
    fills all its keys), or a state_dict.
    ``model``/``dataset`` default to those in the ``run.json`` beside the checkpoint;
    ``dataset=None`` with no run.json, or ``with_data=False``, gives the model alone (as
    does a run.json of data given as objects, :data:`GIVEN_FORMATS`: pass them again).
    ``dataset``: a built-in name, a spec of your own data (``imagefolder:PATH``,
    ``PATH.npz``, ``package.module:factory``), a torch Dataset or DataLoader of ``(x, y)``
    (evaluation data: ``train`` is None, the model is sized from run.json or the checkpoint),
    or a ``(train, test)`` pair of Datasets or of DataLoaders (see
    :func:`corranalysis.data.as_loaders`). ``loaders=(train, test, info)`` replace all that
    (``info``: ``in_channels``, ``num_classes``, optionally ``image_size``). InputError for
    a missing or unreadable checkpoint, an unknown model or data set, a checkpoint that does
    not fit the model, or data that does not fit its input or its classes.
    """
    is_path = not isinstance(checkpoint, Mapping)
    source = str(checkpoint) if is_path else "state_dict"
    record = run_record(checkpoint) if is_path else {}
    if is_path and not Path(checkpoint).is_file():
        what = "is a folder" if Path(checkpoint).is_dir() else "does not exist"
        raise InputError(f"checkpoint {source!r} {what}; give the path of a weight file "
                         f"({_FORMATS})")
    model = model if model is not None else record.get("model")
    if model is None:
        raise InputError(f"checkpoint {source!r}: give --model (model=); no run.json beside "
                         "it names the model")
    if loaders is None and dataset is None and with_data \
            and record.get("dataset_format") not in GIVEN_FORMATS:  # objects are not reloaded
        dataset = record.get("dataset")
    if loaders is None and isinstance(dataset, str) and with_data \
            and dataset not in DATASETS:  # a spec is "in": its files are checked on loading
        resolve_name(dataset)  # raises, naming the valid names and spec forms
        raise InputError(f"data set {dataset!r} is unknown; valid: {', '.join(DATASETS)}")
    weights = read_arrays(checkpoint) if is_path else None
    state = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v))
             for k, v in (weights.arrays if weights is not None else checkpoint).items()}
    dev = resolve_device(device)
    train = test = info = None
    if loaders is not None:
        train, test, info = loaders
    elif dataset is not None and with_data:
        train, test, info = (make_loaders if isinstance(dataset, str) else as_loaders)(
            dataset, batch_size=batch_size or BATCH_SIZE, eval_batch_size=eval_batch_size,
            data_dir=data_dir, train_size=train_size, test_size=test_size, seed=seed,
            device=str(dev), download=download)
    label = _dataset_label(dataset, info)
    what = f"data set {label or 'given'!r}"
    sizes = info
    if info is None or (loaders is None and train is None and test is not None):
        # no data, or evaluation data alone: size the model as it was trained
        if {"in_channels", "num_classes"} <= set(record):
            sizes = SimpleNamespace(in_channels=int(record["in_channels"]),
                                    num_classes=int(record["num_classes"]),
                                    image_size=record.get("image_size"))
        else:
            in_channels, num_classes = _dims_of(state, source)
            sizes = SimpleNamespace(in_channels=in_channels, num_classes=num_classes,
                                    image_size=None)
        if sizes.image_size is None and test is not None:
            sizes.image_size = (getattr(info, "image_size", None)
                                or _first_image_size(test, what))
        if label is not None:
            sizes.name = label
        info = sizes
    net = resolve_model(model, int(sizes.in_channels), int(sizes.num_classes),
                        image_size=getattr(sizes, "image_size", None))
    check_weights(state, f"checkpoint {source!r}")
    # strictly, naming every mismatch; tied weights stored once (.safetensors) are filled
    load_into(net, weights if weights is not None else state, source=source)
    net.to(dev).eval()
    if test is not None:
        check_data_fits(net, test, dev, what=what)
        _check_labels(test, int(sizes.num_classes), what)
    name = model if isinstance(model, str) else type(model).__name__
    return Trained(net, train, test, info, dev, Path(checkpoint) if is_path else None,
                   name, label, record)


def _first_image_size(data: Iterable, what: str) -> int | None:
    """The side of the first batch's images (None when they are not square images)."""
    try:
        x = next(iter(data))[0]
    except StopIteration:
        raise InputError(f"{what} is empty; give at least one sample") from None
    shape = tuple(getattr(x, "shape", ()))
    return int(shape[-1]) if len(shape) == 4 and shape[-1] == shape[-2] else None
