"""Kernels: the weight tensors of a model's layers, as an ``xarray.DataTree``.

Each layer becomes a node named by its module path (``features.0``) holding a
``weight`` DataArray whose dims are the kernel's natural legs (``out, in, kh, kw``;
``in, out, kh, kw`` for a transposed convolution, as stored; ``token, dim`` for an
embedding table) and attrs describing the layer (module type, stride, padding, dilation,
groups, n_params, depth). Nodes are in forward order. A kernel shared by several layers
(tied weights) is one node.

Every source gives the same layer names (module paths, never with a ``.weight`` suffix),
kinds and order: a model's own when one is given; else the file's own order where it has
one (a state dict's insertion order, an ``.npz``'s, an ONNX graph's node order); else the
names in natural order (``layer.2`` before ``layer.10``, :func:`natural_key`), as for a
``.safetensors`` file, whose header is sorted.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import InputError
from ..provenance import file_sha256
from ._legs import natural_legs
from ._readers import WeightFile, load_into, read_arrays

KIND_OF_MODULE: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Conv3d: "conv3d",
    nn.ConvTranspose1d: "conv_transpose1d",
    nn.ConvTranspose2d: "conv_transpose2d",
    nn.ConvTranspose3d: "conv_transpose3d",
    nn.Embedding: "embedding",
    nn.EmbeddingBag: "embedding",
}
#: the kind of a bare array (no module to tell a transposed convolution) by its number of dims
KIND_OF_NDIM = {2: "linear", 3: "conv1d", 4: "conv2d", 5: "conv3d"}
KINDS = tuple(dict.fromkeys(KIND_OF_MODULE.values()))
#: kinds whose kernel is stored ``(in, out/groups, *spatial)``
TRANSPOSED_KINDS = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
Source = nn.Module | str | os.PathLike | Mapping[str, object]


def natural_key(name: str) -> tuple:
    """Sort key of a layer name in natural order: runs of digits compare as numbers, so
    ``layer.2`` < ``layer.10``.

    >>> sorted(["layer.10", "layer.2", "embed"], key=natural_key)
    ['embed', 'layer.2', 'layer.10']
    """
    parts = re.split(r"(\d+)", name)  # text, number, text, ...: positions keep their type
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def array_kind(name: str, ndim: int) -> str:
    """The kind of a bare array named ``name`` (no module to tell): an ``embedding`` when it
    has 2 dims and the last part of its name says so (``word_embeddings``, ``embed_tokens``),
    else by its number of dims (``linear``, ``conv1d``, ``conv2d``, ``conv3d``). A transposed
    convolution cannot be told from its array: give the model, or an ONNX file."""
    if ndim == 2 and "embed" in name.rsplit(".", 1)[-1].lower():
        return "embedding"
    return KIND_OF_NDIM.get(ndim, f"conv{ndim - 2}d")


def module_kind(module: nn.Module) -> str | None:
    """The kind of a layer (``conv2d``, ``conv_transpose2d``, ``linear``, ``embedding``, ...)
    or None if it has no kernel."""
    for cls, kind in KIND_OF_MODULE.items():
        if isinstance(module, cls):
            return kind
    return None


def module_legs(module: nn.Module) -> tuple[str, ...]:
    """The natural legs of a layer's kernel ``module.weight``, in stored order.

    ``(out, in, kh, kw)`` for a Conv2d, ``(out, in)`` for a Linear, ``(in, out, kh, kw)``
    for a ConvTranspose2d (its weight is ``(in, out/groups, kh, kw)``), ``(token, dim)`` for
    an Embedding (its weight is ``(num_embeddings, embedding_dim)``). Use it, not the number
    of dims, wherever a module's kernel is cut, so cut labels name the right legs.
    """
    kind = module_kind(module)
    if kind is None:
        raise InputError(f"module {type(module).__name__} has no kernel; layers with kernels: "
                         + ", ".join(cls.__name__ for cls in KIND_OF_MODULE))
    return natural_legs(module.weight.dim(), kind=kind)


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
    registration order: the one definition of "a layer with a kernel".

    A kernel shared by several layers (tied weights: one Parameter under two module
    paths) is listed once, under its first path.
    """
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if module_kind(module) is None or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        out[name] = module
    return out


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


def _where(name: str, source: str) -> str:
    return f"layer {name!r}" + (f" in {source}" if source else "")


def check_finite(name: str, weight, source: str = "") -> None:
    """InputError naming layer ``name`` (of ``source``) unless ``weight`` (a numpy array or
    torch tensor) is finite: the one finiteness check of weights."""
    finite = torch.isfinite(weight) if isinstance(weight, torch.Tensor) else np.isfinite(weight)
    if not finite.all():
        bad = int((~finite).sum())
        raise InputError(
            f"{_where(name, source)} has {bad} NaN/Inf weights; weights must be finite "
            "(check the checkpoint or training run)"
        )


