"""``apply(model, spec)``: replace the chosen layers by tensor-network layers."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import torch
from torch import nn

from .adtn import ADTN, ADTNConv2d, ADTNLinear
from .cp import CPConv2d
from .factorized import FactorizedConv2d, FactorizedLinear
from .mpo import MPOConv2d, MPOLinear
from .plan import LayerPlan, plan
from .spec import validate_spec
from .tucker import TuckerConv2d

TABLE_COLUMNS = [
    "layer", "kind", "shape", "method", "rank", "group",
    "params_before", "params_after", "params_all_entries", "compression", "init_rel_error",
]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _build(p: LayerPlan) -> nn.Module:
    """The replacement module for a non-ADTN layer (random factors until ``load_dense``)."""
    m, e = p.module, p.extra
    bias = m.bias is not None
    if p.method == "svd" and isinstance(m, nn.Linear):
        return FactorizedLinear(m.in_features, m.out_features, e["chi"], bias=bias)
    if p.method == "svd":
        return FactorizedConv2d(m, e["cut"], e["chi"])
    if p.method == "mpo" and isinstance(m, nn.Linear):
        return MPOLinear(e["in_factors"], e["out_factors"], e["bonds"], bias=bias)
    if p.method == "mpo":
        return MPOConv2d(e["in_factors"], e["out_factors"], e["bonds"], m.kernel_size,
                         m.stride, m.padding, m.dilation, bias=bias)
    if p.method == "tucker":
        return TuckerConv2d(m.in_channels, m.out_channels, e["r_in"], e["r_out"], m.kernel_size,
                            m.stride, m.padding, m.dilation, bias=bias)
    if p.method == "cp":
        return CPConv2d(m.in_channels, m.out_channels, e["rank"], m.kernel_size,
                        m.stride, m.padding, m.dilation, bias=bias)
    raise AssertionError(p.method)


def _adtn_layers(
    members: list[LayerPlan], init: bool, progress: bool
) -> tuple[list[nn.Module], float]:
    first = members[0]
    s = first.settings
    gen = ADTN(first.extra["n_weights"], s["depth"], first.extra["qubits"], s["nonlinearity"],
               seed=s["seed"])
    gen = gen.to(first.module.weight.device)
    err = float("nan")
    if init:  # cheap by default: random gates, one rescale; the Adam fit only when asked
        target = torch.cat([p.module.weight.detach().reshape(-1) for p in members])
        err = gen.rescale(target, s["init_scale"])
        if s["fit_steps"]:
            err = gen.fit(target, s["fit_steps"], s["fit_lr"], progress=progress,
                          desc=f"fit ADTN {first.group}")
    layers: list[nn.Module] = []
    for p in members:
        m = p.module
        if isinstance(m, nn.Linear):
            new = ADTNLinear(gen, p.extra["offset"], m.in_features, m.out_features,
                             bias=m.bias is not None)
        else:
            new = ADTNConv2d(gen, p.extra["offset"], m)
        new = new.to(m.weight.device)
        if m.bias is not None:
            with torch.no_grad():
                new.bias.copy_(m.bias.detach())
        layers.append(new)
    return layers, err


def apply(
    model: nn.Module, spec: dict[str, Any], *, init: bool = True, progress: bool = False
) -> tuple[nn.Module, pd.DataFrame]:
    """Tensorize ``model`` per ``spec``; returns ``(new model, table)``. ``model`` is unchanged.

    ``init=True`` initialises every new layer from the trained one (the truncation for svd,
    truncated SVDs for MPO,
    HOOI for Tucker, ALS for CP, random gates rescaled for ADTN and an Adam fit only when its
    ``fit_steps > 0``, with a bar if ``progress``); ``init=False`` only builds the
    structure (to load a saved tensorized state dict). The table has one row per layer:
    ``layer, kind, shape, method, rank, group, params_before, params_after,
    params_all_entries, compression, init_rel_error`` (a shared ADTN's parameters are counted
    on its group's first layer; ``params_all_entries`` differs from ``params_after`` only for
    ADTN, where it counts every gate entry and ``params_after`` the free ones).
    """
    spec = validate_spec(spec)
    plans = plan(model, spec)  # every check happens here, before any work
    new_model = copy.deepcopy(model)
    by_name = dict(new_model.named_modules())
    for p in plans:
        p.module = by_name[p.name]
    errors: dict[str, float] = {}
    groups: dict[str, list[LayerPlan]] = {}
    for p in plans:
        if p.method == "adtn":
            groups.setdefault(p.group, []).append(p)
            continue
        new = _build(p).to(p.module.weight.device, p.module.weight.dtype)
        errors[p.name] = (
            new.load_dense(p.module.weight, p.module.bias) if init else float("nan")
        )
        _set_module(new_model, p.name, new)
    for members in groups.values():
        layers, err = _adtn_layers(members, init, progress)
        for p, layer in zip(members, layers, strict=True):
            errors[p.name] = err
            _set_module(new_model, p.name, layer)
    rows = [
        {
            "layer": p.name, "kind": p.kind, "shape": "x".join(map(str, p.shape)),
            "method": p.method, "rank": p.rank, "group": p.group,
            "params_before": p.params_before, "params_after": p.params_after,
            "params_all_entries": p.extra.get("params_all_entries", p.params_after),
            "compression": p.params_before / max(p.params_after, 1),
            "init_rel_error": errors[p.name],
        }
        for p in plans
    ]
    return new_model, pd.DataFrame(rows, columns=TABLE_COLUMNS)
