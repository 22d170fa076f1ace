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

from ._link import MEASURES, PREDICTORS, TARGETS, link
from ._seeds import across_seeds
from ._statistics import BOUNDS, accuracy_ci, distinct_cuts, partial_spearman
from ._tolerance import Z_95, failing, tolerance_interval, tolerated_norm_loss, tolerated_trial
from ._views import (
    SCOPES,
    TRUNCATIONS,
    accuracy_drop,
    curves,
    kept_fraction,
    scope_trials,
    scoped_sweep,
    single_trials,
    trial_truncation,
    truncated_layers,
)

__all__ = ["BOUNDS", "MEASURES", "PREDICTORS", "SCOPES", "TARGETS", "TRUNCATIONS", "Z_95",
    "accuracy_ci", "accuracy_drop", "across_seeds", "curves", "distinct_cuts", "failing",
    "kept_fraction", "link", "partial_spearman", "scope_trials", "scoped_sweep",
    "single_trials", "tolerance_interval", "tolerated_norm_loss", "tolerated_trial",
    "trial_truncation", "truncated_layers"]