def check_kernel(name: str, weight, source: str = "") -> None:
    """InputError naming layer ``name`` (of ``source``) unless ``weight`` (a numpy array or
    torch tensor) is a kernel: at least 2 dims, no dim of size 0, real floating point,
    finite. The one check of a kernel's values; integer, bool and complex arrays are
    refused, never cast."""
    where = _where(name, source)
    shape = tuple(int(n) for n in weight.shape)
    if len(shape) < 2:
        raise InputError(f"{where} has shape {shape}: a kernel needs at least 2 dims "
                         "(out, in[, spatial...])")
    if 0 in shape:
        raise InputError(f"{where} has shape {shape}, with no elements along a leg: a kernel "
                         "needs at least one element along every leg")
    if isinstance(weight, torch.Tensor):
        dtype, complex_, floating = weight.dtype, weight.is_complex(), weight.is_floating_point()
    else:
        dtype = np.asarray(weight).dtype
        complex_ = np.issubdtype(dtype, np.complexfloating)
        floating = np.issubdtype(dtype, np.floating)
    if complex_:
        raise InputError(f"{where} is complex ({dtype}): a kernel must be real; pass its real "
                         "part or magnitude if that is what you mean")
    if not floating:
        raise InputError(f"{where} has dtype {dtype}: a kernel must be floating point "
                         "(float16/bfloat16/float32/float64); cast it to float first if "
                         "these numbers are weights")
    check_finite(name, weight, source)


def _as_float64(weight) -> np.ndarray:
    """A float64 numpy copy of a checked kernel (torch's bfloat16 included)."""
    if isinstance(weight, torch.Tensor):
        return weight.detach().to("cpu", torch.float64).numpy().copy()
    return np.array(weight, dtype=np.float64)


