"""Recovery: re-train a truncated model and record test accuracy per epoch.

Four modes, all on the runtime's one training loop (:func:`corranalysis.runtime.fit`), with
the same optimiser, schedule, epochs and seed:

* ``dense``: the weights move freely after the truncation;
* ``projected``: after every optimiser step the plan is re-applied at the χ it first resolved
  to, so each truncated kernel keeps its compressed correlation structure;
* ``local``: like ``projected``, but the objective is each truncated layer's output error
  ‖W̃ ⋆ X − W ⋆ X‖² / ‖W ⋆ X‖² on the dense model's inputs X to that layer (summed over the
  layers), so each layer learns to reproduce the dense layer, not the labels;
* ``control``: the *untruncated* model trained the same way: what extra training alone
  gives, the yardstick of "recovered".

Every mode also records, after every epoch, what the plan would do to the weights *now*:
the norm loss of re-truncating each planned kernel at the plan's χ, the test accuracy of
the re-truncated model, and each kernel's spectrum across the plan's cut. Dense re-training
that "recovers" accuracy by leaving the low-rank structure (re-truncation norm loss well
above 0, re-truncated accuracy far below the recovered one) has not compressed anything.

A plan may truncate data-aware (``truncation: data-aware``): its input Grams are taken
from the dense model on :data:`GRAM_IMAGES` training images before truncating.

The automatic plan (:func:`auto_plan`) compresses the whole network to a parameter budget,
choosing each layer's truncation from a sweep: see :func:`budget_table` for the rule.
"""

from __future__ import annotations

import copy
import json
import math
import os
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
from .kernels import kernel_modules, matricize
from .linkage import accuracy_drop, single_trials
from .provenance import file_sha256, params_sha256, provenance
from .runtime import BATCH_SIZE, Optim, evaluate, fit, input_grams
from .truncation import (
    PlanLike,
    apply_plan,
    chi_plan,
    entry_gram,
    parse_cuts,
    resolve_plan,
    truncated,
)

__all__ = ["DEFAULT_BUDGET", "FINE_TUNE", "MODES", "auto_plan", "budget_table",
           "plan_from_option", "retrain"]

MODES = ("dense", "projected", "local", "control")
#: Re-training defaults: a tenth of the training learning rate, same schedule and warm-up.
FINE_TUNE = Optim(lr=0.002)
#: Training images whose input Grams a data-aware plan uses (about; whole batches).
GRAM_IMAGES = 2048
#: The automatic plan keeps at most this fraction of the swept kernels' parameters.
DEFAULT_BUDGET = 0.5
#: Cost resolution of the budget rule: the budget is split into at most this many units
#: (each layer's parameter count is rounded *up* to whole units, so the budget holds exactly).
_BUDGET_UNITS = 20_000
#: Weight of the norm loss in the budget rule's objective: breaks ties of equal accuracy
#: drops only (a drop is a multiple of 100/n_test points, far above 1e-6 × layers).
_TIE = 1e-6


# --------------------------------------------------------------------------- the automatic plan


def _check_budget(budget: object) -> float:
    if (isinstance(budget, bool) or not isinstance(budget, (int, float))
            or not math.isfinite(budget) or not 0 < budget < 1):
        raise InputError(f"budget={budget!r}: give the fraction of the swept kernels' "
                         "parameters to keep, between 0 and 1 (0.5 keeps half)")
    return float(budget)


