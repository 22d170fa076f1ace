"""Kernels: the weight tensors of a model's layers, as an ``xarray.DataTree``.

Each layer becomes a node named by its module path (``features.0``) holding a
``weight`` DataArray whose dims are the kernel's natural legs (``out, in, kh, kw``)
and attrs describing the layer (module type, stride, padding, dilation, groups,
n_params, depth). Nodes are in forward order.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import InputError
from ._legs import natural_legs
from ._readers import load_into, read_arrays

KIND_OF_MODULE: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Conv3d: "conv3d",
}
KIND_OF_NDIM = {2: "linear", 3: "conv1d", 4: "conv2d", 5: "conv3d"}
KINDS = tuple(KIND_OF_NDIM.values())
Source = nn.Module | str | os.PathLike | Mapping[str, object]


def module_kind(module: nn.Module) -> str | None:
    """The kind of a layer (``conv2d``, ``linear``, ...) or None if it has no kernel."""
    for cls, kind in KIND_OF_MODULE.items():
        if isinstance(module, cls):
            return kind
    return None


def _as_patterns(layers: str | Sequence[str] | None) -> list[str] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [p for p in layers.split(",") if p.strip()]
    return [p.strip() for p in layers]


def _as_kinds(kinds: str | Sequence[str] | None) -> list[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = kinds.split(",")
    kinds = [k.strip().lower() for k in kinds]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"layer kinds {unknown} are unknown; valid: {', '.join(KINDS)}")
    return kinds


def filter_names(
    named_kinds: Sequence[tuple[str, str]],
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    what: str = "model",
) -> list[str]:
    """Names among ``(name, kind)`` pairs matching any glob in ``layers`` and a kind in ``kinds``.

    Raises InputError listing the available layers when nothing matches.
    """
    patterns = _as_patterns(layers)
    wanted = _as_kinds(kinds)
    out = []
    for name, kind in named_kinds:
        if wanted is not None and kind not in wanted:
            continue
        if patterns is not None and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        out.append(name)
    if not out:
        available = ", ".join(f"{n} ({k})" for n, k in named_kinds) or "none"
        asked = []
        if patterns is not None:
            asked.append(f"layers={','.join(patterns)}")
        if wanted is not None:
            asked.append(f"kinds={','.join(wanted)}")
        raise InputError(
            f"{what} has no selected layers ({'; '.join(asked) or 'no layer with a kernel'}); "
            f"available layers: {available}"
        )
    return out


def forward_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Module paths of the layers with kernels in the order a forward pass calls them."""
    order: list[str] = []
    handles = []
    for name, module in kernel_modules(model).items():
        handles.append(module.register_forward_pre_hook(
            lambda m, a, name=name: order.append(name) if name not in order else None))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return order


def kernel_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``model`` that have a kernel (see :data:`KINDS`), by module path, in
    registration order: the one definition of "a layer with a kernel"."""
    return {n: m for n, m in model.named_modules() if module_kind(m) is not None}


def select_layers(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    example_input: torch.Tensor | None = None,
) -> list[tuple[str, nn.Module]]:
    """The model's layers with kernels, by module path glob(s) and kind, in forward order.

    Forward order is registration order, or the traced call order when
    ``example_input`` is given.
    """
    modules = kernel_modules(model)
    names = list(modules)
    if example_input is not None:
        traced = forward_order(model, example_input)
        names = traced + [n for n in names if n not in traced]
    chosen = filter_names([(n, module_kind(modules[n])) for n in names], layers, kinds)
    return [(n, modules[n]) for n in chosen]


def _pair(value) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [int(v) for v in value]
    return [int(value)]


def check_finite(name: str, weight: np.ndarray) -> None:
    if not np.isfinite(weight).all():
        bad = int((~np.isfinite(weight)).sum())
        raise InputError(
            f"layer {name!r} has {bad} NaN/Inf weights; a kernel must be finite "
            "(check the checkpoint or training run)"
        )


def _node(name: str, weight: np.ndarray, depth: int, attrs: dict) -> xr.Dataset:
    if weight.ndim < 2:
        raise InputError(
            f"array {name!r} has shape {tuple(weight.shape)}: a kernel needs at least 2 dims "
            "(out, in[, spatial...])"
        )
    check_finite(name, weight)
    legs = natural_legs(weight.ndim)
    da = xr.DataArray(weight, dims=legs)
    base = {
        "layer": name,
        "kind": KIND_OF_NDIM.get(weight.ndim, f"conv{weight.ndim - 2}d"),
        "shape": list(weight.shape),
        "n_params": int(weight.size),
        "depth": depth,
        "legs": list(legs),
    }
    base.update(attrs)
    return xr.Dataset({"weight": da}, attrs=base)


def _tree(nodes: dict[str, xr.Dataset], attrs: dict) -> xr.DataTree:
    tree = xr.DataTree.from_dict(nodes)
    tree.attrs.update(attrs)
    tree.attrs["layers"] = list(nodes)
    return tree


def kernels_from_module(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    example_input: torch.Tensor | None = None,
) -> xr.DataTree:
    """Kernels of a ``torch.nn.Module``'s Linear/Conv layers (float64 copies)."""
    nodes = {}
    for depth, (name, module) in enumerate(select_layers(model, layers, kinds, example_input)):
        weight = module.weight.detach().to("cpu", torch.float64).numpy().copy()
        attrs = {"module_type": type(module).__name__, "dtype": str(module.weight.dtype)}
        for key in ("stride", "padding", "dilation", "groups"):
            if hasattr(module, key):
                attrs[key] = _pair(getattr(module, key))
        attrs.setdefault("groups", [1])
        attrs["groups"] = int(attrs["groups"][0])
        attrs["bias"] = int(getattr(module, "bias", None) is not None)
        nodes[name] = _node(name, weight, depth, attrs)
    return _tree(nodes, {"source": type(model).__name__})


