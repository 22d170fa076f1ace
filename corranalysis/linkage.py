"""Trial views of a sweep, tolerated norm loss, and spectra–accuracy correlations.

The *trial views* are the one place that reads the sweep dataset's trial kinds:

* :func:`scoped_sweep` — the sweep with its ``scope`` coordinate (a sweep written
  before ``scope`` existed is converted here, once);
* :func:`scope_trials` / :func:`single_trials` — the trials of one scope;
* :func:`curves` — trials grouped by ``(layer, cuts)``: one accuracy curve over keep specs;
* :func:`accuracy_drop`, :func:`tolerated_trial`, :func:`tolerated_norm_loss` — the
  walk by increasing norm loss until the accuracy drop first exceeds δ points;
* :func:`kept_fraction` — χ/χ_max per trial.

:func:`link` uses them. From a sweep (single-layer, single-cut trials) and a spectra
dataset:

* per ``(layer, cut)``: the *tolerated norm loss* — walking the trials by increasing
  norm loss, the largest norm loss reached before the accuracy drop first exceeds
  δ percentage points — with the χ (and χ/χ_max) there, and the accuracy drop at a
  fixed ``frac``;
* across all ``(layer, cut)`` pairs: the Spearman rank correlation between spectral
  measures (entropy, effective rank / χ_max, the spectral norm loss at the fixed
  frac) and the accuracy-side targets (tolerated norm loss, accuracy drop at frac).
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .errors import InputError, check_opt
from .provenance import provenance
from .truncation import KeepSpec

__all__ = ["MEASURES", "SCOPES", "TARGETS", "accuracy_drop", "curves", "kept_fraction", "link",
           "scope_trials", "scoped_sweep", "single_trials", "tolerated_norm_loss",
           "tolerated_trial", "truncated_layers"]

MEASURES = ("entropy", "renyi2", "effective_rank_ratio", "spectral_norm_loss_at_frac")
TARGETS = ("tolerated_norm_loss", "accuracy_drop_at_frac")
#: What a trial truncates (the sweep's ``scope`` coordinate).
SCOPES = ("layer", "all-cuts", "all-layers")
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
    if "trial" not in sweep.dims or "accuracy" not in sweep:
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


def scope_trials(sweep: xr.Dataset, scope: str) -> xr.Dataset:
    """The trials of ``sweep`` whose scope is ``scope`` (``layer``, ``all-cuts`` or
    ``all-layers``), in sweep order; none is an empty selection."""
    check_opt("scope", scope, SCOPES)
    sweep = scoped_sweep(sweep)
    return sweep.isel(trial=np.flatnonzero(np.asarray(sweep["scope"].values) == scope))


def single_trials(sweep: xr.Dataset) -> xr.Dataset:
    """The sweep's one-layer, one-cut trials (scope ``layer``)."""
    return scope_trials(sweep, "layer")


def curves(trials: xr.Dataset) -> dict[tuple[str, str], xr.Dataset]:
    """``trials`` (of one scope) grouped by ``(layer, cuts)`` in order of first appearance:
    one curve over keep specs each."""
    layer = np.asarray(trials["layer"].values).astype(str)
    cuts = np.asarray(trials["cuts"].values).astype(str)
    return {(str(a), str(b)): trials.isel(trial=np.flatnonzero((layer == a) & (cuts == b)))
            for a, b in dict.fromkeys(zip(layer.tolist(), cuts.tolist(), strict=True))}


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


def tolerated_trial(rows: xr.Dataset, baseline: float, delta: float) -> int | None:
    """Position in ``rows`` (one curve) of the trial at the tolerated norm loss.

    Walking the trials by increasing norm loss (stable order), the last one with the
    largest norm loss reached before the accuracy drop first exceeds ``delta`` points;
    None when even the smallest truncation costs more (nothing is tolerated).
    """
    nl = np.asarray(rows["norm_loss"].values, dtype=float)
    drop = accuracy_drop(rows, baseline)
    best, best_nl = None, 0.0
    for t in np.argsort(nl, kind="stable"):
        if drop[t] > delta:
            break
        if nl[t] >= best_nl:
            best, best_nl = int(t), float(nl[t])
    return best


def tolerated_norm_loss(rows: xr.Dataset, baseline: float, delta: float) -> float:
    """The largest norm loss of ``rows`` (one curve) whose accuracy drop stays within
    ``delta`` points, walking by increasing norm loss (see :func:`tolerated_trial`);
    0 when nothing is tolerated."""
    t = tolerated_trial(rows, baseline, delta)
    return 0.0 if t is None else float(rows["norm_loss"].values[t])


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


# --------------------------------------------------------------------------- linkage


