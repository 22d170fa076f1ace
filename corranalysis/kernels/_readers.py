"""Readers of weight files and fitting a state_dict into a model, naming every mismatch.

One reader per format, found by the file's suffix in :data:`READERS`:

========================  ===========================================================
``.pt`` ``.pth`` ...      a torch state dict, or a training checkpoint holding one under
                          ``state_dict`` / ``model_state_dict`` / ``model``, loaded with
                          ``weights_only=True`` (any other suffix is read as this too)
``.safetensors``          a state dict; its header is sorted by name, so it has no order
``.npz``                  arrays in the order they were written (a state dict or bare kernels)
``.onnx``                 initialisers, and the layers that use them as weights, in node
                          order (Conv, ConvTranspose, Gemm, MatMul; Gather for embeddings)
========================  ===========================================================

Every reader gives a :class:`WeightFile`. Nothing in a file is ever executed: an ONNX graph
is read with the ``onnx`` package, never run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from safetensors.torch import load_file
from torch import nn

from ..errors import InputError

__all__ = ["READERS", "FileLayer", "WeightFile", "check_fits", "load_checkpoint", "load_into",
           "load_state_dict", "read_arrays"]

_SHOW = 5  # how many names of each kind of mismatch an error message lists


def _check_not_empty(path: Path, what: str) -> None:
    """InputError when ``path`` is an empty file (its readers give no reason for it)."""
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"{what} {str(path)!r} cannot be read: the file is empty")


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line, also for exceptions without a message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines:
        text = lines[0] if len(lines[0]) <= 200 else lines[0][:197] + "..."
        if isinstance(exc, (OSError, ValueError, RuntimeError, EOFError)):
            return text
        return f"the file is damaged or not of this format ({type(exc).__name__}: {text})"
    if isinstance(exc, EOFError):
        return "the file ends early (truncated or not of this format)"
    return f"the file is damaged or not of this format ({type(exc).__name__})"


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a torch checkpoint, loaded with ``weights_only=True``.

    Accepts a plain state_dict or a training checkpoint holding one under ``state_dict`` /
    ``model_state_dict`` / ``model``. A pickle that needs arbitrary code is refused, never
    executed. The state dict keeps its insertion order (a module's registration order).
    """
    path = Path(path)
    _check_not_empty(path, "checkpoint")
    try:
        with warnings.catch_warnings():  # a damaged file gets our one message, not torch's too
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = [line for line in str(exc).splitlines() if "GLOBAL" in line]
        if detail:
            raise InputError(
                f"checkpoint {str(path)!r} is refused: it needs arbitrary code to load "
                f"({detail[0].strip()}); only tensors and plain containers are loaded "
                "(torch.load weights_only=True)"
            ) from exc
        raise InputError(f"checkpoint {str(path)!r} cannot be read: not a torch "
                         "checkpoint or corrupted") from exc
    except Exception as exc:  # a damaged file fails anywhere (zip, unpickler, tensor builders)
        raise InputError(f"checkpoint {str(path)!r} cannot be read: {_reason(exc)}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and obj and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise InputError(
            f"checkpoint {str(path)!r} is not a state_dict: expected a mapping of parameter "
            "names to tensors (or a checkpoint holding one under 'state_dict', "
            "'model_state_dict' or 'model'), got " + type(obj).__name__
        )
    return dict(obj)


@dataclass(frozen=True)
class FileLayer:
    """A layer that a weight file declares itself (an ONNX node using an initialiser as its
    weight): its name, the key of its kernel among the file's arrays, its kind and
    attributes (``module_type``, ``stride``, ``padding``, ...)."""

    name: str
    key: str
    kind: str
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WeightFile:
    """The content of a weight file.

    ``arrays``: every array by its key, in the file's order (kernels in the torch layout
    ``(out, in, ...)``, see :func:`_read_onnx`); ``ordered``: whether that order is the
    writer's (a state dict's insertion order, an ``.npz``'s, ONNX's) rather than sorted names
    (``.safetensors``); ``layers``: the layers the file declares, in forward order, or None
    when they follow from the keys (``*.weight`` of a state dict); ``format``: the reader's
    name; ``aliases``: arrays the file holds under another key (an exporter's deduplicated
    initialisers: ``torch.onnx`` stores equal tensors once), by the key the module path of
    their node gives them, used only to fill keys a model expects and ``arrays`` lacks
    (:func:`load_into`).
    """

    arrays: dict[str, object]
    ordered: bool = True
    layers: tuple[FileLayer, ...] | None = None
    format: str = "arrays"
    aliases: dict[str, object] = field(default_factory=dict)


def _read_torch(path: Path) -> WeightFile:
    return WeightFile(load_checkpoint(path), ordered=True, format="torch checkpoint")


