"""Statistics over test images and cuts: bootstrap intervals, distinct (non-trivial,
non-equivalent) cuts, Spearman and partial Spearman correlations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr
from scipy.stats import rankdata, spearmanr
from scipy.stats import t as student_t

from ..errors import InputError
from ..kernels import LegLayout, fine_grain

#: Ends of a confidence interval (the ``bound`` coordinate).
BOUNDS = ("low", "high")

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
