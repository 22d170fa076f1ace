"""The one tolerance rule: when a trial fails, and the censored tolerance interval of a
curve (see :mod:`corranalysis.linkage`).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import InputError
from ..runtime import paired_drop_beyond
from ._views import accuracy_drop

#: One-sided 95 % normal quantile: the default z of the tolerance rule.
Z_95 = 1.645

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
    verdict = paired_drop_beyond(n, d.sum(axis=1, dtype=np.float64),
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
