"""Kernels: the weight tensors of a model's layers, their legs and cuts, and the files they
come from.

* legs (``natural_legs``, ``fine_grain``, ``LegLayout``) and cuts (``Cut``, ``all_cuts``,
  ``parse_cut``, ...) name a kernel's indices and their bipartitions;
* ``extract_kernels`` turns a model, a checkpoint, a ``.safetensors``, ``.npz`` or ``.onnx`` file
  into an ``xarray.DataTree`` with a node per layer, in forward order, with the same layer names
  and kinds whatever the format;
* the readers (one per format, ``READERS`` by suffix) load weight files without executing
  anything and fit them into models;
* ``kernel_tensor`` / ``kernel_mps`` are the quimb views of a kernel.
"""

from ._cuts import (
    CUT_MODES,
    MAX_ALL_LEGS,
    Cut,
    CutsSpec,
    all_cuts,
    as_cuts,
    contiguous_cuts,
    make_cut,
    matricize,
    n_cuts,
    parse_cut,
    select_cuts,
    unmatricize,
)
from ._extract import (
    KINDS,
    TRANSPOSED_KINDS,
    array_kind,
    check_finite,
    check_kernel,
    extract_kernels,
    filter_names,
    forward_order,
    kernel_items,
    kernel_modules,
    kernels_from_arrays,
    kernels_from_file,
    kernels_from_module,
    module_kind,
    module_legs,
    natural_key,
    select_layers,
)
from ._legs import (
    EMBEDDING_LEGS,
    LEG_MODES,
    LegLayout,
    LegsSpec,
    fine_grain,
    natural_legs,
    prime_factors,
)
from ._readers import (
    READERS,
    FileLayer,
    WeightFile,
    check_fits,
    load_checkpoint,
    load_into,
    load_state_dict,
    read_arrays,
)
from ._views import bond_spectra, kernel_mps, kernel_tensor

__all__ = [
    "CUT_MODES", "EMBEDDING_LEGS", "KINDS", "LEG_MODES", "MAX_ALL_LEGS", "READERS",
    "TRANSPOSED_KINDS", "Cut", "CutsSpec", "FileLayer", "LegLayout", "LegsSpec", "WeightFile",
    "all_cuts", "array_kind", "as_cuts", "bond_spectra", "check_finite", "check_fits",
    "check_kernel", "contiguous_cuts", "extract_kernels", "filter_names", "fine_grain",
    "forward_order", "kernel_items", "kernel_modules", "kernel_mps", "kernel_tensor",
    "kernels_from_arrays", "kernels_from_file", "kernels_from_module", "load_checkpoint",
    "load_into", "load_state_dict", "make_cut", "matricize", "module_kind", "module_legs",
    "n_cuts", "natural_key", "natural_legs", "parse_cut", "prime_factors", "read_arrays",
    "select_cuts", "select_layers", "unmatricize",
]
