"""Trial views of a sweep dataset: the one place that reads its trial kinds (scope,
truncation), curves over keep specs, accuracy drops and kept fractions.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..errors import InputError, check_opt
from ..truncation import KeepSpec

#: What a trial truncates (the sweep's ``scope`` coordinate).
SCOPES = ("layer", "all-cuts", "all-layers")
#: How a trial truncates (the sweep's ``truncation`` coordinate).
TRUNCATIONS = ("svd", "data-aware")
_REDO = ("re-run the sweep with this version: `corranalysis run CONFIG --force sweep` (or "
         "`corranalysis sweep CHECKPOINT --out SWEEP.nc`)")

# --------------------------------------------------------------------------- trial views


def scoped_sweep(sweep: xr.Dataset) -> xr.Dataset:
    """The sweep dataset with its ``scope`` coordinate.

    A sweep of this version is returned as it is. A sweep written before ``scope``
    existed marked all-layers trials with layer ``"all"`` and all-cuts trials with cuts
    ``"all"``; it is converted: ``scope`` from those markers, ``layer`` (the layers,
    comma-separated) and ``cuts`` (the cuts, semicolon-separated) from each trial's plan.
    InputError for a dataset that is not a sweep, or an old one without plans.
    """
    if not isinstance(sweep, xr.Dataset) or "trial" not in sweep.dims or "accuracy" not in sweep:
        raise InputError("sweep dataset: expected dim 'trial' and variable 'accuracy' "
                         "(the output of corranalysis.sweep)")
    if "scope" in sweep.coords:
        return sweep
    layer = np.asarray(sweep["layer"].values).astype(object)
    cuts = np.asarray(sweep["cuts"].values).astype(object)
    all_layers = layer == "all"
    all_cuts = (cuts == "all") & ~all_layers
    combined = np.flatnonzero(all_layers | all_cuts)
    if combined.size and "plan" not in sweep:
        raise InputError(f"the sweep dataset was written by an earlier version (trial kinds "
                         f"marked 'all', no plans to read them from); {_REDO}")
    for i in combined:
        try:
            plan = json.loads(str(sweep["plan"].values[i]))
            if all_layers[i]:
                layer[i] = ",".join(plan)
            else:
                cuts[i] = ";".join(plan[layer[i]]["cuts"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"the sweep dataset was written by an earlier version and its "
                             f"trial {int(sweep['trial'].values[i])} has no readable plan; "
                             f"{_REDO}") from None
    scope = np.where(all_layers, "all-layers", np.where(all_cuts, "all-cuts", "layer"))
    return sweep.assign_coords(scope=("trial", scope.astype(str)),
                               layer=("trial", layer.astype(str)),
                               cuts=("trial", cuts.astype(str)))


def trial_truncation(trials: xr.Dataset) -> np.ndarray:
    """How each trial truncates (``svd`` or ``data-aware``), shape ``(trial,)``: the
    ``truncation`` coordinate, or all ``svd`` for a sweep written before it existed."""
    if "truncation" in trials.variables:
        return np.asarray(trials["truncation"].values).astype(str)
    return np.full(trials.sizes["trial"], "svd")


def _check_truncation(truncation: str | None) -> None:
    if truncation is not None:
        check_opt("truncation", truncation, TRUNCATIONS)


def scope_trials(sweep: xr.Dataset, scope: str, *, truncation: str | None = "svd") -> xr.Dataset:
    """The trials of ``sweep`` whose scope is ``scope`` (``layer``, ``all-cuts`` or
    ``all-layers``) and whose truncation is ``truncation`` (``svd``, ``data-aware``;
    None: both), in sweep order; none is an empty selection."""
    check_opt("scope", scope, SCOPES)
    _check_truncation(truncation)
    sweep = scoped_sweep(sweep)
    chosen = np.asarray(sweep["scope"].values) == scope
    if truncation is not None:
        chosen &= trial_truncation(sweep) == truncation
    return sweep.isel(trial=np.flatnonzero(chosen))


def single_trials(sweep: xr.Dataset, *, truncation: str | None = "svd") -> xr.Dataset:
    """The sweep's one-layer, one-cut trials (scope ``layer``) of ``truncation``."""
    return scope_trials(sweep, "layer", truncation=truncation)


def _curve_positions(trials: xr.Dataset) -> dict[tuple[str, str], np.ndarray]:
    """Positions in ``trials`` of each ``(layer, cuts)`` group, in order of first appearance."""
    layer = np.asarray(trials["layer"].values).astype(str)
    cuts = np.asarray(trials["cuts"].values).astype(str)
    return {(str(a), str(b)): np.flatnonzero((layer == a) & (cuts == b))
            for a, b in dict.fromkeys(zip(layer.tolist(), cuts.tolist(), strict=True))}


def curves(trials: xr.Dataset, *, truncation: str | None = "svd") -> dict[tuple[str, str],
                                                                           xr.Dataset]:
    """``trials`` (of one scope) grouped by ``(layer, cuts)`` in order of first appearance:
    one curve over keep specs each. Only trials of ``truncation`` (None: all of them)."""
    _check_truncation(truncation)
    if truncation is not None:
        trials = trials.isel(trial=np.flatnonzero(trial_truncation(trials) == truncation))
    return {key: trials.isel(trial=pos) for key, pos in _curve_positions(trials).items()}


def truncated_layers(sweep: xr.Dataset) -> list[str]:
    """Every layer some trial of ``sweep`` truncates, in order of first appearance."""
    sweep = scoped_sweep(sweep)
    names = (str(n).split(",") if s == "all-layers" else [str(n)]
             for s, n in zip(sweep["scope"].values, sweep["layer"].values, strict=True))
    return list(dict.fromkeys(n for group in names for n in group))


def accuracy_drop(trials: xr.Dataset, baseline: float | None = None) -> np.ndarray:
    """Accuracy drop of each trial in percentage points below ``baseline`` (default: the
    sweep's ``baseline_accuracy``); accuracy is a fraction, so 1 point is 0.01."""
    base = float(trials.attrs["baseline_accuracy"] if baseline is None else baseline)
    return 100.0 * (base - np.asarray(trials["accuracy"].values, dtype=float))


def _frac_of(keep: str) -> float | None:
    """The fraction of a ``frac=f`` keep label, else None."""
    spec = KeepSpec.parse(keep)
    return float(spec.value) if spec.kind == "frac" else None


def kept_fraction(trials: xr.Dataset, spectra: xr.Dataset | None = None) -> np.ndarray:
    """χ/χ_max per trial: χ_max of the trial's (layer, cut) from ``spectra`` where it has
    them (single trials), else the fraction of a ``frac=`` keep spec; NaN otherwise."""
    out = np.full(trials.sizes["trial"], np.nan)
    layers = set() if spectra is None else {str(n) for n in spectra["layer"].values}
    cuts = set() if spectra is None else {str(c) for c in spectra["cut"].values}
    for i in range(trials.sizes["trial"]):
        layer, cut = str(trials["layer"].values[i]), str(trials["cuts"].values[i])
        if spectra is not None and layer in layers and cut in cuts:
            chi_max = float(spectra["chi_max"].sel(layer=layer, cut=cut))
            out[i] = float(trials["chi"].values[i]) / chi_max
        else:
            frac = _frac_of(str(trials["keep"].values[i]))
            out[i] = np.nan if frac is None else frac
    return out
