"""``link``: tolerances per (layer, cut) and their statistics against the spectra."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import InputError
from ..provenance import provenance
from ..runtime import paired_drop_beyond
from ..truncation import KeepSpec
from ._statistics import (
    BOUNDS,
    _bounds,
    _check_boot,
    _equivalence,
    _resample_counts,
    _spearman,
    partial_spearman,
)
from ._tolerance import (
    Z_95,
    _check_delta,
    _check_z,
    _per_image,
    _walk,
    failing,
    tolerated_norm_loss,
)
from ._views import _curve_positions, _frac_of, accuracy_drop, curves, single_trials

#: Spectral measures, per (layer, cut); ``log_chi_max`` is the shape-only baseline.
MEASURES = ("entropy", "renyi2", "effective_rank_ratio", "normalized_entropy",
            "spectral_norm_loss_at_frac", "log_chi_max")
TARGETS = ("tolerated_norm_loss", "accuracy_drop_at_frac")
#: Per-trial predictors of the accuracy drop compared by :func:`link`.
PREDICTORS = ("norm_loss", "output_error")

# --------------------------------------------------------------------------- linkage


def _check_link_inputs(sweep_ds: xr.Dataset, spectra_ds: xr.Dataset) -> None:
    if not isinstance(spectra_ds, xr.Dataset):
        raise InputError("spectra dataset: expected an xarray Dataset (corranalysis."
                         "compute_spectra output)")
    for var in ("entropy", "effective_rank", "chi_max", "norm_loss"):
        if var not in spectra_ds:
            raise InputError(f"spectra dataset lacks {var!r}; pass corranalysis.compute_spectra "
                             "output")
    if "baseline_accuracy" not in getattr(sweep_ds, "attrs", {}):
        raise InputError("sweep dataset lacks the attribute 'baseline_accuracy'; give the "
                         "output of corranalysis.sweep")


def link(sweep_ds: xr.Dataset, spectra_ds: xr.Dataset, delta: float = 1.0,
         frac: float = 0.5, *, z: float = Z_95, n_boot: int = 200,
         seed: int = 0) -> xr.Dataset:
    """Tolerances per (layer, cut) and their statistics against the spectra.

    ``delta``: tolerated accuracy drop in percentage points (accuracy is a fraction in
    the sweep; a drop of 1 point is 0.01), judged beyond sampling error with ``z``
    (see the module docstring; z = 0: the plain rule). ``frac``: the fixed keep
    fraction for the accuracy drop and the spectral norm loss (the sweep's frac keep
    nearest to it). ``n_boot``/``seed``: bootstrap resamples of the test images for the
    confidence intervals (0: none). Only the sweep's ``svd`` trials enter the
    tolerances; statistics use only distinct, non-trivial (layer, cut) pairs.

    Returns a dataset with

    * ``(layer, cut)``: ``tolerated_norm_loss`` (low end) and ``tolerated_norm_loss_high``
      (high end of the censored interval [low, high)), ``tolerated_chi``,
      ``tolerated_chi_frac`` (χ/χ_max), ``tolerated_output_error`` (at the tolerated
      trial), ``accuracy_drop_at_frac`` and ``max_accuracy_drop`` (points), the
      spectral measures (:data:`MEASURES`; ``normalized_entropy`` = S / ln χ_max),
      ``distinct``, ``equivalent_to``;
    * ``(layer, cut, bound)``: ``tolerated_norm_loss_ci``; ``(bound,)``:
      ``baseline_accuracy_ci`` (bootstrap percentile intervals, 95 %);
    * ``(layer,)``: ``layer_tolerated_norm_loss`` (median over the layer's distinct cuts;
      over all its cuts when none is distinct),
      ``depth``, ``aware_cut``, ``tolerated_norm_loss_svd`` and
      ``tolerated_norm_loss_aware`` (on that cut, plain vs data-aware truncation);
    * ``(measure, target)``: ``spearman_rho``, ``spearman_p``, ``partial_rho``,
      ``partial_p`` (controlling for log χ_max), ``n_pairs``;
    * ``(predictor, group)``: ``drop_rho``, ``drop_p``, ``drop_n`` — Spearman correlation
      of norm loss / output error with the accuracy drop over the single-layer trials
      on distinct cuts, per layer and ``all``.

    Statistics a sweep cannot support (no per-image results, no output error, no
    data-aware trials) are NaN.
    """
    delta, z = _check_delta(delta), _check_z(z)
    _check_boot(n_boot, seed)
    _check_link_inputs(sweep_ds, spectra_ds)
    single = single_trials(sweep_ds)
    if single.sizes["trial"] == 0:
        raise InputError("sweep dataset has no single-layer single-cut trials to link")
    base = float(sweep_ds.attrs["baseline_accuracy"])
    groups = _curve_positions(single)
    layers = list(dict.fromkeys(name for name, _ in groups))
    cuts = list(dict.fromkeys(cut for _, cut in groups))
    missing = [n for n in layers if n not in spectra_ds["layer"].values]
    if missing:
        raise InputError(f"spectra dataset lacks layers {missing} of the sweep; compute spectra "
                         "of the same model")
    absent = [c for c in cuts if c not in spectra_ds["cut"].values]
    if absent:
        raise InputError(f"spectra dataset lacks cut {absent[0]!r} of the sweep")
    fracs = {f: k for k in dict.fromkeys(str(k) for k in single["keep"].values)
             if (f := _frac_of(k)) is not None}
    if not fracs:
        raise InputError("sweep has no frac= keeps; link needs them for the fixed-frac measures")
    used = min(fracs, key=lambda f: (abs(f - frac), -f))

    nl = np.asarray(single["norm_loss"].values, dtype=float)
    fail = failing(single, base, delta, z=z)
    drop = accuracy_drop(single, base)
    out_err = (np.asarray(single["output_error"].values, dtype=float)
               if "output_error" in single else None)
    keeps = np.asarray(single["keep"].values).astype(str)
    shape = (len(layers), len(cuts))
    var = {name: np.full(shape, np.nan) for name in (
        "tol", "tol_high", "tol_chi", "tol_frac", "tol_oe", "drop_at", "max_drop")}
    spec = {m: np.full(shape, np.nan) for m in MEASURES}
    present = np.zeros(shape, dtype=bool)
    orders: dict[tuple[int, int], np.ndarray] = {}
    for (name, cut), pos in groups.items():
        i, j = layers.index(name), cuts.index(cut)
        present[i, j] = True
        order = pos[np.argsort(nl[pos], kind="stable")]
        order = orders[i, j] = order[np.isfinite(nl[order])]
        first, low, high = _walk(nl[order], fail[order])
        sp = spectra_ds.sel(layer=name, cut=cut)
        chi_max = float(sp["chi_max"])
        var["tol"][i, j], var["tol_high"][i, j] = low, high
        if first == 0:
            var["tol_chi"][i, j], var["tol_frac"][i, j] = chi_max, 1.0
            var["tol_oe"][i, j] = 0.0 if out_err is not None else np.nan
        else:
            t = int(order[first - 1])
            var["tol_chi"][i, j] = float(single["chi"].values[t])
            var["tol_frac"][i, j] = var["tol_chi"][i, j] / chi_max
            var["tol_oe"][i, j] = out_err[t] if out_err is not None else np.nan
        var["max_drop"][i, j] = float(drop[pos].max())
        at = pos[keeps[pos] == fracs[used]]
        if at.size:
            var["drop_at"][i, j] = float(drop[at[0]])
        entropy = float(sp["entropy"])
        spec["entropy"][i, j] = entropy
        spec["renyi2"][i, j] = float(sp["renyi2"]) if "renyi2" in sp else np.nan
        spec["effective_rank_ratio"][i, j] = float(sp["effective_rank"]) / chi_max
        spec["normalized_entropy"][i, j] = entropy / math.log(chi_max) if chi_max > 1 else np.nan
        spec["log_chi_max"][i, j] = math.log(chi_max)
        k = KeepSpec("frac", used).chi(None, int(chi_max))
        spec["spectral_norm_loss_at_frac"][i, j] = float(sp["norm_loss"].sel(k=k))

    sub = spectra_ds.sel(layer=layers, cut=cuts)
    distinct, equivalent_to = _equivalence(sub, present)
    stats = _correlations(spec, {"tolerated_norm_loss": var["tol"],
                                 "accuracy_drop_at_frac": var["drop_at"]}, distinct)
    base_ci, tol_ci = _bootstrap(single, groups, orders, layers, cuts, delta, z, n_boot, seed)
    drop_stats = _drop_predictors(single, drop, layers, cuts, distinct)
    aware = _aware_tolerances(sweep_ds, layers, cuts, var["tol"], base, delta, z)
    layer_tol = np.array([_median(row[d]) if np.isfinite(row[d]).any() else _median(row)
                          for row, d in zip(var["tol"], distinct, strict=True)])

    lc = ("layer", "cut")
    ds = xr.Dataset(
        {
            "tolerated_norm_loss": (lc, var["tol"], {
                "long_name": f"largest norm loss before the first trial whose accuracy drop "
                             f"exceeds {delta:g} points (low end of the tolerance)",
                "units": "1"}),
            "tolerated_norm_loss_high": (lc, var["tol_high"], {
                "long_name": "norm loss of the first failing trial (high end of the "
                             "tolerance; 1 when none fails)", "units": "1"}),
            "tolerated_chi": (lc, var["tol_chi"], {"long_name": "chi at the tolerated norm "
                                                                 "loss"}),
            "tolerated_chi_frac": (lc, var["tol_frac"], {"long_name": "tolerated chi / chi_max"}),
            "tolerated_output_error": (lc, var["tol_oe"], {
                "long_name": "output error at the tolerated trial", "units": "1"}),
            "accuracy_drop_at_frac": (lc, var["drop_at"], {
                "long_name": f"accuracy drop at frac={used:g}", "units": "points"}),
            "max_accuracy_drop": (lc, var["max_drop"], {
                "long_name": "largest accuracy drop in the sweep", "units": "points"}),
            **{m: (lc, v) for m, v in spec.items()},
            "distinct": (lc, distinct, {"long_name": "distinct non-trivial cut (in the "
                                                     "statistics)"}),
            "equivalent_to": (lc, equivalent_to, {"long_name": "first label with the same "
                                                               "matrix"}),
            "tolerated_norm_loss_ci": (("layer", "cut", "bound"), tol_ci, {
                "long_name": "bootstrap interval (test images) of the tolerated norm loss",
                "units": "1"}),
            "baseline_accuracy_ci": (("bound",), base_ci, {
                "long_name": "bootstrap interval (test images) of the baseline accuracy",
                "units": "1"}),
            "layer_tolerated_norm_loss": (("layer",), layer_tol, {
                "long_name": "median tolerated norm loss over the layer's distinct cuts"}),
            "depth": (("layer",), np.arange(len(layers))),
            **aware,
            **stats,
            **drop_stats,
        },
        coords={"layer": layers, "cut": cuts, "measure": list(MEASURES),
                "target": list(TARGETS), "bound": list(BOUNDS),
                "predictor": list(PREDICTORS), "group": [*layers, "all"]},
    )
    n_test = sweep_ds.attrs.get("n_test", sweep_ds.attrs.get("n_samples"))
    ds.attrs.update(provenance())
    ds.attrs.update(delta_points=float(delta), frac=float(used), baseline_accuracy=base,
                    z=float(z), n_boot=int(n_boot), boot_seed=int(seed),
                    per_image=int("correct" in single and "baseline_correct" in single))
    if n_test is not None:
        ds.attrs["n_test"] = int(n_test)
    return ds


def _median(values: np.ndarray) -> float:
    """Median of the finite ``values``; NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _correlations(spec: dict[str, np.ndarray], targets: dict[str, np.ndarray],
                  distinct: np.ndarray) -> dict[str, tuple]:
    """Spearman and partial Spearman (given log χ_max) over the distinct pairs."""
    shape = (len(MEASURES), len(TARGETS))
    rho, pval = np.full(shape, np.nan), np.full(shape, np.nan)
    prho, ppval = np.full(shape, np.nan), np.full(shape, np.nan)
    npairs = np.zeros(shape, dtype=np.int64)
    control = spec["log_chi_max"][distinct]
    for a, m in enumerate(MEASURES):
        for b, t in enumerate(TARGETS):
            x, y = spec[m][distinct], targets[t][distinct]
            rho[a, b], pval[a, b], npairs[a, b] = _spearman(x, y)
            prho[a, b], ppval[a, b], _ = partial_spearman(x, y, control)
    mt = ("measure", "target")
    return {
        "spearman_rho": (mt, rho, {"long_name": "Spearman rank correlation over distinct "
                                                "non-trivial (layer, cut) pairs"}),
        "spearman_p": (mt, pval),
        "partial_rho": (mt, prho, {"long_name": "Spearman partial correlation controlling "
                                                "for log chi_max"}),
        "partial_p": (mt, ppval),
        "n_pairs": (mt, npairs, {"long_name": "distinct non-trivial (layer, cut) pairs with "
                                              "both values"}),
    }