def _read_npz(path: Path) -> WeightFile:
    _check_not_empty(path, ".npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # a damaged file fails anywhere (zip, zlib, array header)
        raise InputError(f".npz file {str(path)!r} cannot be read: {_reason(exc)}") from exc
    return WeightFile(arrays, ordered=True, format=".npz file")


def _read_safetensors(path: Path) -> WeightFile:
    _check_not_empty(path, ".safetensors file")
    try:
        arrays = dict(load_file(str(path)))
    except Exception as exc:  # SafetensorError, or a damaged file failing elsewhere
        raise InputError(f".safetensors file {str(path)!r} cannot be read: {_reason(exc)}"
                         ) from exc
    # the header is sorted by name and its __metadata__ holds no order: names sort naturally
    return WeightFile(arrays, ordered=False, format=".safetensors file")


# ----------------------------------------------------------------------------- ONNX
#: ONNX operators whose weight initialiser is a kernel, and the input that holds it
ONNX_KERNEL_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "Gather": 0}


def _torch_scope(node_name: str) -> str:
    """The module path in a ``torch.onnx`` node name: ``/layer1/layer1.0/conv1/Conv`` ->
    ``layer1.0.conv1``, ``/features/features.0/Conv`` -> ``features.0`` ('' if none)."""
    path = ""
    for part in [p for p in node_name.strip("/").split("/") if p][:-1]:
        if path and part.startswith(path + "."):
            path = part
        else:
            path = f"{path}.{part}" if path else part
    return path


def _layer_name(node: onnx.NodeProto, key: str, index: int) -> str:
    """A layer's name: its weight's name without ``.weight`` when it has that suffix (a
    torch parameter name, as ``torch.onnx`` keeps them), else its node's (the module path of
    a ``torch.onnx`` node name), else its weight's, else ``{op}_{index}``."""
    if key.endswith(".weight"):
        return key.removesuffix(".weight")
    if node.name.startswith("/") and _torch_scope(node.name):
        return _torch_scope(node.name)
    if node.name:
        return node.name
    if key and not key.startswith("onnx::"):
        return key
    return f"{node.op_type}_{index}"


def _as_float_array(arr: np.ndarray) -> np.ndarray:
    """``arr`` with ONNX's extra float types (bfloat16, float8: ml_dtypes) as float32."""
    if arr.dtype.kind == "V" or arr.dtype.name.startswith(("bfloat16", "float8", "float4")):
        return arr.astype(np.float32)
    return arr


def _onnx_layer(node: onnx.NodeProto, weight: np.ndarray, slot: int,
                attrs: dict) -> tuple[str, np.ndarray, dict] | None:
    """(kind, kernel in the torch layout, layer attrs) of a node using ``weight`` as input
    ``slot``, or None when that is not a kernel of this library's kinds."""
    op = node.op_type
    info: dict = {"module_type": op, "bias": int(len(node.input) > 2 and bool(node.input[2]))}
    if op in ("Conv", "ConvTranspose"):
        if slot != 1 or weight.ndim < 3:
            return None
        n = weight.ndim - 2
        pads = [int(p) for p in attrs.get("pads", [0] * 2 * n)]
        info.update(stride=[int(v) for v in attrs.get("strides", [1] * n)],
                    padding=pads[:n] if pads[:n] == pads[n:] else pads,
                    dilation=[int(v) for v in attrs.get("dilations", [1] * n)],
                    groups=int(attrs.get("group", 1)))
        if op == "ConvTranspose":
            info["output_padding"] = [int(v) for v in attrs.get("output_padding", [0] * n)]
            return f"conv_transpose{n}d", weight, info
        return f"conv{n}d", weight, info
    if weight.ndim != 2:
        return None
    if op == "Gemm":  # Y = A·B' + C, B' = B.T if transB: B is (out, in) iff transB
        if slot != 1:
            return None
        return "linear", (weight if attrs.get("transB", 0) else weight.T), info
    if op == "MatMul":  # Y = X·W with W (in, out), or W·X with W (out, in)
        return "linear", (weight.T if slot == 1 else weight), info
    if op == "Gather" and slot == 0 and int(attrs.get("axis", 0)) == 0 \
            and np.issubdtype(weight.dtype, np.floating):
        return "embedding", weight, {"module_type": op, "bias": 0}
    return None