def _node(name: str, weight: np.ndarray, depth: int, attrs: dict, *,
          legs: tuple[str, ...] | None = None, kind: str | None = None) -> xr.Dataset:
    kind = kind or array_kind(name, weight.ndim)
    legs = legs or natural_legs(weight.ndim, kind=kind)
    da = xr.DataArray(weight, dims=legs)
    base = {
        "layer": name,
        "kind": kind,
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
    """Kernels of a ``torch.nn.Module``'s Linear/Conv/Embedding layers (float64 copies)."""
    nodes = {}
    for depth, (name, module) in enumerate(select_layers(model, layers, kinds, example_input)):
        check_kernel(name, module.weight)
        weight = _as_float64(module.weight)
        attrs = {"module_type": type(module).__name__, "dtype": str(module.weight.dtype)}
        for key in ("stride", "padding", "dilation", "groups", "output_padding"):
            if hasattr(module, key):
                attrs[key] = _pair(getattr(module, key))
        attrs.setdefault("groups", [1])
        attrs["groups"] = int(attrs["groups"][0])
        attrs["bias"] = int(getattr(module, "bias", None) is not None)
        nodes[name] = _node(name, weight, depth, attrs, legs=module_legs(module),
                            kind=module_kind(module))
    return _tree(nodes, {"source": type(model).__name__})


def _no_kernels(arrays: Mapping[str, object], source: str, state_dict: bool) -> InputError:
    shown = [f"{k!r} {tuple(getattr(v, 'shape', ()))}" for k, v in list(arrays.items())[:5]]
    more = f" and {len(arrays) - 5} more" if len(arrays) > 5 else ""
    which = "an entry named *.weight with" if state_dict else "an array with"
    return InputError(
        f"{source} has no kernels among its arrays ({', '.join(shown) or 'none'}{more}): a "
        f"kernel is {which} at least 2 dims (out, in[, spatial...]); save the weights of the "
        "model's Linear, Conv or Embedding layers"
    )


def _file_layers(arrays: Mapping[str, object], source: str,
                 state_dict: bool | None) -> list[tuple[str, object, str, dict]]:
    """(name, array, kind, attrs) of the kernels among ``arrays``, in their order."""
    if state_dict is None:
        state_dict = any(key.endswith(".weight") for key in arrays)
    out: list[tuple[str, object, str, dict]] = []
    shared: set[tuple] = set()
    for key, value in arrays.items():
        arr = value if isinstance(value, torch.Tensor) else np.asarray(value)
        if arr.ndim < 2 or (state_dict and not key.endswith("weight")):
            continue  # biases, norms, buffers; in a state dict also non-weight parameters
        if isinstance(arr, torch.Tensor) and arr.numel():  # tied weights: listed once
            storage = (arr.untyped_storage().data_ptr(), arr.storage_offset(),
                       tuple(arr.shape), arr.stride(), arr.dtype)
            if storage in shared:
                continue
            shared.add(storage)
        name = key.removesuffix(".weight")
        out.append((name, arr, array_kind(name, arr.ndim), {}))
    if not out:
        raise _no_kernels(arrays, source, state_dict)
    return out


def _kernels_tree(found: Sequence[tuple[str, object, str, dict]],
                  layers: str | Sequence[str] | None, kinds: str | Sequence[str] | None,
                  source: str, ordered: bool) -> xr.DataTree:
    if not ordered:
        found = sorted(found, key=lambda item: natural_key(item[0]))
    by_name = {name: (arr, kind, attrs) for name, arr, kind, attrs in found}
    chosen = filter_names([(n, by_name[n][1]) for n in by_name], layers, kinds, what=source)
    nodes = {}
    for depth, name in enumerate(chosen):
        arr, kind, extra = by_name[name]
        check_kernel(name, arr, source)
        attrs = {"module_type": "unknown", "dtype": str(arr.dtype).removeprefix("torch."),
                 "groups": 1, **extra}
        nodes[name] = _node(name, _as_float64(arr), depth, attrs, kind=kind)
    return _tree(nodes, {"source": source})


def kernels_from_arrays(
    arrays: Mapping[str, object],
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    source: str = "arrays",
    state_dict: bool | None = None,
    *,
    ordered: bool = True,
) -> xr.DataTree:
    """Kernels of a mapping of arrays (a state_dict, ``.npz`` or ``.safetensors`` content).

    Arrays with fewer than 2 dims (biases, norms) are skipped. In a state_dict
    (``state_dict=True``, or ``None`` and some key ends in ``.weight``) only ``*weight``
    entries count, and a tensor stored under several keys (tied weights) counts once, under
    its first key; otherwise every array of >= 2 dims is a kernel. Layer names drop the
    ``.weight`` suffix. The kind follows the number of dims, or the name for an embedding
    (:func:`array_kind`). Layers keep the mapping's order, or sort naturally when
    ``ordered=False`` (:func:`natural_key`). The selected arrays must be real, floating point,
    non-empty and finite (:func:`check_kernel`); InputError naming ``source`` when there is
    no kernel at all.
    """
    return _kernels_tree(_file_layers(arrays, source, state_dict), layers, kinds, source,
                         ordered)


def kernels_from_file(
    weights: WeightFile,
    layers: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    source: str = "file",
) -> xr.DataTree:
    """Kernels of a read weight file (:func:`~corranalysis.kernels.read_arrays`): the layers
    it declares (ONNX: kinds and attributes from its nodes, in node order), else its arrays as
    :func:`kernels_from_arrays` reads them, in the file's order or natural order."""
    if weights.layers is None:
        found = _file_layers(weights.arrays, source, None)
    else:
        found = [(layer.name, weights.arrays[layer.key], layer.kind, layer.attrs)
                 for layer in weights.layers]
    return _kernels_tree(found, layers, kinds, source, weights.ordered)


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
        A ``torch.nn.Module``; a checkpoint path (``.pt``/``.pth``/``.ckpt``, a state_dict
        or a training checkpoint holding one under ``state_dict`` / ``model_state_dict`` /
        ``model``, loaded with ``weights_only=True``); a ``.safetensors`` file; a ``.npz`` of
        arrays (a state dict or bare kernels); an ``.onnx`` file (its Conv, ConvTranspose,
        Gemm, MatMul and Gather weights, read without running the graph); or a mapping of
        arrays.
    model
        Optional module to load the file's or mapping's state dict into first (keys and
        shapes must fit), so layer kinds, order, strides and paddings are the model's.
    layers, kinds
        Glob(s) on layer names (``"features.*"`` or a list) and kinds (``conv2d``,
        ``linear``, ``embedding``, ``conv_transpose2d``, ...) to select.
    example_input
        A batch to trace the forward order of a module's layers.

    Returns
    -------
    xarray.DataTree
        A node per layer; its attrs name the ``source``, the ``layers`` in order and, for a
        file, ``source_sha256`` (the SHA-256 of the file's bytes).

    Layer names never keep a ``.weight`` suffix and are the same in every format; the order
    is the model's, else the file's own (state dict, ``.npz``, ONNX node order), else natural
    order of the names (``.safetensors``).
    """
    if isinstance(source, nn.Module):
        return kernels_from_module(source, layers, kinds, example_input)
    if isinstance(source, Mapping):
        weights, name, sha = WeightFile(dict(source)), "arrays", ""
    else:
        weights, name = read_arrays(source), str(source)
        sha = file_sha256(source)
    if model is not None:
        load_into(model, weights, source=name if sha else "")
        tree = kernels_from_module(model, layers, kinds, example_input)
        tree.attrs["source"] = name
    else:
        tree = kernels_from_file(weights, layers, kinds, source=name)
    tree.attrs["source_sha256"] = sha
    return tree


def kernel_items(kernels: xr.DataTree) -> list[tuple[str, xr.Dataset]]:
    """``(layer name, node dataset)`` pairs of a kernels tree, in forward order."""
    order = kernels.attrs.get("layers") or list(kernels.children)
    return [(name, kernels[name].to_dataset()) for name in order]
