"""Trial views of a sweep, tolerated norm loss, and spectra–accuracy statistics.

The *trial views* are the one place that reads the sweep dataset's trial kinds:

* :func:`scoped_sweep` — the sweep with its ``scope`` coordinate (a sweep written
  before ``scope`` existed is converted here, once);
* :func:`scope_trials` / :func:`single_trials` — the trials of one scope and one
  truncation (``svd`` unless asked; a sweep without ``truncation`` is all ``svd``);
* :func:`curves` — trials grouped by ``(layer, cuts)``: one accuracy curve over keep specs;
* :func:`accuracy_drop`, :func:`failing`, :func:`tolerated_trial`,
  :func:`tolerated_norm_loss`, :func:`tolerance_interval` — the walk by increasing
  norm loss until the first *failing* trial;
* :func:`kept_fraction` — χ/χ_max per trial.

**The one tolerance rule.** A trial *fails* when its accuracy drop exceeds δ points
beyond sampling error. With per-image results in the sweep (``correct(trial, image)``,
``baseline_correct(image)``), let d_i = baseline_correct_i − correct_i over the n
images the trial was evaluated on; D = 100·mean(d) points and SE = 100·std(d, ddof=1)/√n
(the standard error of the paired difference); the trial fails when D − z·SE > δ
(z = 1.645: one-sided 95 %; z = 0 is the plain rule). Without per-image results a
trial fails when its drop exceeds δ. Walking a curve's trials by increasing norm loss,
the *tolerated* trial is the last one before the first failure. The tolerance is a
censored interval [low, high): low = its norm loss (0 when the first trial fails),
high = the norm loss of the first failing trial (1 when none fails).

:func:`link` uses them. From a sweep and a spectra dataset, per ``(layer, cut)``: the
tolerance interval, χ there, the output error there, the accuracy drop at a fixed
``frac``, bootstrap confidence intervals over test images; which cuts are distinct
(χ_max = 1 cuts and all but one label of cuts with the same matrix are not); over the
distinct pairs: Spearman and partial Spearman (controlling for log χ_max) correlations
of spectral measures with the accuracy-side targets; across the single-layer trials:
whether norm loss or output error predicts the accuracy drop better; per layer: the
tolerated norm loss of plain against data-aware truncation. :func:`across_seeds` stacks
links of several training seeds and says which correlations hold in every seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.stats import rankdata, spearmanr
from scipy.stats import t as student_t

from .errors import InputError, check_opt
from .kernels import LegLayout, fine_grain
from .provenance import provenance
from .truncation import KeepSpec

__all__ = ["BOUNDS", "MEASURES", "PREDICTORS", "SCOPES", "TARGETS", "TRUNCATIONS", "Z_95",
           "accuracy_ci", "accuracy_drop", "across_seeds", "curves", "distinct_cuts",
           "failing", "kept_fraction", "link", "partial_spearman", "scope_trials",
           "scoped_sweep", "single_trials", "tolerance_interval", "tolerated_norm_loss",
           "tolerated_trial", "trial_truncation", "truncated_layers"]

#: Spectral measures, per (layer, cut); ``log_chi_max`` is the shape-only baseline.
MEASURES = ("entropy", "renyi2", "effective_rank_ratio", "normalized_entropy",
            "spectral_norm_loss_at_frac", "log_chi_max")
TARGETS = ("tolerated_norm_loss", "accuracy_drop_at_frac")
#: What a trial truncates (the sweep's ``scope`` coordinate).
SCOPES = ("layer", "all-cuts", "all-layers")
#: How a trial truncates (the sweep's ``truncation`` coordinate).
TRUNCATIONS = ("svd", "data-aware")
#: Per-trial predictors of the accuracy drop compared by :func:`link`.
PREDICTORS = ("norm_loss", "output_error")
#: Ends of a confidence interval (the ``bound`` coordinate).
BOUNDS = ("low", "high")
#: One-sided 95 % normal quantile: the default z of the tolerance rule.
Z_95 = 1.645
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


# --------------------------------------------------------------------------- the tolerance rule


def _check_z(z: float) -> float:
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not (math.isfinite(z)
                                                                       and z >= 0):
        raise InputError(f"z={z!r}: give a normal quantile >= 0 (1.645: one-sided 95 %; "
                         "0: the plain drop > delta rule)")
    return float(z)


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (
            math.isfinite(delta) and delta >= 0):
        raise InputError(f"delta={delta!r}: give an accuracy drop in percentage points >= 0")
    return float(delta)


def _as_int(values: np.ndarray) -> np.ndarray:
    """Per-image results as int16; a missing value (NaN after a round trip) is -1."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, -1).astype(np.int16)


