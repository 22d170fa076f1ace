"""Recovery: re-train a truncated model and record test accuracy per epoch.

Two modes: ``dense`` (the weights move freely after the truncation) and
``projected`` (after every optimiser step the plan is re-applied at the χ it first
resolved to, so each truncated kernel keeps its compressed correlation structure).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .devices import resolve_device
from .errors import InputError
from .evaluation import evaluate
from .provenance import provenance
from .truncation import PlanLike, apply_plan, chi_plan, resolve_plan, truncate

MODES = ("dense", "projected")
OPTIMIZERS = ("sgd", "adam")


def auto_plan(sweep_ds: xr.Dataset, min_drop: float = 10.0) -> dict[str, Any]:
    """The most aggressive trial plan of a sweep whose accuracy drop is ≥ ``min_drop`` points.

    "Most aggressive" = largest norm loss (ties: fewest factorised parameters, then the
    largest drop). Raises InputError when no trial drops that far.
    """
    if "plan" not in sweep_ds or "accuracy" not in sweep_ds:
        raise InputError("sweep file has no 'plan'/'accuracy' variables; give the output of "
                         "corranalysis sweep")
    base = float(sweep_ds.attrs["baseline_accuracy"])
    drop = 100.0 * (base - sweep_ds["accuracy"].values)
    idx = np.nonzero(drop >= min_drop)[0]
    if idx.size == 0:
        raise InputError(f"no trial of the sweep drops accuracy by >= {min_drop:g} points "
                         f"(largest drop {np.max(drop):.2f}); give --plan explicitly")
    nl = sweep_ds["norm_loss"].values[idx]
    params = sweep_ds["params_factorized"].values[idx]
    best = idx[np.lexsort((-drop[idx], params, -nl))[0]]
    return json.loads(str(sweep_ds["plan"].values[best]))


def _layer_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    mods = dict(model.named_modules())
    return {n: mods[n] for n in names}


def retrain(
    model: nn.Module,
    plan: PlanLike,
    train_loader: Iterable,
    test_loader: Iterable,
    epochs: int,
    mode: str = "dense",
    *,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """Truncate ``model`` by ``plan``, train it ``epochs`` epochs, test after every epoch.

    The model is modified in place (pass a copy to keep the original). Returns a dataset
    with dim ``epoch`` (0 = the truncated start): ``accuracy`` (fraction), ``loss`` and
    ``train_loss`` (mean cross-entropy); with dims ``(epoch, layer)``: ``norm_loss``
    (what re-applying the plan at its χ would discard now: 0 at epoch 0 and always 0 in
    ``projected`` mode) and ``drift`` (‖W_e − W̃_0‖/‖W̃_0‖, movement away from the
    truncated start). Attrs: mode, plan, chi plan, ``baseline_accuracy`` (untruncated).
    """
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is unknown; valid: {', '.join(MODES)}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r} is unknown; valid: {', '.join(OPTIMIZERS)}")
    if not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs={epochs!r}: give a number of epochs >= 0")
    if not lr > 0:
        raise InputError(f"lr={lr!r}: the learning rate must be > 0")
    dev = resolve_device(device)
    model.to(dev)
    resolved = resolve_plan(model, plan)
    model.eval()
    baseline = evaluate(model, test_loader, dev)
    metrics = apply_plan(model, resolved)
    fixed = chi_plan(resolved, metrics)
    layers = list(resolved.entries)
    mods = _layer_modules(model, layers)
    start = {n: mods[n].weight.detach().clone() for n in layers}

    def structure() -> tuple[list[float], list[float]]:
        losses, drifts = [], []
        for n in layers:
            w = mods[n].weight.detach()
            e = fixed.entries[n]
            losses.append(truncate(w, e.cuts, e.keeps, e.legs).metrics.norm_loss)
            drifts.append(float(torch.linalg.vector_norm(w - start[n])
                                / torch.linalg.vector_norm(start[n]).clamp_min(1e-30)))
        return losses, drifts

    rec: dict[str, list] = {"accuracy": [], "loss": [], "train_loss": [], "norm_loss": [],
                            "drift": []}

    def record(train_loss: float) -> None:
        model.eval()
        r = evaluate(model, test_loader, dev)
        nl, dr = structure()
        rec["accuracy"].append(r.accuracy)
        rec["loss"].append(r.loss)
        rec["train_loss"].append(train_loss)
        rec["norm_loss"].append(nl)
        rec["drift"].append(dr)

    record(float("nan"))
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
           if optimizer == "sgd" else
           torch.optim.Adam(params, lr=lr, weight_decay=weight_decay))
    criterion = nn.CrossEntropyLoss()
    epoch_iter: Iterable[int] = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc=f"retrain ({mode})", unit="epoch")
    for _ in epoch_iter:
        model.train()
        total, n = 0.0, 0
        for batch in train_loader:
            x, y = batch[0].to(dev), batch[1].to(dev)
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
            if mode == "projected":
                apply_plan(model, fixed)
            total += float(loss.item()) * int(y.shape[0])
            n += int(y.shape[0])
        record(total / max(n, 1))
    model.eval()
    ds = xr.Dataset(
        {
            "accuracy": ("epoch", np.array(rec["accuracy"]),
                         {"long_name": "test accuracy", "units": "fraction"}),
            "loss": ("epoch", np.array(rec["loss"]), {"long_name": "test loss", "units": "nat"}),
            "train_loss": ("epoch", np.array(rec["train_loss"]),
                           {"long_name": "mean training loss of the epoch", "units": "nat"}),
            "norm_loss": (("epoch", "layer"), np.array(rec["norm_loss"]).reshape(-1, len(layers)),
                          {"long_name": "norm loss re-applying the plan at its chi would cause"}),
            "drift": (("epoch", "layer"), np.array(rec["drift"]).reshape(-1, len(layers)),
                      {"long_name": "|W_e - W~_0| / |W~_0|"}),
            "start_norm_loss": (("layer",), np.array([metrics[n].norm_loss for n in layers]),
                                {"long_name": "norm loss of the initial truncation"}),
        },
        coords={"epoch": np.arange(epochs + 1), "layer": layers},
    )
    ds.attrs.update(provenance(mode=mode, plan=resolved.as_dict(), chi_plan=fixed.as_dict(),
                               optimizer=optimizer, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, seed=seed, device=str(dev)))
    ds.attrs["baseline_accuracy"] = baseline.accuracy
    ds.attrs["truncated_accuracy"] = rec["accuracy"][0]
    return ds


def plan_from_option(plan: str, sweep_path: str | None, min_drop: float = 10.0
                     ) -> Mapping[str, Any] | str:
    """``--plan``: a plan file path, or ``auto`` with a sweep file (see :func:`auto_plan`)."""
    if plan == "auto":
        if not sweep_path:
            raise InputError("--plan auto needs --sweep SWEEP.nc to choose the plan from")
        from .io import read_netcdf

        return auto_plan(read_netcdf(sweep_path), min_drop)
    return plan
