"""Training a model from scratch into a run directory, on the one training loop.

:func:`train` writes into its output directory

``checkpoint.pt``  model + optimizer + scheduler (+ GradScaler) + RNG states + epoch + config,
                   written atomically after every epoch; removed once the run is complete
``metrics.nc``     per-epoch xarray Dataset (dim ``epoch``): ``train_loss``, ``train_accuracy``,
                   ``test_loss``, ``test_accuracy``, ``lr``, ``epoch_seconds``
``model.pt``       the final weights, a plain state_dict (CPU tensors)
``run.json``       config, data set and its checksum, final metrics, provenance (written last:
                   its presence marks a complete run)

The data set is a name or spec (``fashion-mnist``, ``imagefolder:PATH``, ``PATH.npz``,
``package.module:factory``), or data given as objects: a ``(train, test)`` pair of torch
Datasets or of DataLoaders (:func:`corranalysis.data.as_loaders`). Given data is recorded by
its description (``given Datasets``) and a SHA-256 of its contents, which is part of the
run's identity, so the same call with the same data resumes and other data is another run.

Rerunning the same call after an interruption (even ``kill -9``) continues at the next
epoch, and on the CPU the final weights equal those of an uninterrupted run: every epoch
reseeds the global torch RNG and the loader's shuffling generator from ``(seed, epoch)``.
An output directory holding a run with a different config is refused unless
``overwrite=True``. Accuracies are fractions in [0, 1]; losses are mean cross-entropy (nats).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.std import tqdm  # tqdm.write only (tqdm.auto warns in kernels without ipywidgets)

from ..data import DATASETS, as_loaders, dataset_checksum, make_loaders
from ..devices import resolve_device
from ..errors import InputError
from ..io import atomic_path, check_output_path, write_json, write_netcdf
from ..models import MODELS, available, count_parameters, model_name, resolve_model
from ..provenance import file_sha256, git_commit, package_versions, provenance
from ._loop import HISTORY_KEYS, fit, read_state
from ._optim import BATCH_SIZE, DEFAULT_OPTIM, Optim

__all__ = ["RUN_FILES", "history_dataset", "run_config", "save_state_dict", "train"]

RUN_FILES = ("checkpoint.pt", "metrics.nc", "model.pt", "run.json")
#: Config keys that define a run (a directory holding other values is a different run).
CONFIG_KEYS = ("model", "dataset", "epochs", "optimizer", "lr", "momentum", "weight_decay",
               "schedule", "warmup", "label_smoothing", "batch_size", "train_size", "test_size",
               "seed", "dataset_checksum")
_UNITS = {"lr": "1", "epoch_seconds": "s", "train_loss": "nats", "test_loss": "nats",
          "train_accuracy": "fraction", "test_accuracy": "fraction"}


def run_config(model: str | nn.Module, dataset: str, *, epochs: int, optim: Optim,
               batch_size: int, train_size: int | None, test_size: int | None,
               seed: int, dataset_checksum: str | None = None) -> dict[str, Any]:
    """The config dict that identifies a run (the keys of :data:`CONFIG_KEYS`);
    ``dataset_checksum`` only for data given as objects (``dataset`` then describes them)."""
    config = {
        "model": model_name(model), "dataset": str(dataset), "epochs": int(epochs),
        **optim.as_dict(), "batch_size": int(batch_size),
        "train_size": None if train_size is None else int(train_size),
        "test_size": None if test_size is None else int(test_size), "seed": int(seed),
    }
    if dataset_checksum is not None:
        config["dataset_checksum"] = str(dataset_checksum)
    return config


def _check_args(model: str | nn.Module, dataset: Any, epochs: int, batch_size: int,
                train_size: int | None, test_size: int | None, have_loaders: bool) -> None:
    if isinstance(model, str) and ":" not in model and model.lower() not in MODELS:
        raise InputError(
            f"model {model!r} is unknown; valid: {', '.join(available())} "
            "(or 'package.module:factory' for your own model)"
        )
    if not have_loaders and dataset not in DATASETS:
        raise InputError(f"data set {dataset!r} is unknown; valid: {', '.join(DATASETS)}")
    checks = [
        ("epochs", epochs, "an integer ≥ 1"),
        ("batch_size", batch_size, "an integer ≥ 1"),
        ("train_size", train_size, "an integer ≥ 1 (or None for the full set)"),
        ("test_size", test_size, "an integer ≥ 1 (or None for the full set)"),
    ]
    for label, value, what in checks:
        if value is None and label.endswith("_size") and label != "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{label} {value!r} is invalid; expected {what}")


def _describe_loaders(train: Iterable, test: Iterable) -> tuple[SimpleNamespace, str]:
    """(info, checksum) of a pair of DataLoaders, from one pass over the test loader: its
    images give ``in_channels`` and ``image_size``, its largest label + 1 ``num_classes``;
    the checksum covers its batches and the training loader's length."""
    digest = hashlib.sha256()
    shape, top = None, -1
    for x, y in test:
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        shape = shape or tuple(x.shape[1:])
        digest.update(x.detach().cpu().contiguous().numpy().tobytes())
        digest.update(y.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
        if y.numel():
            top = max(top, int(y.max()))
    if shape is None or top < 0:
        raise InputError("data set 'given DataLoaders': the test DataLoader is empty; give "
                         "evaluation data")
    try:
        digest.update(f"train batches {len(train)}".encode())  # type: ignore[arg-type]
    except TypeError:  # an iterable-style loader has no length
        pass
    info = SimpleNamespace(
        name="given DataLoaders", format="dataloaders", num_classes=top + 1,
        in_channels=int(shape[0]) if shape else 1,
        image_size=int(shape[-1]) if len(shape) == 3 and shape[1] == shape[2] else None)
    return info, digest.hexdigest()


def _given_data(data: Any, *, batch_size: int, eval_batch_size: int,
                train_size: int | None, test_size: int | None, seed: int,
                device: torch.device) -> tuple[Iterable, Iterable, Any, str]:
    """(train loader, test loader, info, checksum) of training data given as objects."""
    train_loader, test_loader, info = as_loaders(
        data, batch_size=batch_size, eval_batch_size=eval_batch_size, train_size=train_size,
        test_size=test_size, seed=seed, device=str(device))
    if train_loader is None:
        raise InputError(f"data set ({type(data).__name__}): training needs a (train, test) "
                         "pair of torch Datasets or of DataLoaders, not evaluation data alone")
    if info is not None:  # Datasets: checked, the test split held with the checksum of both
        return train_loader, test_loader, info, test_loader.dataset.checksum  # type: ignore[attr-defined]
    if train_size is not None or test_size is not None:
        raise InputError("train_size/test_size take seeded subsets of Datasets, not of "
                         "DataLoaders; give the Datasets, or loaders of the subsets")
    return train_loader, test_loader, *_describe_loaders(train_loader, test_loader)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{k} {old.get(k)!r} vs {new.get(k)!r}"
            for k in CONFIG_KEYS if old.get(k) != new.get(k)]