def _per_image(trials: xr.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """Paired differences ``d = baseline_correct − correct`` and the evaluated mask, both
    float32 ``(trial, image)`` (d = 0 where not evaluated); None without per-image data."""
    if "correct" not in trials or "baseline_correct" not in trials:
        return None
    correct = _as_int(trials["correct"].transpose("trial", "image").values)
    base = _as_int(trials["baseline_correct"].values)
    if correct.shape[1] != base.shape[0]:
        raise InputError(f"sweep dataset: correct has {correct.shape[1]} images, "
                         f"baseline_correct {base.shape[0]}; give the output of one sweep")
    mask = correct >= 0
    d = np.where(mask, base[None, :] - correct, 0)
    return d.astype(np.float32), mask.astype(np.float32)


def _judge(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, delta: float, z: float) -> np.ndarray:
    """Fail (bool) from n images, Σd and Σd² of the paired differences: D − z·SE > δ.

    One image: SE = 0; no image: NaN (undecided)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        var = np.where(n > 1, (s2 - n * mean * mean) / (n - 1), 0.0)
        se = np.sqrt(np.maximum(var, 0.0) / n)
        out = 100.0 * (mean - z * se) > delta
    return np.where(n > 0, out, np.nan)


def failing(trials: xr.Dataset, baseline: float | None = None, delta: float = 1.0, *,
            z: float = Z_95) -> np.ndarray:
    """Whether each trial's accuracy drop exceeds ``delta`` points beyond sampling error,
    bool ``(trial,)``.

    With per-image results (``correct``, ``baseline_correct``): D − z·SE > δ for the paired
    difference over the images the trial was evaluated on (see the module docstring;
    ``baseline`` is then not used). Otherwise the plain rule: drop below ``baseline``
    (default: the sweep's ``baseline_accuracy``) > δ.
    """
    delta, z = _check_delta(delta), _check_z(z)
    plain = accuracy_drop(trials, baseline) > delta
    paired = _per_image(trials)
    if paired is None:
        return plain
    d, mask = paired
    n = mask.sum(axis=1, dtype=np.float64)
    verdict = _judge(n, d.sum(axis=1, dtype=np.float64),
                     np.abs(d).sum(axis=1, dtype=np.float64), delta, z)
    return np.where(np.isnan(verdict), plain, verdict == 1)


def _walk(nl_sorted: np.ndarray, fail_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """The walk over trials sorted by norm loss (last axis): (position of the first failure
    (= count when none), low, high); vectorised over leading axes."""
    m = fail_sorted.shape[-1]
    if m == 0:
        zero = np.zeros(fail_sorted.shape[:-1], dtype=np.int64)
        return zero, zero.astype(float), np.ones(zero.shape)
    fail = fail_sorted.astype(bool)
    first = np.where(fail.any(axis=-1), fail.argmax(axis=-1), m)
    padded = np.concatenate([[0.0], nl_sorted, [1.0]])
    return first, padded[first], padded[first + 1]


def tolerance_interval(rows: xr.Dataset, baseline: float | None = None, delta: float = 1.0, *,
                       z: float = Z_95) -> tuple[int | None, float, float]:
    """The tolerated trial of ``rows`` (one curve) and its censored interval.

    Returns ``(position, low, high)``: the position in ``rows`` of the tolerated trial
    (None when the first trial already fails), ``low`` its norm loss (0 when None), and
    ``high`` the norm loss of the first failing trial (1 when none fails); the true
    tolerance lies in [low, high). Trials fail by :func:`failing`.
    """
    nl = np.asarray(rows["norm_loss"].values, dtype=float)
    fail = failing(rows, baseline, delta, z=z)
    order = np.argsort(nl, kind="stable")
    order = order[np.isfinite(nl[order])]
    first, low, high = _walk(nl[order], fail[order])
    position = None if first == 0 else int(order[first - 1])
    return position, float(low), float(high)


def tolerated_trial(rows: xr.Dataset, baseline: float | None = None, delta: float = 1.0, *,
                    z: float = Z_95) -> int | None:
    """Position in ``rows`` (one curve) of the trial at the tolerated norm loss.

    Walking the trials by increasing norm loss (stable order), the last one before the
    first failing trial (:func:`failing`: drop beyond ``delta`` points and beyond sampling
    error where the sweep has per-image results); None when even the smallest truncation
    fails (nothing is tolerated).
    """
    return tolerance_interval(rows, baseline, delta, z=z)[0]


def tolerated_norm_loss(rows: xr.Dataset, baseline: float | None = None, delta: float = 1.0,
                        *, z: float = Z_95) -> float:
    """The largest norm loss of ``rows`` (one curve) reached before the first failing trial
    (see :func:`tolerated_trial`); 0 when nothing is tolerated. The lower end of
    :func:`tolerance_interval`."""
    return tolerance_interval(rows, baseline, delta, z=z)[1]


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


# --------------------------------------------------------------------------- bootstrap


def _check_boot(n_boot: int, seed: int, level: float = 0.95) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InputError(f"n_boot={n_boot!r}: give a number of bootstrap resamples >= 0 "
                         "(0: no confidence intervals)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed={seed!r}: give an integer >= 0")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level={level!r}: give a confidence level in (0, 1), e.g. 0.95")


def _resample_counts(n_image: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each image is drawn in each resample (with replacement), float32
    ``(n_boot, n_image)``; the same ``seed`` gives the same resamples."""
    idx = np.random.default_rng(seed).integers(0, n_image, size=(n_boot, n_image))
    flat = (idx + n_image * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_image).reshape(n_boot, n_image).astype(
        np.float32)


def _bounds(samples: np.ndarray, level: float) -> np.ndarray:
    """Percentile interval over axis 0, ``bound`` last (low, high); NaN where undefined."""
    tail = 50.0 * (1.0 - level)
    out = np.full((*samples.shape[1:], 2), np.nan)
    if samples.shape[0] == 0:
        return out
    ok = np.isfinite(samples).any(axis=0)
    if ok.any():
        q = np.nanpercentile(samples[:, ok], [tail, 100.0 - tail], axis=0)
        out[ok] = np.moveaxis(q, 0, -1)
    return out


def accuracy_ci(trials: xr.Dataset, n_boot: int = 200, seed: int = 0,
                level: float = 0.95) -> xr.Dataset:
    """Bootstrap confidence intervals on each trial's accuracy (fraction) over test images.

    Resamples the images with replacement ``n_boot`` times (``seed``); a trial stopped
    early counts only the drawn images it was evaluated on. Returns ``accuracy_low``,
    ``accuracy_high`` along ``trial`` (the ``level`` percentile interval) with the trials'
    coordinates; attrs ``baseline_accuracy_low/high``. NaN without per-image results
    (``correct``, ``baseline_correct``) or with ``n_boot=0``.
    """
    if not isinstance(trials, xr.Dataset) or "trial" not in trials.dims:
        raise InputError("trials: expected a sweep dataset with dim 'trial' (the output of "
                         "corranalysis.sweep, or a selection of its trials)")
    _check_boot(n_boot, seed, level)
    n_trial = trials.sizes["trial"]
    ci, base_ci = np.full((n_trial, 2), np.nan), np.full(2, np.nan)
    if "correct" in trials and "baseline_correct" in trials and n_boot > 0:
        correct = np.asarray(trials["correct"].transpose("trial", "image").values)
        base = np.asarray(trials["baseline_correct"].values, dtype=np.float32)
        counts = _resample_counts(base.shape[0], int(n_boot), int(seed))
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = (counts @ (correct == 1).T.astype(np.float32)) / (
                counts @ (correct >= 0).T.astype(np.float32))
        ci = _bounds(acc.astype(np.float64), level)
        base_ci = _bounds((counts @ base / base.shape[0])[:, None].astype(np.float64),
                          level)[0]
    coords = {name: c for name, c in trials.coords.items() if c.dims == ("trial",)}
    out = xr.Dataset({"accuracy_low": ("trial", ci[:, 0], {"units": "1"}),
                      "accuracy_high": ("trial", ci[:, 1], {"units": "1"})}, coords=coords)
    out.attrs.update(baseline_accuracy_low=float(base_ci[0]),
                     baseline_accuracy_high=float(base_ci[1]), n_boot=int(n_boot),
                     seed=int(seed), level=float(level))
    return out


# --------------------------------------------------------------------------- distinct cuts


def _layouts(spectra: xr.Dataset) -> dict[str, LegLayout]:
    """Leg layout per layer from the spectra's ``legs`` and ``shape`` coordinates (and the
    fine-graining of its ``config``); layers whose layout cannot be read are left out."""
    if "legs" not in spectra.coords or "shape" not in spectra.coords:
        return {}
    try:
        mode = json.loads(str(spectra.attrs.get("config", "{}"))).get("legs", "natural")
    except (ValueError, AttributeError):
        mode = "natural"
    out = {}
    for name, legs, shape in zip(spectra["layer"].values, spectra["legs"].values,
                                 spectra["shape"].values, strict=True):
        names = tuple(str(legs).split(","))
        try:
            sizes = tuple(int(s) for s in str(shape).split("x"))
            if len(names) == len(sizes):
                layout = LegLayout(names, sizes)
            else:
                natural = list(dict.fromkeys(n.split(".")[0] for n in names))
                layout = fine_grain(natural, sizes, mode)
        except (ValueError, TypeError):  # InputError is a ValueError
            continue
        if layout.names == names:
            out[str(name)] = layout
    return out


def _cut_key(layout: LegLayout, cut: str) -> frozenset | None:
    """The matrix of ``cut`` up to transposition: its two sides without size-1 legs."""
    try:
        sides = [layout.squeezed([leg for leg in side.split(",") if leg])
                 for side in cut.split("|")]
    except KeyError:
        return None
    return frozenset(frozenset(s) for s in sides) if len(sides) == 2 else None


def _equivalence(spectra: xr.Dataset, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``distinct`` (bool) and ``equivalent_to`` (str) over the spectra's ``(layer, cut)``
    grid, considering only ``present`` pairs (others: False and "")."""
    layers = [str(n) for n in spectra["layer"].values]
    cuts = [str(c) for c in spectra["cut"].values]
    chi_max = np.asarray(spectra["chi_max"].transpose("layer", "cut").values, dtype=float)
    sv = (np.asarray(spectra["singular_values"].transpose("layer", "cut", "k").values,
                     dtype=float) if "singular_values" in spectra else None)
    layouts = _layouts(spectra)
    distinct = np.zeros((len(layers), len(cuts)), dtype=bool)
    rep = np.full((len(layers), len(cuts)), "", dtype=object)
    for i, name in enumerate(layers):
        seen: list[tuple[int, object]] = []  # (representative column, key or spectrum)
        for j, cut in enumerate(cuts):
            if not present[i, j]:
                continue
            key = _cut_key(layouts[name], cut) if name in layouts else None
            if key is not None:
                match = next((r for r, k in seen if k == key), None)
                item: object = key
            elif sv is not None:
                s = sv[i, j][np.isfinite(sv[i, j])]
                match = next((r for r, k in seen if isinstance(k, np.ndarray)
                              and chi_max[i, r] == chi_max[i, j] and k.shape == s.shape
                              and np.allclose(k, s, rtol=1e-12, atol=0.0)), None)
                item = s
            else:
                match, item = None, None
            if match is None:
                seen.append((j, item))
                rep[i, j] = cut
                distinct[i, j] = chi_max[i, j] > 1
            else:
                rep[i, j] = cuts[match]
    return distinct, rep.astype(str)


def distinct_cuts(spectra: xr.Dataset) -> xr.Dataset:
    """Which ``(layer, cut)`` pairs of a spectra dataset are distinct and non-trivial.

    Two labels of one layer are *equivalent* when they matricise the kernel to the same
    matrix (up to transposition) because the legs they differ in have size 1 — read
    from the leg sizes (``legs``, ``shape``); without them, from identical singular
    values (same χ_max, ``np.allclose`` with rtol 1e-12). Returns ``distinct(layer, cut)``
    (False for χ_max = 1 cuts, for all but the first label of an equivalence class and
    for cuts a layer does not have) and ``equivalent_to(layer, cut)`` (the class's first
    label; "" where the cut does not exist).
    """
    if not isinstance(spectra, xr.Dataset) or "chi_max" not in spectra:
        raise InputError("spectra dataset lacks 'chi_max'; pass corranalysis.compute_spectra "
                         "output")
    present = np.isfinite(spectra["chi_max"].transpose("layer", "cut").values)
    distinct, rep = _equivalence(spectra, present)
    lc = ("layer", "cut")
    return xr.Dataset({"distinct": (lc, distinct), "equivalent_to": (lc, rep)},
                      coords={"layer": spectra["layer"].values, "cut": spectra["cut"].values})


# --------------------------------------------------------------------------- correlations


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Spearman ρ, p and the number of finite pairs; NaN when fewer than 3 or constant."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        r = spearmanr(x[ok], y[ok])
        return float(r.statistic), float(r.pvalue), n
    return math.nan, math.nan, n


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float, int]:
    """Spearman partial correlation of ``x`` and ``y`` controlling for ``z`` (1-D arrays).

    Ranks x, y, z (ties averaged); residualises the ranks of x and of y on those of z by
    least squares (with intercept); the Pearson correlation of the residuals, with a
    two-sided p-value from Student's t with n − 3 degrees of freedom. Non-finite
    entries are dropped. Returns ``(rho, p, n)``; NaN for n < 4 or when x or y is
    determined by z (zero residual).
    """
    x, y, z = (np.asarray(a, dtype=float).ravel() for a in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    n = int(ok.sum())
    if n < 4:
        return math.nan, math.nan, n
    rx, ry, rz = (rankdata(a[ok]) for a in (x, y, z))
    design = np.column_stack([np.ones(n), rz])
    res = []
    for r in (rx, ry):
        e = r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
        if np.linalg.norm(e) <= 1e-9 * max(1.0, float(np.linalg.norm(r - r.mean()))):
            return math.nan, math.nan, n
        res.append(e)
    rho = float(np.clip(res[0] @ res[1] / (np.linalg.norm(res[0]) * np.linalg.norm(res[1])),
                        -1.0, 1.0))
    dof = n - 3
    if abs(rho) == 1.0:
        return rho, 0.0, n
    t = rho * math.sqrt(dof / (1.0 - rho * rho))
    return rho, float(2.0 * student_t.sf(abs(t), dof)), n


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
    verdict = _judge(n, s1, s2, delta, z)
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


# --------------------------------------------------------------------------- across seeds


def _union_reindex(links: list[xr.Dataset]) -> list[xr.Dataset]:
    """``links`` reindexed to the union of each dimension's labels (first-appearance
    order); missing entries NaN, False (bool) or "" (strings)."""
    dims = dict.fromkeys(d for ds in links for d in ds.dims if d in ds.coords)
    index = {d: list(dict.fromkeys(v for ds in links if d in ds.coords
                                   for v in ds[d].values.tolist())) for d in dims}
    if "all" in index.get("group", []):  # the all-layers group stays last
        index["group"] = [g for g in index["group"] if g != "all"] + ["all"]
    out = []
    for ds in links:
        fill = {name: (False if v.dtype == bool else "" if v.dtype.kind in "OUS" else np.nan)
                for name, v in ds.data_vars.items()}
        out.append(ds.reindex({d: index[d] for d in ds.dims if d in index}, fill_value=fill))
    return out


def across_seeds(links: Sequence[xr.Dataset], seeds: Sequence[int]) -> xr.Dataset:
    """Link datasets of several training seeds, stacked along a new dim ``seed``.

    ``links``: outputs of :func:`link`, one per training seed; ``seeds``: their seeds.
    Layers, cuts and the other labels are outer-joined (missing: NaN). Adds
    ``holds(measure, target)``: the Spearman correlation has the same sign and p < 0.05
    in every seed; ``partial_holds`` likewise for the partial correlation; and
    ``tolerated_norm_loss_mean``, ``_min``, ``_max`` ``(layer, cut)`` over seeds;
    ``baseline_accuracy(seed)``.
    """
    links, seeds = list(links), list(seeds)
    if not links or len(links) != len(seeds):
        raise InputError(f"links and seeds: give one seed per link dataset (got {len(links)} "
                         f"links and {len(seeds)} seeds)")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds={seeds!r}: give distinct integers")
    for s, ds in zip(seeds, links, strict=True):
        if not isinstance(ds, xr.Dataset) or not {"spearman_rho", "spearman_p",
                                                  "tolerated_norm_loss"} <= set(ds.data_vars):
            raise InputError(f"links (seed {s}): expected the output of corranalysis.link")
    stacked = xr.concat(_union_reindex(links), dim="seed", join="exact",
                        combine_attrs="drop_conflicts", data_vars="all", coords="minimal",
                        compat="override")
    stacked = stacked.assign_coords(seed=[int(s) for s in seeds])

    def holds(rho: xr.DataArray, p: xr.DataArray) -> xr.DataArray:
        sign = np.sign(rho)
        same = ((sign > 0).all("seed") | (sign < 0).all("seed"))
        return same & (p < 0.05).all("seed")

    tol = stacked["tolerated_norm_loss"]
    stacked["holds"] = holds(stacked["spearman_rho"], stacked["spearman_p"])
    stacked["holds"].attrs["long_name"] = ("same sign and p < 0.05 in every seed (Spearman)")
    if "partial_rho" in stacked:
        stacked["partial_holds"] = holds(stacked["partial_rho"], stacked["partial_p"])
        stacked["partial_holds"].attrs["long_name"] = ("same sign and p < 0.05 in every seed "
                                                       "(partial, given log chi_max)")
    finite = np.isfinite(tol).any("seed")
    stacked["tolerated_norm_loss_mean"] = tol.mean("seed", skipna=True).where(finite)
    stacked["tolerated_norm_loss_min"] = tol.min("seed", skipna=True).where(finite)
    stacked["tolerated_norm_loss_max"] = tol.max("seed", skipna=True).where(finite)
    stacked["baseline_accuracy"] = ("seed", [float(ds.attrs.get("baseline_accuracy", np.nan))
                                             for ds in links])
    stacked.attrs.update(provenance(seeds=[int(s) for s in seeds]))
    return stacked