def _read_onnx(path: Path) -> WeightFile:
    """The parameters of an ONNX file, and the layers using them as weights, in node order.

    The parameters are its initialisers, in the order the graph first uses them, less those
    with a name the exporter made up (``onnx::…``, ``/…``: constants of the graph) unless
    they are kernels; such a kernel is keyed ``{layer}.weight``.

    A layer is a Conv / ConvTranspose (kernel: input 1), Gemm / MatMul (a 2-D weight
    initialiser) or Gather (axis 0 of a 2-D float initialiser: an embedding table) node;
    an initialiser reached through ``Identity`` nodes or a ``Constant`` node counts too, and
    one used by several nodes (tied weights) is listed once, under its first node. Kernels are
    given in the torch layout: a Gemm's ``B`` is ``(out, in)`` when ``transB=1`` and is
    transposed when ``transB=0`` (then stored ``(in, out)``); a MatMul weight on the right,
    ``X·W``, is stored ``(in, out)`` and is transposed (on the left, ``W·X``, it is kept).
    Conv and ConvTranspose weights are stored as torch does. The graph is never executed.
    """
    what = f"ONNX file {str(path)!r}"
    _check_not_empty(path, "ONNX file")
    try:
        graph = onnx.load(str(path)).graph
        inits: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        stored = list(inits)  # the file's initialisers, in its order
        alias: dict[str, str] = {}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        inits.setdefault(node.output[0], a.t)
            elif node.op_type == "Identity" and node.input and node.output:
                source = alias.get(node.input[0], node.input[0])
                if source in inits:
                    alias[node.output[0]] = source
        base = str(path.parent)
        dtypes: dict[str, str] = {}
        arrays: dict[str, np.ndarray] = {}

        def array(key: str) -> np.ndarray:  # read once, on first use
            if key not in arrays:
                raw = numpy_helper.to_array(inits[key], base_dir=base)
                dtypes[key], arrays[key] = raw.dtype.name, _as_float_array(raw)
            return arrays[key]

        for key in stored:
            array(key)
        found: list[tuple[str, str, str, dict]] = []  # (name, key, kind, attrs)
        kernel_of: dict[str, np.ndarray] = {}  # key -> kernel in the torch layout
        aliases: dict[str, np.ndarray] = {}
        biases: dict[str, str] = {}  # weight key -> a bias stored under another name
        used: set[str] = set()
        names: set[str] = set()
        ops_seen: list[str] = []
        for index, node in enumerate(graph.node):
            ops_seen.append(node.op_type)
            slot = ONNX_KERNEL_OPS.get(node.op_type)
            if slot is None:
                continue
            inputs = [alias.get(i, i) for i in node.input]
            scope = _torch_scope(node.name) if node.name.startswith("/") else ""
            for i in [slot] if node.op_type != "MatMul" else [1, 0]:
                key = inputs[i] if len(inputs) > i else ""
                if key not in inits:
                    continue
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                hit = _onnx_layer(node, array(key), i, attrs)
                if hit is None:
                    continue
                kind, kernel, info = hit
                bias = inputs[2] if len(inputs) > 2 and inputs[2] in inits else ""
                if scope:  # what the module's own keys would hold
                    aliases.setdefault(f"{scope}.weight", kernel)
                    if bias:
                        aliases.setdefault(f"{scope}.bias", array(bias))
                if bias and key.endswith(".weight") and bias != f"{key[:-7]}.bias":
                    biases.setdefault(key, bias)  # a bias deduplicated by the exporter
                if key in used:  # tied weights: one layer, under its first node
                    break
                info["dtype"] = dtypes[key]
                name = _layer_name(node, key, index)
                unique, n = name, 1
                while unique in names:
                    unique, n = f"{name}_{n}", n + 1
                kernel_of[key] = kernel
                used.add(key)
                names.add(unique)
                found.append((unique, key, kind, info))
                break
    except InputError:
        raise
    except Exception as exc:  # DecodeError, missing external data, damaged tensors
        raise InputError(f"{what} cannot be read: {_reason(exc)}") from exc
    if not found:
        ops = ", ".join(dict.fromkeys(ops_seen)) or "none"
        raise InputError(
            f"{what} has no layer with a kernel: no Conv, ConvTranspose, Gemm, MatMul or Gather "
            f"node takes a weight initialiser (its operators: {ops}); give an ONNX model "
            "whose weights are stored in the file"
        )
    # the arrays are the file's parameters: its kernels, and the initialisers not named by the
    # exporter (torch.onnx's onnx::Reshape_3, /Constant_output_0 are constants of the graph);
    # a kernel under a generated name (onnx::MatMul_7) is keyed as its layer's weight, so the
    # arrays fit the model the file was exported from
    # arrays come in the order the graph first uses them (forward order)
    kernels, params = {key for _, key, _, _ in found}, set(stored)
    first_use = [alias.get(i, i) for node in graph.node for i in node.input]
    order = [*dict.fromkeys(k for k in first_use if k in arrays), *arrays]
    kept = [k for k in dict.fromkeys(order)
            if k in kernels or (k in params and not k.startswith(("onnx::", "/")))]
    # a layer's bias that the exporter stored once for several equal ones (torch.onnx keeps
    # one of equal initialisers) is given its own key beside its weight
    params_kept: dict[str, np.ndarray] = {}
    for k in kept:
        params_kept[k] = kernel_of.get(k, arrays[k])
        own_bias = f"{k.removesuffix('.weight')}.bias"
        if k in biases and own_bias not in kept:
            params_kept[own_bias] = arrays[biases[k]]
    arrays = params_kept
    rename = {key: f"{name}.weight" for name, key, _, _ in found
              if not key.endswith(".weight") and f"{name}.weight" not in arrays}
    arrays = {rename.get(k, k): v for k, v in arrays.items()}
    layers = tuple(FileLayer(name, rename.get(key, key), kind, info)
                   for name, key, kind, info in found)
    aliases = {k: v for k, v in aliases.items() if k not in arrays}
    return WeightFile(arrays, ordered=True, layers=layers, format="ONNX file", aliases=aliases)