def budget_table(sweep_ds: xr.Dataset, budget: float = DEFAULT_BUDGET) -> xr.Dataset:
    """How the automatic plan compresses every swept layer to meet a parameter budget.

    The *budget* is a fraction of the parameters of the swept kernels (every layer with
    single-layer trials in ``sweep_ds``): the chosen layers' factorised forms
    (``params_factorized``, χ·(dim A + dim B)) plus the dense size of the layers left alone
    must add up to at most ``budget`` × their dense sizes. Each layer is either left dense
    or truncated as one of its single-layer trials (any cut, keep and truncation the sweep
    tried, smaller than the dense kernel). The rule, on the sweep's accuracy drops d (points
    below the untruncated model, negative drops counted as 0):

    1. the largest single-layer drop of the plan is as small as the budget allows (τ, the
       smallest value for which each layer's cheapest option with d ≤ τ meets the budget);
    2. among the plans within τ, the one with the smallest sum of single-layer drops (a
       first-order estimate of the combined drop; ties: the smallest summed norm loss),
       found exactly by dynamic programming over the budget.

    So the layers that tolerate truncation best are compressed most. The sum of drops is only
    an estimate: the combined plan's real accuracy is what re-training measures at epoch 0.

    Returns a dataset along ``layer`` (sweep order): ``compressed`` (bool), ``trial`` (the
    sweep trial applied, -1 where left dense), ``cuts``, ``keep``, ``truncation`` (``""``
    where left dense), ``chi`` (0 where dense), ``params_dense``, ``params_kept`` (the
    factorised size, or the dense one), ``drop`` (points), ``norm_loss`` (1); attrs
    ``budget``, ``params_dense``/``params_kept`` (totals), ``max_drop`` (τ, points),
    ``sum_drop`` (points). InputError when the sweep has no single-layer trials or even its
    most compressed trials cannot meet the budget.
    """
    budget = _check_budget(budget)
    needed = {"plan", "accuracy", "params_factorized", "params_dense", "norm_loss"}
    if not isinstance(sweep_ds, xr.Dataset) or not needed <= set(sweep_ds.variables):
        raise InputError("sweep dataset: expected variables plan, accuracy, norm_loss, "
                         "params_factorized, params_dense (the output of corranalysis.sweep)")
    single = single_trials(sweep_ds, truncation=None)
    if single.sizes["trial"] == 0:
        raise InputError("the sweep has no single-layer trials (plans: layer) to choose a "
                         "budgeted plan from; sweep with plans including 'layer'")
    drop = np.maximum(accuracy_drop(single, float(sweep_ds.attrs["baseline_accuracy"])), 0.0)
    layer_of = np.asarray(single["layer"].values).astype(str)
    names = list(dict.fromkeys(layer_of.tolist()))
    factorized = np.asarray(single["params_factorized"].values, dtype=np.int64)
    dense_of = np.asarray(single["params_dense"].values, dtype=np.int64)
    norm_loss = np.asarray(single["norm_loss"].values, dtype=float)
    dense = {n: int(dense_of[layer_of == n][0]) for n in names}
    total = sum(dense.values())
    capacity = budget * total
    unit = max(1, math.ceil(capacity / _BUDGET_UNITS))
    room = int(capacity // unit)
    # per layer: (cost in units, drop, norm loss, position in `single`); dense first
    options: list[list[tuple[int, float, float, int]]] = []
    for n in names:
        opts = [(math.ceil(dense[n] / unit), 0.0, 0.0, -1)]
        for i in np.flatnonzero((layer_of == n) & (factorized < dense[n])
                                & np.isfinite(drop)):
            opts.append((math.ceil(int(factorized[i]) / unit), float(drop[i]),
                         float(norm_loss[i]), int(i)))
        options.append(opts)

    def cheapest(tau: float) -> int:
        return sum(min(c for c, d, _, _ in opts if d <= tau) for opts in options)

    taus = np.unique(np.concatenate([[0.0], drop[np.isfinite(drop)]]))
    if cheapest(float(taus[-1])) > room:
        least = sum(min(c for c, *_ in opts) for opts in options) * unit / total
        raise InputError(f"budget {budget:g}: the sweep's most compressed single-layer trials "
                         f"keep {least:.3g} of the swept kernels' parameters at least; give a "
                         "larger budget, or sweep smaller keeps")
    lo, hi = 0, len(taus) - 1  # the smallest feasible tau: feasibility grows with tau
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cheapest(float(taus[mid])) <= room else (mid + 1, hi)
    tau = float(taus[lo])

    # exact: least sum of (drop + _TIE * norm loss) with total cost <= room, options within tau
    best = np.zeros(room + 1)
    choices = []
    for opts in options:
        new = np.full(room + 1, np.inf)
        arg = np.full(room + 1, -1)
        for j, (cost, d, nl, _) in enumerate(opts):
            if d > tau or cost > room:
                continue
            cand = np.full(room + 1, np.inf)
            cand[cost:] = best[:room + 1 - cost] + d + _TIE * nl
            better = cand < new
            new[better], arg[better] = cand[better], j
        choices.append(arg)
        best = new
    picked = []
    b = room
    for opts, arg in zip(reversed(options), reversed(choices), strict=True):
        j = int(arg[b])
        picked.append(opts[j])
        b -= opts[j][0]
    picked.reverse()

    rows = []
    for n, (_, d, nl, i) in zip(names, picked, strict=True):
        if i < 0:
            rows.append((False, -1, "", "", "", 0, dense[n], dense[n], 0.0, 0.0))
            continue
        trial = single.isel(trial=i)
        rows.append((True, int(trial["trial"].values), str(trial["cuts"].values),
                     str(trial["keep"].values),
                     str(trial["truncation"].values) if "truncation" in trial.variables
                     else "svd", int(trial["chi"].values), dense[n], int(factorized[i]), d, nl))
    cols = list(zip(*rows, strict=True))
    kept = int(sum(cols[7]))
    units = {"drop": "percentage points", "norm_loss": "1", "params_dense": "parameters",
             "params_kept": "parameters"}
    ds = xr.Dataset(
        {name: ("layer", np.asarray(col), {"units": units[name]} if name in units else {})
         for name, col in zip(("compressed", "trial", "cuts", "keep", "truncation", "chi",
                               "params_dense", "params_kept", "drop", "norm_loss"), cols,
                              strict=True)},
        coords={"layer": names},
    )
    ds.attrs.update(budget=budget, params_dense=total, params_kept=kept, max_drop=tau,
                    sum_drop=float(sum(cols[8])))
    return ds


def auto_plan(sweep_ds: xr.Dataset, budget: float = DEFAULT_BUDGET) -> dict[str, Any]:
    """The plan that compresses the swept kernels to at most ``budget`` of their parameters,
    each layer as tolerance allows (the rule: :func:`budget_table`): ``{layer: entry}`` of
    the compressed layers, each entry the plan of the sweep trial chosen for it."""
    table = budget_table(sweep_ds, budget)
    plans = sweep_ds["plan"]
    trial_index = {int(t): i for i, t in enumerate(sweep_ds["trial"].values)}
    out: dict[str, Any] = {}
    for name, compressed, trial in zip(table["layer"].values, table["compressed"].values,
                                       table["trial"].values, strict=True):
        if compressed:
            out[str(name)] = json.loads(str(plans.values[trial_index[int(trial)]]))[str(name)]
    if not out:
        raise InputError(f"budget {table.attrs['budget']:g} is met with every layer dense "
                         "(the sweep's factorised forms are no smaller); give a smaller budget")
    return out


# --------------------------------------------------------------------------- re-training


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


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths as one NaN-padded float64 matrix."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


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
    checkpoint: str | os.PathLike | None = None,
) -> xr.Dataset:
    """Truncate ``model`` by ``plan`` (not in ``control`` mode), train it ``epochs`` epochs,
    test after every epoch.

    ``train_loader``/``test_loader``: iterables of ``(x, y)`` batches (DataLoaders), or both
    torch Datasets of ``(x float (C, H, W), int y)`` items, checked and batched by
    :func:`corranalysis.data.as_loaders` (training batches of ``batch_size``, shuffled with
    ``seed``). The model is modified in place (pass a copy to keep the original).
    ``checkpoint``: the weight file ``model`` was loaded from, recorded by its SHA-256.

    Returns a dataset with dim ``epoch`` (0 = the start: truncated, or untruncated in
    ``control`` mode):

    * ``accuracy`` (fraction), ``loss`` (nat): on the test data;
    * ``train_loss``: mean training objective of the epoch (cross-entropy in nat, or the
      summed relative output error in ``local`` mode); ``seconds`` (s): wall time up to the
      epoch's end;
    * ``retruncated_accuracy`` (fraction), ``retruncated_loss`` (nat): on the test data after
      re-applying the plan at its χ to the epoch's weights (equal to ``accuracy`` up to
      rounding where the weights keep the structure: ``projected``, ``local``, epoch 0);
    * ``network_norm_loss`` (1): the norm loss of that re-truncation over all the plan's
      kernels together, Σ ‖W − W̃‖² / Σ ‖W‖²;

    with dims ``(epoch, layer)``: ``norm_loss`` (1, the same per kernel: 0 at epoch 0 and in
    ``projected``/``local`` mode) and ``drift`` (1, ‖W_e − W_0‖/‖W_0‖, movement away from the
    start); with dims ``(epoch, layer, k)``: ``singular_values`` (the kernel's units,
    NaN-padded) of each kernel across its plan's first cut (coordinate ``cut``); with dim
    ``layer``: ``chi``, ``chi_max`` (on that cut), ``start_norm_loss`` (1, of the initial
    truncation), ``params_dense`` and ``params_factorized`` (parameters: the kernel, and its
    two-factor form after the plan). Attrs: mode, plan, chi plan, the optimiser settings,
    ``baseline_accuracy`` (untruncated), ``truncated_accuracy``, ``n_test``,
    ``params_kernels`` (every kernel of the model), ``params_kernels_compressed`` (with the
    plan's layers factorised) and ``compression`` (their ratio), ``params_sha256``
    (:func:`corranalysis.provenance.params_sha256` of the untruncated model) and
    ``model_sha256`` (of ``checkpoint``, when given).
    """
    check_opt("mode", mode, MODES)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs={epochs!r}: give a number of epochs >= 0")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise InputError(f"checkpoint={str(checkpoint)!r} is not a file; give the weight file "
                         "the model was loaded from (its SHA-256 is recorded), or None")
    dev = resolve_device(device)
    if isinstance(train_loader, Dataset) or isinstance(test_loader, Dataset):
        train_loader, test_loader, _ = as_loaders((train_loader, test_loader),
                                                  batch_size=batch_size, seed=seed, device=dev)
    model.to(dev)
    resolved = resolve_plan(model, plan)
    if not resolved.entries:
        raise InputError("plan truncates no layer; give at least one {layer: {cuts: [..], "
                         "keep: ..}}")
    hashes = {"params_sha256": params_sha256(model)}
    if checkpoint is not None:
        hashes["model_sha256"] = file_sha256(checkpoint)
    baseline = evaluate(model, test_loader, dev)
    dense = copy.deepcopy(model).eval() if mode == "local" else None
    aware = [n for n, e in resolved.items() if e.truncation == "data-aware"]
    grams = None
    if aware:
        size = getattr(train_loader, "batch_size", None) or BATCH_SIZE
        grams = input_grams(model, train_loader, aware, dev,
                            max_batches=max(1, -(-GRAM_IMAGES // size)))
    layers = list(resolved.entries)
    mods = _layer_modules(model, layers)
    if mode == "control":  # what the plan would do, the model left untruncated
        metrics = {n: e.truncate(mods[n].weight.detach(), gram=entry_gram(n, e, grams)).metrics
                   for n, e in resolved.items()}
    else:
        metrics = apply_plan(model, resolved, grams)
    fixed = chi_plan(resolved, metrics)
    start = {n: mods[n].weight.detach().clone() for n in layers}
    cuts = {}
    for n, e in resolved.items():
        layout = e.layout(tuple(mods[n].weight.shape))
        cuts[n] = (layout, parse_cuts(e.cuts[0], layout)[0])

    def structure(epoch: int, net: nn.Module) -> dict[str, Any]:
        losses, drifts, spectra = [], [], []
        discarded = kept = 0.0
        for n in layers:
            w = mods[n].weight.detach()
            e = fixed.entries[n]
            nl = e.truncate(w, gram=entry_gram(n, e, grams)).metrics.norm_loss
            sq = float(torch.linalg.vector_norm(w.double()) ** 2)
            losses.append(nl)
            discarded, kept = discarded + nl * sq, kept + sq
            drifts.append(float(torch.linalg.vector_norm(w - start[n])
                                / torch.linalg.vector_norm(start[n]).clamp_min(1e-30)))
            layout, cut = cuts[n]
            matrix = matricize(w.detach().double().cpu(), layout.names, layout.sizes, cut)
            spectra.append(torch.linalg.svdvals(matrix).numpy())
        with truncated(net, fixed, grams):
            again = evaluate(net, test_loader, dev)
        return {"norm_loss": losses, "drift": drifts, "singular_values": spectra,
                "network_norm_loss": discarded / kept if kept > 0 else 0.0,
                "retruncated_accuracy": again.accuracy, "retruncated_loss": again.loss}

    done = fit(model, train_loader, optim=optim, epochs=epochs, test_data=test_loader,
               device=dev, seed=seed, on_epoch=structure, record_start=True,
               after_step=None if mode in ("dense", "control") else (
                   lambda net: apply_plan(net, fixed, grams)),
               loss_fn=_local_loss(dense, layers) if dense is not None else None,
               progress=progress, desc=f"retrain ({mode})")
    h = done.history
    model.eval()
    n_layers = len(layers)
    sv = np.stack([_padded(list(rows)) for rows in h["singular_values"]])  # same k each epoch
    all_kernels = sum(m.weight.numel() for m in kernel_modules(model).values())
    p_dense = np.array([metrics[n].params_dense for n in layers])
    p_fact = np.array([metrics[n].params_factorized for n in layers])
    compressed = int(all_kernels - p_dense.sum() + np.minimum(p_fact, p_dense).sum())
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
            "retruncated_accuracy": ("epoch", np.array(h["retruncated_accuracy"]),
                                     {"long_name": "test accuracy after re-applying the plan "
                                                   "at its chi", "units": "fraction"}),
            "retruncated_loss": ("epoch", np.array(h["retruncated_loss"]),
                                 {"long_name": "test loss after re-applying the plan at its "
                                               "chi", "units": "nat"}),
            "network_norm_loss": ("epoch", np.array(h["network_norm_loss"]),
                                  {"long_name": "norm loss re-applying the plan at its chi "
                                                "would cause, all planned kernels together",
                                   "units": "1"}),
            "norm_loss": (("epoch", "layer"), np.array(h["norm_loss"]).reshape(-1, n_layers),
                          {"long_name": "norm loss re-applying the plan at its chi would cause",
                           "units": "1"}),
            "drift": (("epoch", "layer"), np.array(h["drift"]).reshape(-1, n_layers),
                      {"long_name": "|W_e - W_0| / |W_0|", "units": "1"}),
            "singular_values": (("epoch", "layer", "k"), sv,
                                {"long_name": "singular values of the kernel across its plan's "
                                              "first cut (NaN-padded)",
                                 "units": "weight units"}),
            "chi": ("layer", np.array([metrics[n].chi[0] for n in layers]),
                    {"long_name": "singular values kept on the plan's first cut"}),
            "chi_max": ("layer", np.array([metrics[n].chi_max[0] for n in layers]),
                        {"long_name": "full rank of the plan's first cut"}),
            "start_norm_loss": (("layer",), np.array([metrics[n].norm_loss for n in layers]),
                                {"long_name": "norm loss of the initial truncation",
                                 "units": "1"}),
            "params_dense": ("layer", p_dense, {"units": "parameters"}),
            "params_factorized": ("layer", p_fact,
                                  {"long_name": "parameters of the two-factor form after the "
                                                "plan", "units": "parameters"}),
        },
        coords={"epoch": np.asarray(h["epoch"]), "layer": layers,
                "k": np.arange(1, sv.shape[-1] + 1),
                "cut": ("layer", [cuts[n][1].label for n in layers])},
    )
    ds.attrs.update(provenance(mode=mode, plan=resolved.as_dict(), chi_plan=fixed.as_dict(),
                               optim=optim.as_dict(), seed=seed, device=str(dev), **hashes))
    ds.attrs["baseline_accuracy"] = baseline.accuracy
    ds.attrs["n_test"] = baseline.n
    ds.attrs["truncated_accuracy"] = (h["retruncated_accuracy"][0] if mode == "control"
                                      else h["test_accuracy"][0])
    ds.attrs["params_kernels"] = int(all_kernels)
    ds.attrs["params_kernels_compressed"] = compressed
    ds.attrs["compression"] = all_kernels / max(compressed, 1)
    return ds


def _recorded_params(sweep_ds: xr.Dataset) -> str | None:
    """The weights a sweep was made on: its ``params_sha256``; a sweep written before that
    name existed recorded the same hash as ``model_sha256``."""
    if "params_sha256" in sweep_ds.attrs:
        return str(sweep_ds.attrs["params_sha256"])
    return sweep_ds.attrs.get("model_sha256")


def plan_from_option(plan: str, sweep_path: str | None, budget: float = DEFAULT_BUDGET,
                     model: nn.Module | None = None) -> Mapping[str, Any] | str:
    """``--plan``: a plan file path, or ``auto`` with a sweep file: the plan that keeps at
    most ``budget`` of the swept kernels' parameters (see :func:`auto_plan`).

    With ``model``, a sweep recorded on other weights (its ``params_sha256``) is refused.
    """
    if plan == "auto":
        if not sweep_path:
            raise InputError("--plan auto needs --sweep SWEEP.nc to choose the plan from")
        sweep_ds = read_netcdf(sweep_path)
        recorded = _recorded_params(sweep_ds)
        if model is not None and recorded and recorded != params_sha256(model):
            raise InputError(f"--sweep {str(sweep_path)!r} was made on other weights than this "
                             "checkpoint (params_sha256 differs); sweep this checkpoint first")
        return auto_plan(sweep_ds, budget)
    return plan