def link(sweep_ds: xr.Dataset, spectra_ds: xr.Dataset, delta: float = 1.0,
         frac: float = 0.5) -> xr.Dataset:
    """Tolerated norm loss per (layer, cut) and Spearman correlations with spectral measures.

    ``delta``: tolerated accuracy drop in percentage points (accuracy is a fraction
    in the sweep; a drop of 1 point is 0.01). ``frac``: the fixed keep fraction for
    the accuracy drop and the spectral norm loss (the sweep's frac keep nearest to it).

    Returns a dataset with dims ``(layer, cut)``: ``tolerated_norm_loss``,
    ``tolerated_chi``, ``tolerated_chi_frac`` (χ/χ_max), ``accuracy_drop_at_frac``
    (points), ``max_accuracy_drop`` (points), the spectral measures; ``(layer,)``:
    ``layer_tolerated_norm_loss`` (median over cuts), ``depth``; ``(measure, target)``:
    ``spearman_rho``, ``spearman_p``, ``n_pairs``.
    """
    if not (isinstance(delta, (int, float)) and delta >= 0 and math.isfinite(delta)):
        raise InputError(f"delta={delta!r}: give an accuracy drop in percentage points >= 0")
    for var in ("entropy", "effective_rank", "chi_max", "norm_loss"):
        if var not in spectra_ds:
            raise InputError(f"spectra dataset lacks {var!r}; pass corranalysis.compute_spectra "
                             "output")
    single = single_trials(sweep_ds)
    if single.sizes["trial"] == 0:
        raise InputError("sweep dataset has no single-layer single-cut trials to link")
    base = float(sweep_ds.attrs["baseline_accuracy"])
    groups = curves(single)
    layers = list(dict.fromkeys(name for name, _ in groups))
    cuts = list(dict.fromkeys(cut for _, cut in groups))
    missing = [n for n in layers if n not in spectra_ds["layer"].values]
    if missing:
        raise InputError(f"spectra dataset lacks layers {missing} of the sweep; compute spectra "
                         "of the same model")
    fracs = {f: k for k in dict.fromkeys(str(k) for k in single["keep"].values)
             if (f := _frac_of(k)) is not None}
    if not fracs:
        raise InputError("sweep has no frac= keeps; link needs them for the fixed-frac measures")
    used = min(fracs, key=lambda f: (abs(f - frac), -f))
    shape = (len(layers), len(cuts))
    tol = np.full(shape, np.nan)
    tol_chi = np.full(shape, np.nan)
    tol_frac = np.full(shape, np.nan)
    drop_at = np.full(shape, np.nan)
    max_drop = np.full(shape, np.nan)
    spec = {m: np.full(shape, np.nan) for m in MEASURES}
    for (name, cut), rows in groups.items():
        i, j = layers.index(name), cuts.index(cut)
        if cut not in spectra_ds["cut"].values:
            raise InputError(f"spectra dataset lacks cut {cut!r} of the sweep")
        drop = accuracy_drop(rows, base)
        sp = spectra_ds.sel(layer=name, cut=cut)
        chi_max = float(sp["chi_max"])
        t = tolerated_trial(rows, base, delta)
        if t is None:
            tol[i, j], tol_chi[i, j], tol_frac[i, j] = 0.0, chi_max, 1.0
        else:
            tol[i, j] = float(rows["norm_loss"].values[t])
            tol_chi[i, j] = float(rows["chi"].values[t])
            tol_frac[i, j] = kept_fraction(rows.isel(trial=[t]), spectra_ds)[0]
        max_drop[i, j] = float(drop.max())
        at = np.nonzero(rows["keep"].values == fracs[used])[0]
        if at.size:
            drop_at[i, j] = float(drop[at[0]])
        spec["entropy"][i, j] = float(sp["entropy"])
        spec["renyi2"][i, j] = float(sp["renyi2"]) if "renyi2" in sp else np.nan
        spec["effective_rank_ratio"][i, j] = float(sp["effective_rank"]) / chi_max
        k = KeepSpec("frac", used).chi(None, int(chi_max))
        spec["spectral_norm_loss_at_frac"][i, j] = float(sp["norm_loss"].sel(k=k))
    targets = {"tolerated_norm_loss": tol, "accuracy_drop_at_frac": drop_at}
    rho = np.full((len(MEASURES), len(TARGETS)), np.nan)
    pval = np.full_like(rho, np.nan)
    npairs = np.zeros_like(rho, dtype=np.int64)
    for a, m in enumerate(MEASURES):
        for b, t in enumerate(TARGETS):
            x, y = spec[m].ravel(), targets[t].ravel()
            ok = np.isfinite(x) & np.isfinite(y)
            npairs[a, b] = int(ok.sum())
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                r = spearmanr(x[ok], y[ok])
                rho[a, b], pval[a, b] = float(r.statistic), float(r.pvalue)
    lc = ("layer", "cut")
    ds = xr.Dataset(
        {
            "tolerated_norm_loss": (lc, tol, {"long_name": f"largest norm loss with accuracy "
                                              f"drop <= {delta:g} points", "units": "1"}),
            "tolerated_chi": (lc, tol_chi, {"long_name": "chi at the tolerated norm loss"}),
            "tolerated_chi_frac": (lc, tol_frac, {"long_name": "tolerated chi / chi_max"}),
            "accuracy_drop_at_frac": (lc, drop_at, {"long_name": f"accuracy drop at "
                                                    f"frac={used:g}", "units": "points"}),
            "max_accuracy_drop": (lc, max_drop, {"long_name": "largest accuracy drop in the "
                                                 "sweep", "units": "points"}),
            **{m: (lc, v) for m, v in spec.items()},
            "layer_tolerated_norm_loss": (("layer",), np.nanmedian(
                np.where(np.isfinite(tol), tol, np.nan), axis=1),
                {"long_name": "median tolerated norm loss over the layer's cuts"}),
            "depth": (("layer",), np.arange(len(layers))),
            "spearman_rho": (("measure", "target"), rho),
            "spearman_p": (("measure", "target"), pval),
            "n_pairs": (("measure", "target"), npairs),
        },
        coords={"layer": layers, "cut": cuts, "measure": list(MEASURES),
                "target": list(TARGETS)},
    )
    ds.attrs.update(provenance())
    ds.attrs.update(delta_points=float(delta), frac=float(used), baseline_accuracy=base)
    return ds