#: the reader of each weight-file suffix; any other suffix is read as a torch checkpoint
READERS: dict[str, Callable[[Path], WeightFile]] = {
    ".pt": _read_torch, ".pth": _read_torch, ".ckpt": _read_torch, ".bin": _read_torch,
    ".safetensors": _read_safetensors,
    ".npz": _read_npz,
    ".onnx": _read_onnx,
}


def _as_tensor(value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.array(value))


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict stored at ``path``, as tensors on the CPU, whatever its format.

    A torch checkpoint (loaded with ``weights_only=True``; a plain state_dict or a training
    checkpoint holding one under ``state_dict`` / ``model_state_dict`` / ``model``), a
    ``.safetensors`` or ``.npz`` file, or an ONNX file (its initialisers by name, kernels in
    the torch layout; ``torch.onnx`` keeps parameter names). A missing file, an unreadable
    file, or a pickle that needs arbitrary code raises :class:`InputError`; nothing is
    executed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist; give the path of a "
                         f"weight file ({', '.join(READERS)})")
    return {k: _as_tensor(v) for k, v in read_arrays(path).arrays.items()}


def read_arrays(source: str | os.PathLike) -> WeightFile:
    """The content of the weight file ``source``, read by the reader of its suffix
    (:data:`READERS`; a torch checkpoint for any other suffix).

    InputError for a missing or unreadable file.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"source {str(path)!r} does not exist")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise InputError(f"source {str(path)!r} is not a readable file")
    return READERS.get(path.suffix.lower(), _read_torch)(path)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return f"{len(names)} ({shown}{more})"


def check_fits(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Raise :class:`InputError` unless ``state_dict`` has exactly ``model``'s keys and shapes.

    The message names missing keys, unexpected keys and shape mismatches (the first few of
    each, with counts).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches {_listing(shapes)}")
    what = f"checkpoint {source!r}" if source else "state_dict"
    raise InputError(
        f"{what} does not fit model {type(model).__name__}: " + "; ".join(parts)
        + " — check the model name, in_channels and num_classes (data set) it was trained with"
    )


def load_into(model: nn.Module,
              weights: str | os.PathLike | Mapping[str, object] | WeightFile, *,
              source: str = "") -> nn.Module:
    """Load a weight file (a path, any format of :data:`READERS`, or one read already) or a
    state_dict (tensors or arrays) into ``model`` strictly; return ``model``.

    Keys or shapes that do not fit raise :class:`InputError` (see :func:`check_fits`, naming
    ``source``) before any weight is changed. A key the model expects that the file holds
    only under another name is filled from there: a tied weight (one tensor under several
    keys of the model; files store it once, as ``safetensors`` and ``torch.onnx`` do) from its
    twin, and ``WeightFile.aliases`` (an ONNX exporter's deduplicated initialisers). Tensors
    are copied onto the model's own device and dtype.
    """
    if isinstance(weights, Mapping):
        arrays, aliases = weights, {}
    else:
        if not isinstance(weights, WeightFile):
            source = source or str(weights)
            if not Path(weights).is_file():
                load_state_dict(weights)  # the one message for a missing checkpoint
            weights = read_arrays(weights)
        arrays, aliases = weights.arrays, weights.aliases
    expected = model.state_dict()
    state = {k: _as_tensor(v) for k, v in arrays.items()}
    state.update({k: _as_tensor(v) for k, v in aliases.items()
                  if k in expected and k not in state})
    twins: dict[tuple, list[str]] = {}  # keys of one tensor (tied weights)
    for key, value in expected.items():
        if value.numel():
            twins.setdefault((value.data_ptr(), tuple(value.shape), value.stride()),
                             []).append(key)
    for keys in twins.values():
        given = [k for k in keys if k in state]
        for key in keys:
            if given and key not in state:
                state[key] = state[given[0]]
    check_fits(model, state, source)
    model.load_state_dict(state, strict=True)
    return model
