"""Spectra: singular values of every kernel across every cut, as an ``xarray.Dataset``.

``compute_spectra`` is the one entry point; the quimb reference path, the fast Gram path
and the LAPACK bindings behind it are private.
"""

from ._compute import (
    METHODS,
    compute_spectra,
    norm_loss_curve,
    numerical_rank,
    reference_spectrum,
    spectral_measures,
)

__all__ = ["METHODS", "compute_spectra", "norm_loss_curve", "numerical_rank",
           "reference_spectrum", "spectral_measures"]
