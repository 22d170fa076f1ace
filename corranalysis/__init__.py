"""corranalysis: correlation compressibility of neural-network kernels.

View every kernel as a tensor with named legs, cut it in two along any
bipartition of its legs, and measure how fast the singular-value spectrum decays;
truncate along cuts and link what is lost to accuracy.

>>> import corranalysis as ca
>>> kernels = ca.extract_kernels(model)            # xarray.DataTree, a node per layer
>>> spectra = ca.compute_spectra(kernels)          # xarray.Dataset (layer, cut, k)
>>> ca.save(spectra, "spectra.nc")
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import InputError

__version__ = "0.1.0"

#: Public name -> (module, attribute). Modules load on first use (PEP 562), so that
#: ``corranalysis --help`` and ``import corranalysis`` do not import torch.
_EXPORTS: dict[str, tuple[str, str]] = {
    **{name: (".kernels", name) for name in (
        "Cut", "all_cuts", "bond_spectra", "contiguous_cuts", "extract_kernels", "fine_grain",
        "kernel_mps", "kernel_tensor", "natural_legs", "parse_cut", "select_cuts",
        "select_layers")},
    "compute_spectra": (".spectra", "compute_spectra"),
    **{name: (".truncation", name) for name in (
        "KeepSpec", "Plan", "apply_plan", "resolve_plan", "truncate", "truncated")},
    **{name: (".runtime", name) for name in (
        "EvalResult", "Optim", "StopRule", "evaluate", "fit", "input_grams", "load_trained",
        "output_error", "train")},
    "build_trials": (".sweep", "build_trials"),
    "sweep": (".sweep", "sweep"),
    **{name: (".linkage", name) for name in ("accuracy_ci", "across_seeds", "link")},
    "auto_plan": (".retrain", "auto_plan"),
    "retrain": (".retrain", "retrain"),
    "build_figures": (".report", "build_figures"),
    "build_report": (".report", "build_report"),
    "load_config": (".config", "load_config"),
    "run_study": (".pipeline", "run_study"),
    "load_run": (".pipeline", "load_run"),
    "open_run": (".pipeline", "open_run"),
    "load": (".io", "read_netcdf"),
    "save": (".io", "write_netcdf"),
}
_SUBPACKAGES = ("data", "models", "tensorize", "kernels", "spectra", "runtime", "sweep", "report")

__all__ = ["InputError", *_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module, __name__), attr)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'corranalysis' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Keeps the verbs ``sweep`` and ``retrain`` functions: importing the modules of the same
    name (``corranalysis.sweep``, ``corranalysis.retrain``) does not rebind them."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name, ("", ""))[1] == name:
            return  # the module stays reachable in sys.modules and by ``from ... import``
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import data, kernels, models, report, runtime, spectra, sweep, tensorize  # noqa: F401
    from .config import load_config  # noqa: F401
    from .io import read_netcdf as load  # noqa: F401
    from .io import write_netcdf as save  # noqa: F401
    from .kernels import (  # noqa: F401
        Cut,
        all_cuts,
        bond_spectra,
        contiguous_cuts,
        extract_kernels,
        fine_grain,
        kernel_mps,
        kernel_tensor,
        natural_legs,
        parse_cut,
        select_cuts,
        select_layers,
    )
    from .linkage import accuracy_ci, across_seeds, link  # noqa: F401
    from .pipeline import load_run, open_run, run_study  # noqa: F401
    from .report import build_figures, build_report  # noqa: F401
    from .retrain import (
        auto_plan,  # noqa: F401
        retrain,  # noqa: F401, F811
    )
    from .runtime import (  # noqa: F401
        EvalResult,
        Optim,
        StopRule,
        evaluate,
        fit,
        input_grams,
        load_trained,
        output_error,
        train,
    )
    from .spectra import compute_spectra  # noqa: F401
    from .sweep import (
        build_trials,  # noqa: F401
        sweep,  # noqa: F401, F811
    )
    from .truncation import (  # noqa: F401
        KeepSpec,
        Plan,
        apply_plan,
        resolve_plan,
        truncate,
        truncated,
    )