def _bootstrap(single: xr.Dataset, groups: dict, orders: dict, layers: list[str],
               cuts: list[str], delta: float, z: float, n_boot: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap (over test images) of the baseline accuracy and of every tolerance:
    ``(bound,)`` and ``(layer, cut, bound)`` percentile intervals (95 %); NaN without
    per-image results or with ``n_boot=0``."""
    base_ci, tol_ci = np.full(2, np.nan), np.full((len(layers), len(cuts), 2), np.nan)
    paired = _per_image(single)
    if paired is None or n_boot == 0:
        return base_ci, tol_ci
    d, mask = paired
    counts = _resample_counts(d.shape[1], n_boot, seed)
    baseline = np.asarray(single["baseline_correct"].values, dtype=np.float32)
    base_ci = _bounds((counts @ baseline / d.shape[1])[:, None].astype(np.float64), 0.95)[0]
    n = counts @ mask.T  # (n_boot, trial): drawn images each trial was evaluated on
    s1 = counts @ d.T
    s2 = counts @ np.abs(d).T
    verdict = paired_drop_beyond(n, s1, s2, delta, z)
    point = failing(single, None, delta, z=z)
    fail = np.where(np.isnan(verdict), point[None, :], verdict == 1)
    nl = np.asarray(single["norm_loss"].values, dtype=float)
    for (name, cut), _ in groups.items():
        i, j = layers.index(name), cuts.index(cut)
        order = orders[i, j]
        _, low, _ = _walk(nl[order], fail[:, order])
        tol_ci[i, j] = _bounds(low[:, None], 0.95)[0]
    return base_ci, tol_ci


def _drop_predictors(single: xr.Dataset, drop: np.ndarray, layers: list[str],
                     cuts: list[str], distinct: np.ndarray) -> dict[str, tuple]:
    """Spearman of each predictor with the accuracy drop over the single-layer trials on
    distinct cuts: per layer and over all layers."""
    shape = (len(PREDICTORS), len(layers) + 1)
    rho, pval = np.full(shape, np.nan), np.full(shape, np.nan)
    count = np.zeros(shape, dtype=np.int64)
    lay = np.asarray(single["layer"].values).astype(str)
    cut = np.asarray(single["cuts"].values).astype(str)
    on = {(layers[i], cuts[j]) for i, j in zip(*np.nonzero(distinct), strict=True)}
    used = np.array([(a, b) in on for a, b in zip(lay, cut, strict=True)], dtype=bool)
    for a, p in enumerate(PREDICTORS):
        if p not in single:
            continue
        x = np.asarray(single[p].values, dtype=float)
        for g, name in enumerate([*layers, None]):
            rows = used & (lay == name) if name is not None else used
            rho[a, g], pval[a, g], count[a, g] = _spearman(x[rows], drop[rows])
    pg = ("predictor", "group")
    return {
        "drop_rho": (pg, rho, {"long_name": "Spearman correlation of the predictor with the "
                                            "accuracy drop over single-layer trials"}),
        "drop_p": (pg, pval),
        "drop_n": (pg, count, {"long_name": "trials in the correlation"}),
    }


def _aware_tolerances(sweep_ds: xr.Dataset, layers: list[str], cuts: list[str],
                      tol: np.ndarray, base: float, delta: float, z: float) -> dict[str, tuple]:
    """Per layer: the cut of its data-aware trials and the tolerated norm loss there of
    plain (svd) and data-aware truncation; NaN / "" without data-aware trials."""
    svd, aware = np.full(len(layers), np.nan), np.full(len(layers), np.nan)
    cut_of = np.full(len(layers), "", dtype=object)
    for (name, cut), rows in curves(single_trials(sweep_ds, truncation="data-aware"),
                                    truncation="data-aware").items():
        if name not in layers or cut_of[layers.index(name)]:
            continue
        i = layers.index(name)
        cut_of[i] = cut
        aware[i] = tolerated_norm_loss(rows, base, delta, z=z)
        if cut in cuts:
            svd[i] = tol[i, cuts.index(cut)]
    return {
        "aware_cut": (("layer",), cut_of.astype(str), {"long_name": "cut of the data-aware "
                                                                    "trials"}),
        "tolerated_norm_loss_svd": (("layer",), svd, {
            "long_name": "tolerated norm loss of plain truncation on aware_cut", "units": "1"}),
        "tolerated_norm_loss_aware": (("layer",), aware, {
            "long_name": "tolerated norm loss of data-aware truncation on aware_cut",
            "units": "1"}),
    }
