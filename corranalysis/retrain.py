"""Recovery: re-train a truncated model and record test accuracy per epoch.

Three modes, all on the runtime's one training loop (:func:`corranalysis.runtime.fit`):

* ``dense``: the weights move freely after the truncation;
* ``projected``: after every optimiser step the plan is re-applied at the χ it first resolved
  to, so each truncated kernel keeps its compressed correlation structure;
* ``local``: like ``projected``, but the objective is each truncated layer's output error
  ‖W̃ ⋆ X − W ⋆ X‖² / ‖W ⋆ X‖² on the dense model's inputs X to that layer (summed over the
  layers), so each layer learns to reproduce the dense layer, not the labels.

A plan may truncate data-aware (``truncation: data-aware``): its input Grams are taken
from the dense model on :data:`GRAM_IMAGES` training images before truncating.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import Dataset

from .data import as_loaders
from .devices import resolve_device
from .errors import InputError, check_opt
from .io import read_netcdf
from .linkage import accuracy_drop
from .provenance import provenance
from .runtime import BATCH_SIZE, Optim, evaluate, fit, input_grams, model_sha256
from .truncation import PlanLike, apply_plan, chi_plan, entry_gram, resolve_plan

__all__ = ["MODES", "FINE_TUNE", "auto_plan", "plan_from_option", "retrain"]

MODES = ("dense", "projected", "local")
#: Re-training defaults: a tenth of the training learning rate, same schedule and warm-up.
FINE_TUNE = Optim(lr=0.002)
#: Training images whose input Grams a data-aware plan uses (about; whole batches).
GRAM_IMAGES = 2048


def auto_plan(sweep_ds: xr.Dataset, min_drop: float = 10.0) -> dict[str, Any]:
    """The most aggressive trial plan of a sweep whose accuracy drop is ≥ ``min_drop`` points.

    "Most aggressive" = largest norm loss (ties: fewest factorised parameters, then the
    largest drop). Raises InputError when no trial drops that far.
    """
    if "plan" not in sweep_ds or "accuracy" not in sweep_ds:
        raise InputError("sweep file has no 'plan'/'accuracy' variables; give the output of "
                         "corranalysis sweep")
    drop = accuracy_drop(sweep_ds)
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


def _local_loss(dense: nn.Module, layers: list[str]):
    """The ``local`` objective: summed relative output error of the truncated layers."""
    dense_mods = dict(dense.named_modules())
    inputs: dict[str, torch.Tensor] = {}
    for name in layers:
        dense_mods[name].register_forward_pre_hook(
            lambda m, args, name=name: inputs.__setitem__(name, args[0].detach()))

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        mods = dict(model.named_modules())
        with torch.no_grad():
            dense(x)
            logits = model(x)
        total = x.new_zeros(())
        for name in layers:
            with torch.no_grad():
                target = dense_mods[name](inputs[name])
            err = mods[name](inputs[name]) - target
            total = total + err.pow(2).sum() / target.pow(2).sum().clamp_min(1e-30)
        return total, logits

    return loss_fn


def retrain(
    model: nn.Module,
    plan: PlanLike,
    train_loader: Iterable,
    test_loader: Iterable,
    epochs: int,
    mode: str = "dense",
    *,
    optim: Optim = FINE_TUNE,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = False,
    batch_size: int = BATCH_SIZE,
) -> xr.Dataset:
    """Truncate ``model`` by ``plan``, train it ``epochs`` epochs, test after every epoch.

    ``train_loader``/``test_loader``: iterables of ``(x, y)`` batches (DataLoaders), or both
    torch Datasets of ``(x float (C, H, W), int y)`` items, checked and batched by
    :func:`corranalysis.data.as_loaders` (training batches of ``batch_size``, shuffled with
    ``seed``). The model is modified in place (pass a copy to keep the original).

    Returns a dataset with dim ``epoch`` (0 = the truncated start): ``accuracy``
    (fraction), ``loss`` and ``train_loss`` (mean training objective of the epoch:
    cross-entropy, or the summed output error in ``local`` mode); with dims ``(epoch,
    layer)``: ``norm_loss`` (what re-applying the plan at its χ would discard now: 0 at
    epoch 0 and always 0 in ``projected``/``local`` mode) and ``drift`` (‖W_e − W̃_0‖/‖W̃_0‖,
    movement away from the truncated start). Attrs: mode, plan, chi plan, the optimiser
    settings, ``baseline_accuracy`` (untruncated).
    """
    check_opt("mode", mode, MODES)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs={epochs!r}: give a number of epochs >= 0")
    dev = resolve_device(device)
    if isinstance(train_loader, Dataset) or isinstance(test_loader, Dataset):
        train_loader, test_loader, _ = as_loaders((train_loader, test_loader),
                                                  batch_size=batch_size, seed=seed, device=dev)
    model.to(dev)
    resolved = resolve_plan(model, plan)
    baseline = evaluate(model, test_loader, dev)
    dense = copy.deepcopy(model).eval() if mode == "local" else None
    aware = [n for n, e in resolved.items() if e.truncation == "data-aware"]
    grams = None
    if aware:
        size = getattr(train_loader, "batch_size", None) or BATCH_SIZE
        grams = input_grams(model, train_loader, aware, dev,
                            max_batches=max(1, -(-GRAM_IMAGES // size)))
    metrics = apply_plan(model, resolved, grams)
    fixed = chi_plan(resolved, metrics)
    layers = list(resolved.entries)
    mods = _layer_modules(model, layers)
    start = {n: mods[n].weight.detach().clone() for n in layers}

    def structure(epoch: int, net: nn.Module) -> dict[str, Any]:
        losses, drifts = [], []
        for n in layers:
            w = mods[n].weight.detach()
            e = fixed.entries[n]
            losses.append(e.truncate(w, gram=entry_gram(n, e, grams)).metrics.norm_loss)
            drifts.append(float(torch.linalg.vector_norm(w - start[n])
                                / torch.linalg.vector_norm(start[n]).clamp_min(1e-30)))
        return {"norm_loss": losses, "drift": drifts}

    done = fit(model, train_loader, optim=optim, epochs=epochs, test_data=test_loader,
               device=dev, seed=seed, on_epoch=structure, record_start=True,
               after_step=None if mode == "dense" else (
                   lambda net: apply_plan(net, fixed, grams)),
               loss_fn=_local_loss(dense, layers) if dense is not None else None,
               progress=progress, desc=f"retrain ({mode})")
    h = done.history
    model.eval()
    ds = xr.Dataset(
        {
            "accuracy": ("epoch", np.array(h["test_accuracy"]),
                         {"long_name": "test accuracy", "units": "fraction"}),
            "loss": ("epoch", np.array(h["test_loss"]),
                     {"long_name": "test loss", "units": "nat"}),
            "train_loss": ("epoch", np.array(h["train_loss"]),
                           {"long_name": "mean training objective of the epoch"}),
            "seconds": ("epoch", np.cumsum(np.nan_to_num(np.array(
                h.get("epoch_seconds", [0.0] * len(h["epoch"])), dtype=float))),
                        {"long_name": "wall time of re-training up to the epoch's end",
                         "units": "s"}),
            "norm_loss": (("epoch", "layer"), np.array(h["norm_loss"]).reshape(-1, len(layers)),
                          {"long_name": "norm loss re-applying the plan at its chi would cause"}),
            "drift": (("epoch", "layer"), np.array(h["drift"]).reshape(-1, len(layers)),
                      {"long_name": "|W_e - W~_0| / |W~_0|"}),
            "start_norm_loss": (("layer",), np.array([metrics[n].norm_loss for n in layers]),
                                {"long_name": "norm loss of the initial truncation"}),
        },
        coords={"epoch": np.asarray(h["epoch"]), "layer": layers},
    )
    ds.attrs.update(provenance(mode=mode, plan=resolved.as_dict(), chi_plan=fixed.as_dict(),
                               optim=optim.as_dict(), seed=seed, device=str(dev)))
    ds.attrs["baseline_accuracy"] = baseline.accuracy
    ds.attrs["n_test"] = baseline.n
    ds.attrs["truncated_accuracy"] = h["test_accuracy"][0]
    return ds


def plan_from_option(plan: str, sweep_path: str | None, min_drop: float = 10.0,
                     model: nn.Module | None = None) -> Mapping[str, Any] | str:
    """``--plan``: a plan file path, or ``auto`` with a sweep file (see :func:`auto_plan`).

    With ``model``, a sweep recorded on other weights (its ``model_sha256``) is refused.
    """
    if plan == "auto":
        if not sweep_path:
            raise InputError("--plan auto needs --sweep SWEEP.nc to choose the plan from")
        sweep_ds = read_netcdf(sweep_path)
        recorded = sweep_ds.attrs.get("model_sha256")
        if model is not None and recorded and recorded != model_sha256(model):
            raise InputError(f"--sweep {str(sweep_path)!r} was made on other weights than this "
                             "checkpoint (model_sha256 differs); sweep this checkpoint first")
        return auto_plan(sweep_ds, min_drop)
    return plan
