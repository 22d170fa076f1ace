"""Linking spectra to accuracy: tolerated norm loss per (layer, cut) and rank correlations.

From a sweep (single-layer, single-cut trials) and a spectra dataset:

* per ``(layer, cut)``: the *tolerated norm loss* — walking the trials by increasing
  norm loss, the largest norm loss reached before the accuracy drop first exceeds
  δ percentage points — with the χ (and χ/χ_max) there, and the accuracy drop at a
  fixed ``frac``;
* across all ``(layer, cut)`` pairs: the Spearman rank correlation between spectral
  measures (entropy, effective rank / χ_max, the spectral norm loss at the fixed
  frac) and the accuracy-side targets (tolerated norm loss, accuracy drop at frac).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .errors import InputError
from .provenance import provenance

MEASURES = ("entropy", "renyi2", "effective_rank_ratio", "spectral_norm_loss_at_frac")
TARGETS = ("tolerated_norm_loss", "accuracy_drop_at_frac")


def _single_trials(sweep_ds: xr.Dataset) -> xr.Dataset:
    if "trial" not in sweep_ds.dims or "accuracy" not in sweep_ds:
        raise InputError("sweep dataset: expected dim 'trial' and variable 'accuracy' "
                         "(the output of corranalysis.sweep)")
    mask = (sweep_ds["layer"] != "all") & (sweep_ds["cuts"] != "all")
    if "n_layers" in sweep_ds:
        mask = mask & (sweep_ds["n_layers"] == 1)
    single = sweep_ds.isel(trial=np.nonzero(mask.values)[0])
    if single.sizes["trial"] == 0:
        raise InputError("sweep dataset has no single-layer single-cut trials to link")
    return single


def _frac_keeps(keeps: list[str]) -> dict[float, str]:
    out = {}
    for k in keeps:
        if k.startswith("frac="):
            out[float(k[5:])] = k
    return out


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
    single = _single_trials(sweep_ds)
    base = float(sweep_ds.attrs["baseline_accuracy"])
    layers = list(dict.fromkeys(single["layer"].values.tolist()))
    cuts = list(dict.fromkeys(single["cuts"].values.tolist()))
    missing = [n for n in layers if n not in spectra_ds["layer"].values]
    if missing:
        raise InputError(f"spectra dataset lacks layers {missing} of the sweep; compute spectra "
                         "of the same model")
    fracs = _frac_keeps(list(dict.fromkeys(single["keep"].values.tolist())))
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
    layer_of = single["layer"].values
    cut_of = single["cuts"].values
    for i, name in enumerate(layers):
        for j, cut in enumerate(cuts):
            idx = np.nonzero((layer_of == name) & (cut_of == cut))[0]
            if idx.size == 0:
                continue
            if cut not in spectra_ds["cut"].values:
                raise InputError(f"spectra dataset lacks cut {cut!r} of the sweep")
            rows = single.isel(trial=idx)
            nl = rows["norm_loss"].values
            drop = 100.0 * (base - rows["accuracy"].values)
            order = np.argsort(nl, kind="stable")
            sp = spectra_ds.sel(layer=name, cut=cut)
            chi_max = float(sp["chi_max"])
            ok_nl, ok_chi = 0.0, chi_max
            for t in order:
                if drop[t] > delta:
                    break
                if nl[t] >= ok_nl:
                    ok_nl, ok_chi = float(nl[t]), float(rows["chi"].values[t])
            tol[i, j], tol_chi[i, j], tol_frac[i, j] = ok_nl, ok_chi, ok_chi / chi_max
            max_drop[i, j] = float(drop.max())
            at = np.nonzero(rows["keep"].values == fracs[used])[0]
            if at.size:
                drop_at[i, j] = float(drop[at[0]])
            spec["entropy"][i, j] = float(sp["entropy"])
            spec["renyi2"][i, j] = float(sp["renyi2"]) if "renyi2" in sp else np.nan
            spec["effective_rank_ratio"][i, j] = float(sp["effective_rank"]) / chi_max
            k = max(1, math.ceil(used * chi_max - 1e-9))
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