def kernels_from_arrays(
    arrays: Mapping[str, object],
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    source: str = "arrays",
    state_dict: bool = True,
) -> xr.DataTree:
    """Kernels of a mapping of arrays (a state_dict, ``.npz`` or ``.safetensors`` content).

    In a state_dict (``state_dict=True``) only ``*.weight`` entries with >= 2 dims count,
    and layer names drop the ``.weight`` suffix; otherwise every array is a kernel
    and must have >= 2 dims. The kind follows the number of dims.
    """
    named: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if state_dict:
            if not key.endswith("weight") or arr.ndim < 2:
                continue
            name = key[: -len(".weight")] if key.endswith(".weight") else key
        else:
            name = key
            if arr.ndim < 2:
                raise InputError(
                    f"array {key!r} in {source} has shape {tuple(arr.shape)}: a kernel needs "
                    "at least 2 dims (out, in[, spatial...])"
                )
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"array {key!r} in {source} is not numeric (dtype {arr.dtype})")
        named[name] = arr
    pairs = [(n, KIND_OF_NDIM.get(a.ndim, "other")) for n, a in named.items()]
    chosen = filter_names(pairs, layers, kinds, what=source)
    nodes = {}
    for depth, name in enumerate(chosen):
        arr = named[name]
        attrs = {"module_type": "unknown", "dtype": str(arr.dtype), "groups": 1}
        nodes[name] = _node(name, arr.astype(np.float64), depth, attrs)
    return _tree(nodes, {"source": source})


def extract_kernels(
    source: Source,
    model: nn.Module | None = None,
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    example_input: torch.Tensor | None = None,
) -> xr.DataTree:
    """Kernels of ``source`` as a DataTree, a node per layer in forward order.

    Parameters
    ----------
    source
        A ``torch.nn.Module``; a checkpoint path (``.pt``/``.pth``/``.ckpt``, a
        state_dict or ``{"state_dict": ...}``, loaded with ``weights_only=True``);
        a ``.safetensors`` file; a ``.npz`` of arrays; or a mapping of arrays.
    model
        Optional module to load a checkpoint/mapping into first, so layer types,
        strides and paddings are known (keys and shapes must fit).
    layers, kinds
        Glob(s) on layer names (``"features.*"`` or a list) and kinds
        (``conv2d``, ``linear``, ...) to select.
    example_input
        A batch to trace the forward order of a module's layers.
    """
    if isinstance(source, nn.Module):
        return kernels_from_module(source, layers, kinds, example_input)
    if isinstance(source, Mapping):
        arrays, name, is_sd = source, "arrays", True
    else:
        arrays, is_sd = read_arrays(source)
        name = str(source)
    if model is not None:
        load_into(model, {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor)
                          else v for k, v in arrays.items()})
        tree = kernels_from_module(model, layers, kinds, example_input)
        tree.attrs["source"] = name
        return tree
    return kernels_from_arrays(arrays, layers, kinds, source=name, state_dict=is_sd)


def kernel_items(kernels: xr.DataTree) -> list[tuple[str, xr.Dataset]]:
    """``(layer name, node dataset)`` pairs of a kernels tree, in forward order."""
    order = kernels.attrs.get("layers") or list(kernels.children)
    return [(name, kernels[name].to_dataset()) for name in order]
