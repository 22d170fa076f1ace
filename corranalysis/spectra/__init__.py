"""Spectra: singular values of every kernel across every cut, as an ``xarray.Dataset``.

``compute_spectra`` is the one entry point; ``estimate_spectra`` says beforehand what a
request will cost, and requests above the memory budget are refused. The quimb reference
path, the fast Gram path and the LAPACK bindings behind it are private.
"""

from ._budget import SpectraEstimate, available_memory, parse_memory
from ._compute import (
    METHODS,
    compute_spectra,
    estimate_spectra,
    norm_loss_curve,
    numerical_rank,
    reference_spectrum,
    spectral_measures,
)

__all__ = ["METHODS", "SpectraEstimate", "available_memory", "compute_spectra",
           "estimate_spectra", "norm_loss_curve", "numerical_rank", "parse_memory",
           "reference_spectrum", "spectral_measures"]
