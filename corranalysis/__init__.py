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

from . import data, models, tensorize
from .config import load_config
from .cuts import Cut, all_cuts, contiguous_cuts, parse_cut, select_cuts
from .errors import InputError
from .io import read_netcdf as load
from .io import write_netcdf as save
from .kernels import extract_kernels, select_layers
from .legs import fine_grain, natural_legs
from .linkage import link
from .pipeline import run_study
from .recovery import auto_plan, retrain
from .report import build_figures, build_report
from .spectra import bond_spectra, compute_spectra, kernel_mps, kernel_tensor
from .sweeps import build_trials, sweep
from .truncation import KeepSpec, Plan, apply_plan, resolve_plan, truncate, truncated

__version__ = "0.1.0"

__all__ = [
    "Cut",
    "KeepSpec",
    "Plan",
    "apply_plan",
    "auto_plan",
    "data",
    "models",
    "tensorize",
    "build_figures",
    "build_report",
    "build_trials",
    "resolve_plan",
    "retrain",
    "sweep",
    "link",
    "load_config",
    "run_study",
    "truncate",
    "truncated",
    "InputError",
    "all_cuts",
    "bond_spectra",
    "compute_spectra",
    "contiguous_cuts",
    "extract_kernels",
    "fine_grain",
    "kernel_mps",
    "kernel_tensor",
    "load",
    "natural_legs",
    "parse_cut",
    "save",
    "select_cuts",
    "select_layers",
]