def _existing_run(out: Path, config: dict, overwrite: bool) -> tuple[str, dict | None]:
    """What ``out`` holds: ("complete", run.json) / ("resume", None) / ("fresh", None).

    A different run raises :class:`InputError` unless ``overwrite`` (then its files go).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file; give a directory for the run")
    run = _read_json(out / "run.json") if (out / "run.json").is_file() else None
    state = None
    if (out / "checkpoint.pt").is_file():
        state = read_state(out / "checkpoint.pt")
        if state is None and not overwrite:
            raise InputError(
                f"output directory {str(out)!r} holds an unreadable checkpoint.pt; "
                "delete it or pass --overwrite (overwrite=True)"
            )
    held = []
    if run is not None:
        held.append(("complete", run, run.get("config", {})))
    if state is not None:
        held.append(("resume", None, json.loads(state["identity"]).get("run", {})))
    for kind, obj, old in held:
        diff = _config_diff(old, config)
        if not diff:
            if kind == "complete" and (out / "model.pt").is_file():
                return kind, obj
            if kind == "resume":
                return kind, None
            continue
        if not overwrite:
            raise InputError(
                f"output directory {str(out)!r} holds a different run ({'; '.join(diff)}); "
                "choose another --out or pass --overwrite (overwrite=True) to replace it"
            )
    if overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return "fresh", None


def save_state_dict(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as a plain state_dict of CPU tensors, atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def history_dataset(history: Mapping[str, list], attrs: Mapping[str, Any]) -> xr.Dataset:
    """The per-epoch history of :func:`~corranalysis.runtime.fit` as a Dataset (dim ``epoch``)."""
    ds = xr.Dataset(
        {k: ("epoch", np.asarray(history[k], dtype=np.float64), {"units": _UNITS[k]})
         for k in HISTORY_KEYS},
        coords={"epoch": np.asarray(history["epoch"])},
    )
    ds.attrs.update(attrs)
    return ds


def train(
    model: str | nn.Module,
    dataset: Any,
    *,
    epochs: int,
    out: str | os.PathLike,
    optimizer: str = DEFAULT_OPTIM.optimizer,
    lr: float = DEFAULT_OPTIM.lr,
    momentum: float = DEFAULT_OPTIM.momentum,
    weight_decay: float = DEFAULT_OPTIM.weight_decay,
    schedule: str = DEFAULT_OPTIM.schedule,
    warmup: float = DEFAULT_OPTIM.warmup,
    label_smoothing: float = DEFAULT_OPTIM.label_smoothing,
    batch_size: int = BATCH_SIZE,
    eval_batch_size: int = 1000,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    num_threads: int | None = None,
    download: bool = True,
    loaders: tuple[Iterable, Iterable, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` for ``epochs``; write the run into ``out``; return run.json.

    ``model``: a registry name (``cnn4``, ``resnet18``, ...), ``package.module:factory`` or an
    ``nn.Module`` (trained in place). ``dataset``: a name of :data:`corranalysis.data.DATASETS`
    or a spec of your own data (``imagefolder:PATH``, ``PATH.npz``, ``package.module:factory``),
    loaded with :func:`corranalysis.data.make_loaders` (``train_size``/``test_size`` take seeded
    subsets); a ``(train, test)`` pair of torch Datasets of ``(x float (C, H, W), int y)``
    (checked and batched by :func:`corranalysis.data.as_loaders`, subsets as for names) or of
    DataLoaders (used as given; channels, image size and classes read off the test loader,
    its largest label + 1 being the number of classes); run.json records such data by its
    description and checksum (``dataset``, ``dataset_checksum``, ``dataset_format``). Or pass
    ``loaders=(train_loader, test_loader, info)`` (``info`` needs ``in_channels``,
    ``num_classes``, ``image_size``; ``dataset`` is then only the recorded name). The
    optimiser settings are those of :class:`Optim` (defaults: :data:`DEFAULT_OPTIM`).
    ``device="auto"`` uses CUDA with float16 autocast + GradScaler when present; on the CPU
    the run is reproducible. ``num_threads`` sets torch's CPU threads for the call.
    Re-running a complete run returns its run.json without training; an interrupted one
    resumes from ``checkpoint.pt``.
    """
    optim = Optim(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                  schedule=schedule, warmup=warmup, label_smoothing=label_smoothing)
    given = loaders is None and not isinstance(dataset, str)  # data as objects
    _check_args(model, dataset, epochs, batch_size, train_size, test_size,
                loaders is not None or given)
    dev = resolve_device(device)
    out = check_output_path(out, directory=True)
    checksum = None
    if given:  # read (and checked) first: their checksum is part of the run's identity
        train_loader, test_loader, info, checksum = _given_data(
            dataset, batch_size=batch_size, eval_batch_size=eval_batch_size,
            train_size=train_size, test_size=test_size, seed=seed, device=dev)
        dataset = str(info.name)
    config = run_config(model, dataset, epochs=epochs, optim=optim, batch_size=batch_size,
                        train_size=train_size, test_size=test_size, seed=seed,
                        dataset_checksum=checksum)
    state, held = _existing_run(out, config, overwrite)
    if state == "complete":
        if progress:
            tqdm.write(f"run in {out} is already complete (test accuracy "
                       f"{held.get('test_accuracy', float('nan')):.4f}); nothing to do")
        return held

    if loaders is not None:
        train_loader, test_loader, info = loaders
    elif not given:
        train_loader, test_loader, info = make_loaders(
            dataset, batch_size=batch_size, eval_batch_size=eval_batch_size, data_dir=data_dir,
            train_size=train_size, test_size=test_size, seed=seed, device=str(dev),
            download=download,
        )
        checksum = dataset_checksum(dataset, data_dir=data_dir)
    in_channels, num_classes = int(info.in_channels), int(info.num_classes)
    image_size = None if info.image_size is None else int(info.image_size)
    if len(train_loader) == 0:
        raise InputError(f"data set {dataset!r}: the training set is empty")

    torch.manual_seed(seed)
    net = resolve_model(model, in_channels, num_classes, image_size=image_size)
    out.mkdir(parents=True, exist_ok=True)
    attrs = provenance(model=config["model"], dataset=str(dataset),
                       dataset_checksum=checksum or "", config=config, device=str(dev))

    def write_metrics(history: Mapping[str, list]) -> None:
        write_netcdf(history_dataset(history, attrs), out / "metrics.nc")

    done = fit(net, train_loader, optim=optim, epochs=epochs, test_data=test_loader,
               device=dev, seed=seed, checkpoint=out / "checkpoint.pt",
               identity={"run": config}, after_epoch=write_metrics, progress=progress,
               desc=f"{config['model']} on {dataset}", num_threads=num_threads)
    history = done.history
    save_state_dict(net, out / "model.pt")
    amp = dev.type == "cuda"
    rows = [dict(zip(HISTORY_KEYS, row, strict=True))
            for row in zip(*(history[k] for k in HISTORY_KEYS), strict=True)]
    run = {
        "model": config["model"], "in_channels": in_channels, "num_classes": num_classes,
        "image_size": image_size, "n_params": count_parameters(net),
        "dataset": str(dataset), "dataset_checksum": checksum,
        "dataset_format": getattr(info, "format", None),
        "test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
        "train_accuracy": history["train_accuracy"][-1],
        "train_loss": history["train_loss"][-1],
        "epochs_completed": len(history["test_accuracy"]),
        "config": config,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if amp else ""),
        "amp": amp, "num_threads": num_threads or torch.get_num_threads(),
        "wall_seconds": round(done.wall_seconds, 3),
        "train_seconds": round(sum(history["epoch_seconds"]), 3),
        "resumed_at_epochs": done.resumed_at,
        "files": {"model": "model.pt", "metrics": "metrics.nc"},
        "model_sha256": file_sha256(out / "model.pt"),
        "history": rows,
        "package_versions": package_versions(), "git_commit": git_commit(),
        "created": attrs["created"],
    }
    write_json(run, out / "run.json")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return run
