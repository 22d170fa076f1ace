"""The ``tensorize`` run: encode a trained model, fine-tune, record accuracy per epoch.

Writes into ``out``: ``tensorized.pt`` (see :mod:`.checkpoint`) and ``tensorize.nc``, an
xarray dataset with dims ``layer`` and ``epoch`` (epoch 0 = right after encoding).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..devices import resolve_device
from ..errors import InputError
from ..io import write_netcdf
from ..provenance import file_sha256, provenance
from .apply import apply
from .checkpoint import save
from .plan import plan
from .spec import load_spec, validate_spec

OPTIMIZERS = ("adam", "sgd")


def train_epoch(model: nn.Module, loader: Any, opt: torch.optim.Optimizer,
                device: torch.device) -> float:
    """One pass of cross-entropy training; returns the mean training loss."""
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        total += loss.item() * y.shape[0]
        n += y.shape[0]
    return total / max(n, 1)


def results_dataset(table: Any, history: Mapping[str, list[float]],
                    attrs: Mapping[str, Any]) -> xr.Dataset:
    """The ``tensorize.nc`` dataset from the apply() table and the per-epoch history."""
    layer = list(table["layer"])
    per_layer = {
        col: ("layer", np.asarray(table[col]))
        for col in ("params_before", "params_after", "compression", "init_rel_error")
    }
    text = {col: ("layer", np.asarray(table[col], dtype=str))
            for col in ("method", "kind", "shape", "rank", "group")}
    epochs = np.arange(len(history["accuracy"]))
    per_epoch = {k: ("epoch", np.asarray(v, dtype=float)) for k, v in history.items()}
    ds = xr.Dataset({**per_layer, **text, **per_epoch}, coords={"layer": layer, "epoch": epochs})
    ds["accuracy"].attrs["long_name"] = "test accuracy (epoch 0: right after encoding)"
    ds["init_rel_error"].attrs["long_name"] = "‖W̃ − W‖ / ‖W‖ of the initialisation"
    ds.attrs.update(attrs)
    return ds


def tensorize_run(
    checkpoint: str | os.PathLike,
    model: str,
    dataset: str,
    spec: str | os.PathLike | Mapping[str, Any],
    *,
    epochs: int,
    out: str | os.PathLike,
    lr: float = 1e-3,
    optimizer: str = "adam",
    batch_size: int = 128,
    eval_batch_size: int = 1000,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    loaders: tuple[Any, Any, Any] | None = None,
) -> xr.Dataset:
    """Encode ``checkpoint`` (a ``model`` trained on ``dataset``) per ``spec``, fine-tune for
    ``epochs`` and write ``tensorized.pt`` and ``tensorize.nc`` into ``out``.

    All input is validated before anything is encoded or written. ``loaders=(train, test,
    info)`` replaces :func:`corranalysis.data.make_loaders` (``info``: ``in_channels``,
    ``num_classes``, optionally ``image_size``).
    """
    # ---- validate everything first
    spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else validate_spec(spec)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs {epochs!r}: must be an integer ≥ 0")
    if not lr > 0:
        raise InputError(f"lr {lr!r}: must be > 0")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a directory")
    if not Path(checkpoint).is_file():
        raise InputError(f"checkpoint {str(checkpoint)!r} does not exist; give a .pt file")
    dev = resolve_device(device)
    from ..checkpoints import load_into
    from ..models import resolve_model

    torch.manual_seed(seed)
    if loaders is None:
        from ..data import make_loaders

        loaders = make_loaders(
            dataset, batch_size=batch_size, eval_batch_size=eval_batch_size, data_dir=data_dir,
            train_size=train_size, test_size=test_size, seed=seed,
        )
    train_loader, test_loader, info = loaders
    image_size = getattr(info, "image_size", None)
    base = resolve_model(model, info.in_channels, info.num_classes, image_size=image_size)
    load_into(base, checkpoint)
    plan(base, spec)  # raises InputError on any spec problem, before encoding

    # ---- encode
    from ..training import evaluate

    base = base.to(dev)
    base_acc, base_loss = evaluate(base, test_loader, dev)
    log(f"baseline: test accuracy {base_acc:.4f}  loss {base_loss:.4f}")
    t0 = time.perf_counter()
    new, table = apply(base.eval(), spec)
    encode_s = time.perf_counter() - t0
    for row in table.itertuples():
        log(f"  {row.layer:<16} {row.method:<6} {row.rank:<40} {row.params_before:>10} → "
            f"{row.params_after:>8} params ({row.compression:8.1f}×)  "
            f"init rel. error {row.init_rel_error:.4f}")
    new = new.to(dev)
    acc, loss = evaluate(new, test_loader, dev)
    log(f"epoch 0 (after encoding, {encode_s:.1f} s): test accuracy {acc:.4f}  loss {loss:.4f}")
    history: dict[str, list[float]] = {
        "accuracy": [acc], "loss": [loss], "train_loss": [float("nan")], "epoch_seconds": [0.0],
    }
    opt = (torch.optim.Adam(new.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(new.parameters(), lr=lr, momentum=0.9, nesterov=True))
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(new, train_loader, opt, dev)
        acc, loss = evaluate(new, test_loader, dev)
        dt = time.perf_counter() - t0
        for k, v in (("accuracy", acc), ("loss", loss), ("train_loss", train_loss),
                     ("epoch_seconds", dt)):
            history[k].append(v)
        log(f"epoch {epoch}: train loss {train_loss:.4f}  test accuracy {acc:.4f}  "
            f"loss {loss:.4f}  ({dt:.1f} s)")

    # ---- write
    before, after = int(table.params_before.sum()), int(table.params_after.sum())
    total_before = sum(p.numel() for p in base.parameters())
    total_after = sum(p.numel() for p in new.parameters())
    attrs = {
        "baseline_accuracy": base_acc, "baseline_loss": base_loss,
        "params_before_total": before, "params_after_total": after,
        "compression_total": before / max(after, 1),
        "model_params_before": total_before, "model_params_after": total_after,
        "encode_seconds": encode_s,
        **provenance(
            model=model, dataset=dataset, spec=spec, epochs=epochs, lr=lr, optimizer=optimizer,
            batch_size=batch_size, train_size=train_size, test_size=test_size, seed=seed,
            device=str(dev), checkpoint=str(checkpoint),
            checkpoint_sha256=file_sha256(checkpoint),
        ),
    }
    ds = results_dataset(table, history, attrs)
    out.mkdir(parents=True, exist_ok=True)
    save(out / "tensorized.pt", new, spec, model_name=model, in_channels=info.in_channels,
         num_classes=info.num_classes, image_size=image_size,
         extra={"baseline_accuracy": base_acc, "accuracy": history["accuracy"]})
    write_netcdf(ds, out / "tensorize.nc")
    log(f"wrote {out / 'tensorized.pt'} and {out / 'tensorize.nc'}")
    return ds
