"""The study report: HTML + Markdown summary + every figure (PNG and vector PDF) of a run.

:func:`build_report` takes a run as :func:`corranalysis.pipeline.load_run` reads it
(records and the datasets ``spectra``, ``sweep``, ``linkage``, ``recovery``; optionally
``metrics``, ``tensorize``), renders the figures of :mod:`corranalysis.report.figures`,
writes automatically worded findings that state only what the numbers show, and places
the finished report at ``reports/NAME`` atomically (built in a temporary directory,
renamed at the end). Nothing here reads files: the CLI and the pipeline do.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .. import __version__
from ..errors import InputError
from ..linkage import (
    Z_95,
    curves,
    failing,
    scope_trials,
    scoped_sweep,
    single_trials,
    tolerated_norm_loss,
    trial_truncation,
    truncated_layers,
)
from . import figures
from ._output import check_out, env, report_folder
from ._seeds import measure_name, seed_findings, seed_rows
from ._tensorization import (
    COMPARISON_CAPTION,
    _pts,
    check_comparison,
    check_same_model,
    comparison_context,
    comparison_points,
    render_comparisons,
)
from .figures import figure_makers, recovery_modes, save_figure

if TYPE_CHECKING:  # the pipeline imports the report; the report only names its Run
    from ..pipeline import Run

#: The datasets figures are drawn from (any of them).
FIGURE_DATASETS = ("spectra", "sweep", "linkage", "recovery")

#: Report sections: (id, title, figure stems).
SECTIONS = (
    ("spectra", "Spectra", ("spectra", "entropy", "norm_loss")),
    ("truncation", "Truncation and accuracy",
     ("accuracy_vs_norm_loss", "accuracy_vs_kept_fraction", "combined_truncations")),
    ("compression", "Compression against accuracy", ("compression",)),
    ("linkage", "Tolerated norm loss and spectra–accuracy correlations",
     ("tolerance", "depth")),
    ("seeds", "Seeds: what holds in every training seed", ("seeds",)),
    ("recovery", "Recovery by re-training", ("recovery", "recovery_spectra")),
    ("comparison", "Tensorization at equal budgets", ()),
    ("tensorize", "Tensorized layers against truncation", ("tensorize",)),
)
_DROP = ("Accuracy drop in points below the untruncated baseline (symlog: linear within "
         "±δ, logarithmic beyond; each panel its own range). Green: tolerated drops (≤ δ); "
         "hatched: the sampling margin up to δ + z·SE, where a drop still counts as "
         "tolerated by the paired test.")
CAPTIONS = {
    "central": "(a) Accuracy drop after truncating one layer along one cut against the norm "
               "loss of the truncation, every distinct cut of every layer, coloured by depth. "
               "(b) The tolerated norm loss of each distinct cut at its layer (dot; bar up to "
               "the first failing truncation: the true tolerance lies in between) and the "
               "median over the layer's cuts (line). (c) Accuracy drop against the "
               "whole-network compression ratio (dense / truncated parameters) of every "
               "trial, with the Pareto front of each truncation. " + _DROP,
    "training": "Training and test accuracy per epoch of the original training (full test "
                "set).",
    "spectra": "Normalised singular values s_k/s_1 of each kernel matricised across each cut, "
               "against k/χ_max, so cuts and layers of any size compare; one panel per layer, "
               "one line per distinct cut (labels with the same matrix drawn once and named "
               "in the panel; χ_max = 1 cuts left out).",
    "entropy": "Normalised entropy S/ln χ_max per layer and cut (1: a flat spectrum, 0: rank "
               "one), comparable across cuts of any size. Dark grey: χ_max = 1, nothing to "
               "truncate; light grey \"= n\": the same matrix as cut n; blank where the layer "
               "has no such cut.",
    "norm_loss": "Norm loss Σ_{j>χ} s_j² / Σ s² when keeping a fraction χ/χ_max of the "
                 "singular values (log scale, each panel its own range; where a few values "
                 "near full rank fall far below the rest, they run off the bottom and the "
                 "smallest is named), per layer and distinct cut.",
    "accuracy_vs_norm_loss": "The central figure per layer: accuracy drop after truncating "
                             "one layer along one cut, against the norm loss of the "
                             "truncation; one line per distinct cut over χ (frac= and loss= "
                             "keeps both pick χ), shaded ± z·SE. " + _DROP,
    "accuracy_vs_kept_fraction": "Accuracy drop against the kept fraction χ/χ_max of "
                                 "singular values, per layer and distinct cut. " + _DROP,
    "combined_truncations": "Left: all cuts of one layer truncated at once. Right: one cut "
                            "truncated in every layer that has it (the label says which). "
                            "frac= keeps (solid) and loss= keeps (dashed, open) are "
                            "separate series: they truncate differently. " + _DROP,
    "compression": "Accuracy drop against compression ratio (dense / compressed parameters) "
                   "with the Pareto front of each method: the whole network (every trial) "
                   "and each layer alone (its single-cut and all-cut truncations). " + _DROP,
    "tolerance": "(a) Largest norm loss each layer and cut tolerates with an accuracy drop of "
                 "at most δ points; (b) entropy against that tolerance; (c) Spearman rank "
                 "correlations between spectral measures and accuracy-side targets.",
    "depth": "Tolerated norm loss (top; bars: the interval between the last passing and the "
             "first failing grid point) and tolerated output error (bottom) against relative "
             "depth, over distinct non-trivial cuts; star: first layer, diamond: 1×1 "
             "shortcut convolution; line: median over cuts.",
    "seeds": "The same study trained with several seeds (each seed also draws its own "
             "evaluation subset). (a) Median tolerated norm loss over each layer's distinct "
             "cuts, one marker per seed, in forward order; line: the mean over seeds. (b) "
             "Spearman ρ of each spectral measure with the tolerated norm loss in every seed "
             "(filled: raw; open: partial, given ln χ_max; large: p < 0.05); ✓ marks a "
             "correlation with the same sign and p < 0.05 in every seed.",
    "recovery": "Re-training after the plan, every mode with the same optimiser, epochs and "
                "data. (a) Accuracy drop below the untruncated model per epoch: control (grey: "
                "the untruncated model re-trained the same way — what extra training alone "
                "gives; its epoch 0 is the untruncated model), dense (the truncated model, "
                "weights free), projected (the truncation re-applied after every step), local "
                "(each truncated layer, kept truncated, learns the dense layer's outputs); "
                "dashed, open: the same weights re-truncated at the plan's χ, where that "
                "differs — the accuracy the compressed model would have. (b) The norm loss that "
                "re-truncating at the plan would cause, all planned kernels together (0: the "
                "weights kept the low-rank form). (c) Panel (a) against wall time.",
    "recovery_spectra": "Normalised spectra s_k/s_1 of each planned kernel across its plan's "
                        "cut after re-training: the untruncated kernel (grey, the control's "
                        "start) and each other mode's last epoch; dashed line: the χ the "
                        "plan keeps. Values beyond χ refilled by dense re-training are what "
                        "re-truncating removes (norm loss in the corner).",
    "tensorize": "Test accuracy against the fraction of parameters kept in the compressed "
                 "layers: truncations (no re-training) against the tensorized model right "
                 "after encoding and after fine-tuning.",
}


# --------------------------------------------------------------------------- numbers


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if math.isfinite(x) else "n/a"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def _layer_list(names: Sequence[str]) -> str:
    return ", ".join(names)


def _tolerance(linkage: xr.Dataset) -> list[tuple[str, float, str, float]]:
    """(layer, largest tolerated norm loss over cuts, that cut, median over cuts) per layer."""
    out = []
    tol = linkage["tolerated_norm_loss"].transpose("layer", "cut").values
    cuts = [str(c) for c in linkage["cut"].values]
    for i, name in enumerate(str(n) for n in linkage["layer"].values):
        row = tol[i]
        if not np.isfinite(row).any():
            continue
        j = int(np.nanargmax(row))
        out.append((name, float(row[j]), cuts[j], float(np.nanmedian(row))))
    return out


def findings(datasets: Mapping[str, xr.Dataset]) -> list[str]:
    """Short statements of what the numbers show (no interpretation beyond them)."""
    out: list[str] = []
    sw, lk, rec = datasets.get("sweep"), datasets.get("linkage"), datasets.get("recovery")
    base = float(sw.attrs["baseline_accuracy"]) if sw is not None else float("nan")
    delta = float(lk.attrs.get("delta_points", 1.0)) if lk is not None else 1.0
    if sw is not None:
        out.append(f"The untruncated model reaches {_pct(base)} test accuracy; a tolerated "
                   f"truncation keeps the accuracy drop at ≤ {delta:g} point(s).")
    if lk is not None:
        tol = _tolerance(lk)
        if tol:
            ranked = sorted(tol, key=lambda t: (-t[1], -t[3]))
            listing = "; ".join(f"{n}: {_num(m)} (cut {c})" for n, m, c, _ in ranked)
            if all(m == 0 for _, m, _, _ in tol):
                out.append(f"No layer tolerates any truncation on any cut within {delta:g} "
                           "point(s) of accuracy drop: even the smallest truncation tested "
                           "costs more.")
            else:
                best = ranked[0]
                out.append(f"Layers ranked by the largest norm loss they tolerate on any cut at "
                           f"≤ {delta:g} point(s) accuracy drop — {listing}. Layer {best[0]} "
                           f"tolerates the most ({_num(best[1])} on cut {best[2]}).")
            first, deeper = tol[0], tol[1:]
            if deeper:
                deep_max = float(np.median([m for _, m, _, _ in deeper]))
                deep_med = float(np.median([d for _, _, _, d in deeper]))
                cmp = ("less than" if first[1] < deep_max else
                       "more than" if first[1] > deep_max else "as much as")
                out.append(f"The first layer ({first[0]}) tolerates {cmp} the deeper layers: "
                           f"largest tolerated norm loss {_num(first[1])} against a median of "
                           f"{_num(deep_max)} over {len(deeper)} deeper layer(s) (median over "
                           f"cuts: {_num(first[3])} against {_num(deep_med)}).")
        rho, pval = lk["spearman_rho"], lk["spearman_p"]
        for target in (str(t) for t in lk["target"].values):
            r = rho.sel(target=target).values
            p = pval.sel(target=target).values
            if not np.isfinite(r).any():
                continue
            i = int(np.nanargmax(np.abs(r)))
            measure = str(lk["measure"].values[i])
            n = int(lk["n_pairs"].sel(target=target).values[i]) if "n_pairs" in lk else 0
            sig = "significant" if p[i] < 0.05 else "not significant"
            label = measure_name(measure)
            out.append(f"Strongest rank correlation with {target.replace('_', ' ')}: "
                       f"{label} (Spearman ρ = {r[i]:+.2f}, p = {p[i]:.2g}, "
                       f"{n} layer–cut pairs; {sig} at p < 0.05).")
        out += statistics_findings(lk)
    if "seeds" in datasets:
        out += seed_findings(datasets["seeds"])
    if sw is not None:
        parts = []
        for (name, _), rows in curves(scope_trials(sw, "all-cuts")).items():
            parts.append(f"layer {name} stays within {delta:g} point(s) up to norm loss "
                         f"{_num(tolerated_norm_loss(rows, base, delta))} (lowest accuracy "
                         f"{_pct(float(rows['accuracy'].min()))})")
        if parts:
            out.append("Truncating all cuts of one layer at once: " + "; ".join(parts) + ".")
        parts = []
        for (_, cut), rows in curves(scope_trials(sw, "all-layers")).items():
            parts.append(f"{cut}: {_num(tolerated_norm_loss(rows, base, delta))} "
                         f"(lowest {_pct(float(rows['accuracy'].min()))})")
        if parts:
            out.append("Truncating one cut in all layers at once, largest mean norm loss within "
                       f"{delta:g} point(s): " + "; ".join(parts) + ".")
    if rec is not None:
        out += _recovery_findings(rec, delta)
    if "tensorize" in datasets and sw is not None:
        out += [row["finding"] for row in tensorize_rows(datasets["tensorize"], sw)[:1]]
    return out


def _rho(lk: xr.Dataset, var: str, **sel: str) -> tuple[float, float]:
    return (float(lk[f"{var}_rho"].sel(**sel)), float(lk[f"{var}_p"].sel(**sel)))


def statistics_findings(lk: xr.Dataset) -> list[str]:
    """What the linkage's statistics say beyond the raw correlations: the baseline's
    interval, the shape-only baseline beside the spectral measures (partial correlations
    controlling for χ_max), norm loss against output error as predictors of the drop, and
    data-aware against plain truncation."""
    out: list[str] = []
    if "baseline_accuracy_ci" in lk and np.isfinite(lk["baseline_accuracy_ci"].values).all():
        lo, hi = (float(v) for v in lk["baseline_accuracy_ci"].values)
        n = lk.attrs.get("n_test")
        out.append(f"Baseline accuracy 95 % bootstrap interval: {_pct(lo)}–{_pct(hi)}"
                   + (f" over {int(n)} test images" if n else "") + "; an accuracy drop counts "
                   "only where it exceeds δ beyond its paired sampling error (z = "
                   f"{float(lk.attrs.get('z', 0)):g}).")
    target = "tolerated_norm_loss"
    if "partial_rho" in lk and "log_chi_max" in lk["measure"].values:
        shape_r, shape_p = _rho(lk, "spearman", measure="log_chi_max", target=target)
        n = int(lk["n_pairs"].sel(measure="log_chi_max", target=target))
        part = lk["partial_rho"].sel(target=target).drop_sel(measure="log_chi_max")
        if np.isfinite(shape_r) and np.isfinite(part.values).any():
            m = str(part["measure"].values[int(np.nanargmax(np.abs(part.values)))])
            pr, pp = _rho(lk, "partial", measure=m, target=target)
            label = measure_name(m)
            out.append(f"Over {n} distinct non-trivial cuts, matrix shape alone (ln χ_max) "
                       f"rank-correlates with the tolerated norm loss at ρ = {shape_r:+.2f} "
                       f"(p = {shape_p:.2g}); controlling for it, the strongest spectral "
                       f"measure is {label} (partial ρ = {pr:+.2f}, p = {pp:.2g}, "
                       f"{'significant' if pp < 0.05 else 'not significant'} at p < 0.05).")
    if "drop_rho" in lk and "all" in lk["group"].values:
        nl = _rho(lk, "drop", predictor="norm_loss", group="all")
        oe = _rho(lk, "drop", predictor="output_error", group="all")
        if np.isfinite(nl[0]) and np.isfinite(oe[0]):
            better = "output error" if abs(oe[0]) > abs(nl[0]) else "norm loss"
            per = lk["drop_rho"].drop_sel(group="all")
            wins = int(np.nansum(np.abs(per.sel(predictor="output_error").values)
                                 > np.abs(per.sel(predictor="norm_loss").values)))
            out.append(f"Across single-layer trials the accuracy drop rank-correlates with "
                       f"norm loss at ρ = {nl[0]:+.2f} and with output error at ρ = "
                       f"{oe[0]:+.2f}: {better} predicts it better overall, output error in "
                       f"{wins} of {per.sizes['group']} layers.")
    if "tolerated_norm_loss_aware" in lk:
        aware = lk["tolerated_norm_loss_aware"].values
        svd = lk["tolerated_norm_loss_svd"].values
        ok = np.isfinite(aware) & np.isfinite(svd)
        if ok.any():
            out.append(f"On the out|rest cut, the data-aware truncation tolerates a median norm "
                       f"loss of {_num(float(np.median(aware[ok])))} against "
                       f"{_num(float(np.median(svd[ok])))} for the plain one ({int(ok.sum())} "
                       f"layers; more in {int((aware[ok] > svd[ok]).sum())}).")
    return out


def _last(part: xr.Dataset, var: str) -> float:
    return float(np.asarray(part[var].values, dtype=float)[-1]) if var in part else math.nan


def _per_layer(rec: xr.Dataset, var: str) -> np.ndarray:
    """A per-layer variable of a recovery dataset (the same in every mode: the first)."""
    da = rec[var]
    return np.asarray((da.isel(mode=0) if "mode" in da.dims else da).values)


def recovery_compression(rec: xr.Dataset) -> dict[str, Any] | None:
    """What the re-training plan compresses: layers, their kernels' parameters dense and
    factorised, every kernel of the model before and after, the ratio and the budget asked
    (None for a recovery dataset without parameter counts)."""
    if "params_dense" not in rec or "params_factorized" not in rec:
        return None
    dense = _per_layer(rec, "params_dense").astype(float)
    fact = np.minimum(_per_layer(rec, "params_factorized").astype(float), dense)
    out = {"layers": [str(n) for n in rec["layer"].values], "dense": int(dense.sum()),
           "factorized": int(fact.sum()), "budget": rec.attrs.get("budget")}
    if "params_kernels" in rec.attrs and "params_kernels_compressed" in rec.attrs:
        out["kernels"] = int(rec.attrs["params_kernels"])
        out["kernels_after"] = int(rec.attrs["params_kernels_compressed"])
        out["ratio"] = float(rec.attrs.get("compression", out["kernels"]
                                           / max(out["kernels_after"], 1)))
    return out


def recovery_summary(rec: xr.Dataset) -> str | None:
    """The compression the re-training plan achieves, in one sentence."""
    c = recovery_compression(rec)
    if c is None:
        return None
    layers = c["layers"]
    n = len(layers)
    which = ", ".join(layers) if n <= 6 else f"{layers[0]} to {layers[-1]}"
    text = (f"The re-training plan factorises {n} layer{'s' if n != 1 else ''} "
            f"({which}): their kernels {c['dense']:,} → {c['factorized']:,} parameters")
    if "kernels" in c and c["kernels"] == c["dense"]:
        text += f" — every kernel of the model, {c['ratio']:.2f}× fewer"
    elif "kernels" in c:
        text += (f"; all the model's kernels {c['kernels']:,} → {c['kernels_after']:,}, "
                 f"{c['ratio']:.2f}× fewer")
    budget = c.get("budget")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        text += f" (budget: keep at most {100 * float(budget):g} % of the swept kernels)"
    return text + "."


def recovery_verdict(part: xr.Dataset, mode: str, reference: float,
                     delta: float, against: str) -> tuple[str, bool]:
    """(verdict, good) of one re-training mode: ``control`` is the reference; another mode
    has *recovered* only when the compressed model — its weights re-truncated at the plan's
    χ — ends within δ points of ``reference`` (the control's last accuracy, else the
    untruncated model's), and is *not compressed* when re-truncating its weights costs more
    than δ (dense re-training that left the low-rank form). Without a recorded re-truncated
    accuracy only projected and local count as compressed (they keep the truncation)."""
    if mode == "control":
        return "reference: extra training alone", True
    end = _last(part, "accuracy")
    again = _last(part, "retruncated_accuracy")
    if not math.isfinite(again) and mode not in ("projected", "local"):
        return ("unknown: this file does not record the re-truncated accuracy, so whether the "
                "weights are still compressed cannot be told (re-run `corranalysis retrain`)",
                False)
    kept = again if math.isfinite(again) else end  # projected, local: kept truncated
    lost = 100 * (end - again) if math.isfinite(again) else 0.0
    gap = 100 * (reference - kept)
    if lost > delta:
        return (f"not compressed: re-truncating at the plan costs {lost:.1f} pt "
                f"({_pct(again)})"), False
    if gap <= delta:
        return f"recovered: compressed and within {delta:g} pt of {against}", True
    return f"compressed, {gap:.1f} pt below {against}", False


def _recovery_reference(rec: xr.Dataset) -> tuple[float, str]:
    """(accuracy, name) every mode is compared with: the control's last epoch when the
    dataset has a control, else the untruncated model."""
    for mode, part in recovery_modes(rec):
        if mode == "control":
            return _last(part, "accuracy"), "the control"
    return float(rec.attrs.get("baseline_accuracy", math.nan)), "the untruncated model"


def _recovery_findings(rec: xr.Dataset, delta: float = 1.0) -> list[str]:
    base = float(rec.attrs.get("baseline_accuracy", float("nan")))
    reference, against = _recovery_reference(rec)
    out = [t for t in [recovery_summary(rec)] if t]
    for mode, part in recovery_modes(rec):
        acc = np.asarray(part["accuracy"].values, dtype=float)
        start, end, n = float(acc[0]), float(acc[-1]), acc.size - 1
        again, loss = _last(part, "retruncated_accuracy"), _last(part, "network_norm_loss")
        if mode == "control":
            text = (f"Control (the untruncated model re-trained the same way): {_pct(start)} → "
                    f"{_pct(end)} after {n} epoch(s) — extra training alone gives "
                    f"{_pts(100 * (end - start))}")
            if math.isfinite(again):
                text += f"; truncating it at the plan afterwards gives {_pct(again)}"
            out.append(text + ".")
            continue
        lost = base - start
        text = (f"Re-training ({mode}): {_pct(start)} right after truncation "
                f"({_pts(-100 * lost)} from {_pct(base)} untruncated) → {_pct(end)} after "
                f"{n} epoch(s), {_pts(100 * (end - reference))} against {against}")
        if math.isfinite(again) and abs(again - end) * 100 > 0.05:
            text += (f"; its weights re-truncated at the plan's χ: {_pct(again)}"
                     + (f" (norm loss {loss:.2g})" if math.isfinite(loss) else ""))
        verdict, _ = recovery_verdict(part, mode, reference, delta, against)
        out.append(f"{text} — {verdict}.")
    return out


def recovery_rows(rec: xr.Dataset, delta: float = 1.0) -> list[dict[str, Any]]:
    """Per mode (control first): what epoch 0 is, accuracy at epoch 0 and at the end,
    against the reference (the control), accuracy of the weights re-truncated at the plan,
    the norm loss of that re-truncation, and the verdict (:func:`recovery_verdict`)."""
    reference, against = _recovery_reference(rec)
    rows = []
    for mode, part in recovery_modes(rec):
        acc = np.asarray(part["accuracy"].values, dtype=float)
        again, loss = _last(part, "retruncated_accuracy"), _last(part, "network_norm_loss")
        verdict, good = recovery_verdict(part, mode, reference, delta, against)
        rows.append({"mode": mode, "epochs": str(acc.size - 1),
                     "start_is": "untruncated" if mode == "control" else "truncated",
                     "start": _pct(acc[0]), "final": _pct(acc[-1]),
                     "versus": "—" if mode == "control" or against != "the control"
                     else _pts(100 * (acc[-1] - reference)),
                     "retruncated": _pct(again),
                     "norm_loss": "0" if 0 <= loss < 1e-9 else _num(loss),
                     "verdict": verdict, "good": good})
    return rows


def tensorize_rows(tz: xr.Dataset, sw: xr.Dataset) -> list[dict[str, Any]]:
    """Per tensorized layer: its parameters and the best single-layer truncation of that
    layer with at most as many parameters (equal parameter budget), plus a finding."""
    acc = np.asarray(tz["accuracy"].values, dtype=float)
    rows = []
    sw = single_trials(sw)
    layer_of, cuts_of = np.asarray(sw["layer"].values), np.asarray(sw["cuts"].values)
    for i, name in enumerate(str(n) for n in tz["layer"].values):
        after = int(tz["params_after"].values[i])
        before = int(tz["params_before"].values[i])
        idx = np.nonzero((layer_of == name) & (sw["params_factorized"].values <= after))[0]
        row: dict[str, Any] = {
            "layer": name, "method": str(tz["method"].values[i]),
            "rank": str(tz["rank"].values[i]) if "rank" in tz else "",
            "params_before": before, "params_after": after,
            "compression": f"{before / max(after, 1):.1f}×",
            "tensorized_encoded": _pct(acc[0]), "tensorized_final": _pct(acc[-1]),
            "trunc_cut": "—", "trunc_keep": "—", "trunc_params": "—", "trunc_accuracy": "—",
        }
        if idx.size:
            best = idx[int(np.argmax(sw["accuracy"].values[idx]))]
            row.update(trunc_cut=str(cuts_of[best]), trunc_keep=str(sw["keep"].values[best]),
                       trunc_params=int(sw["params_factorized"].values[best]),
                       trunc_accuracy=_pct(float(sw["accuracy"].values[best])))
            versus = (f"the best truncation of layer {name} alone with at most as many "
                      f"parameters ({row['trunc_params']}, cut {row['trunc_cut']}, "
                      f"{row['trunc_keep']}) reaches {row['trunc_accuracy']} without "
                      "re-training")
        else:
            versus = (f"no truncation of layer {name} in the sweep has at most "
                      f"{after} parameters")
        row["finding"] = (
            f"Tensorizing layer(s) {', '.join(str(n) for n in tz['layer'].values)} "
            f"({'+'.join(dict.fromkeys(str(m) for m in tz['method'].values))}): "
            f"{_pct(acc[0])} right after encoding, {_pct(acc[-1])} after {acc.size - 1} "
            f"epoch(s) of fine-tuning; for layer {name} ({before} → {after} parameters) "
            f"{versus}.")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the first screen

PAPER = "Singh, Jahromi and Orús (arXiv 2403.14379)"


def _points(delta: float) -> str:
    return f"{delta:g} point" + ("" if delta == 1 else "s")


def _range(low: float, high: float) -> str:
    """A censored tolerance [low, high) in two significant digits: ``0.28–0.38``; ``≥ 0.5``
    when nothing failed (high = 1)."""
    def num(x: float) -> str:
        return f"{x:#.2g}" if x > 0 else "0"

    if not math.isfinite(low):
        return "n/a"
    if not math.isfinite(high) or high >= 1.0:
        return f"≥ {num(low)}"
    return f"{num(low)}–{num(high)}"


def _layer_tolerances(lk: xr.Dataset) -> list[tuple[str, float, float]]:
    """(layer, median tolerated norm loss, median first-failing norm loss) over each layer's
    distinct cuts (all its cuts when none is distinct), in forward order."""
    low = lk["tolerated_norm_loss"].transpose("layer", "cut").values
    high = (lk["tolerated_norm_loss_high"].transpose("layer", "cut").values
            if "tolerated_norm_loss_high" in lk else np.full(low.shape, np.nan))
    distinct = (lk["distinct"].transpose("layer", "cut").values if "distinct" in lk
                else np.isfinite(low))
    out = []
    for i, name in enumerate(str(n) for n in lk["layer"].values):
        use = distinct[i] & np.isfinite(low[i]) if (distinct[i] & np.isfinite(low[i])).any() \
            else np.isfinite(low[i])
        if use.any():
            out.append((name, float(np.median(low[i][use])), float(np.median(high[i][use]))))
    return out


def depth_correlation(lk: xr.Dataset) -> tuple[float, float, int]:
    """(Spearman ρ, p, pairs) of depth (the layer's forward position) with the tolerated
    norm loss over the distinct layer–cut pairs of a link dataset (NaN below 3 pairs)."""
    low = lk["tolerated_norm_loss"].transpose("layer", "cut").values
    pairs = (lk["distinct"].transpose("layer", "cut").values.astype(bool) if "distinct" in lk
             else np.ones(low.shape, bool)) & np.isfinite(low)
    depth = np.broadcast_to(np.arange(low.shape[0])[:, None], low.shape)
    n = int(pairs.sum())
    if n < 3:
        return math.nan, math.nan, n
    rho, p = (float(v) for v in spearmanr(depth[pairs], low[pairs]))
    return rho, p, n


def depth_answer(lk: xr.Dataset) -> tuple[str, str]:
    """(verdict, sentence): whether deeper layers tolerate larger norm losses — the trend of
    the paper — from the link's censored tolerances (median over each layer's distinct
    cuts) and the Spearman correlation of depth with the tolerated norm loss over the
    distinct layer–cut pairs.

    "Yes" when the most tolerant layer's range lies wholly above the first layer's and the
    last layer's does not fall wholly below it; "Partly: up to a point" when it rises so
    and then falls; "No, the opposite" for a significant negative correlation otherwise;
    else "Not clearly". The sentence gives the ranges and ρ."""
    tol = _layer_tolerances(lk)
    rho, p, n = depth_correlation(lk)
    if len(tol) < 2 or not math.isfinite(rho):
        return "Cannot tell", ("Too few layers or distinct cuts were truncated to compare "
                               "tolerances across depth.")
    peak = max(range(len(tol)), key=lambda i: tol[i][1])
    rise = peak > 0 and tol[peak][1] >= tol[0][2]  # the ranges do not overlap
    fall = peak < len(tol) - 1 and tol[-1][2] <= tol[peak][1]
    if rise and not fall:
        verdict = "Yes"
    elif rise:
        verdict = "Partly: up to a point"
    elif rho < 0 and p < 0.05:
        verdict = "No, the opposite"
    else:
        verdict = "Not clearly"

    def at(i: int) -> str:
        name, lo, hi = tol[i]
        return f"{_range(lo, hi)} in {name}"

    path = f"from {at(0)} (the first layer)"
    if 0 < peak < len(tol) - 1:
        path += f" to {at(peak)}, then falls to {at(len(tol) - 1)} (the last)"
    elif peak == len(tol) - 1:
        path += f" to {at(peak)} (the last)"
    else:
        path += f", its largest, to {at(len(tol) - 1)} (the last)"
    verb = "rises" if peak > 0 else "goes"
    return verdict, (f"The tolerated norm loss {verb} {path}; depth and tolerance "
                     f"rank-correlate at ρ = {rho:+.2f} (p = {p:.2g}, {n} distinct "
                     f"layer–cut pairs).")


def network_params(run: Run) -> float | None:
    """The whole network's parameters, from the training record (None when unknown)."""
    n = run.record.get("n_params")
    return float(n) if isinstance(n, (int, float)) and n > 0 else None


def best_compression(sw: xr.Dataset, delta: float, z: float,
                     total: float | None = None) -> dict[str, Any] | None:
    """The tolerated trials (:func:`corranalysis.linkage.failing` is false) that compress
    most: over the whole network (``total`` parameters; default the truncated layers'
    kernels) and for one layer alone. None when no trial compresses within δ."""
    scoped = scoped_sweep(sw)
    total = float(total) if total else figures.truncated_params(scoped)
    ok = ~failing(scoped, delta=delta, z=z)
    net = figures.network_ratio(scoped, total)
    layer_ratio = (np.asarray(scoped["params_dense"].values, float)
                   / np.asarray(scoped["params_factorized"].values, float))
    one = ok & (np.asarray(scoped["scope"].values) != "all-layers")
    if not (ok & (net > 1)).any():
        return None

    def describe(i: int) -> dict[str, Any]:
        scope = str(scoped["scope"].values[i])
        layers = str(scoped["layer"].values[i]).split(",")
        cuts = str(scoped["cuts"].values[i])
        return {"scope": scope, "layers": layers, "n_layers": len(layers),
                "cuts": "every cut" if scope == "all-cuts" else f"cut {cuts}",
                "keep": str(scoped["keep"].values[i]),
                "truncation": str(trial_truncation(scoped)[i]),
                "accuracy": float(scoped["accuracy"].values[i]),
                "network_ratio": float(net[i]), "layer_ratio": float(layer_ratio[i]),
                "params_after": int(round(total - float(scoped["params_dense"].values[i])
                                          + float(scoped["params_factorized"].values[i])))}

    best = describe(int(np.flatnonzero(ok)[np.argmax(np.where(ok, net, -np.inf)[ok])]))
    best["total"] = int(total)
    if one.any():
        best["one_layer"] = describe(int(np.flatnonzero(one)[np.argmax(layer_ratio[one])]))
    return best


def _compression_sentence(best: dict[str, Any] | None, delta: float) -> str:
    if best is None:
        return (f"Compression: no truncation in the sweep shrinks the network while keeping "
                f"the drop within δ = {_points(delta)}.")
    how = (f"{best['cuts']} of {', '.join(best['layers'])}" if best["n_layers"] <= 2
           else f"{best['cuts']} in {best['n_layers']} layers")
    method = "" if best["truncation"] == "svd" else f", {best['truncation']}"
    out = (f"Compression within δ: the best truncation shrinks the whole network "
           f"{best['network_ratio']:.2f}× ({best['total']:,} → {best['params_after']:,} "
           f"parameters: {how}, {best['keep']}{method}, {_pct(best['accuracy'])})")
    one = best.get("one_layer")
    if one is not None:
        method = "" if one["truncation"] == "svd" else f", {one['truncation']}"
        out += (f"; one layer alone up to {one['layer_ratio']:.1f}× "
                f"({one['layers'][0]}, {one['cuts']}, {one['keep']}{method})")
    return out + "."


def _spectra_sentence(lk: xr.Dataset) -> str | None:
    """Whether the spectra predict the tolerance beyond the matrix size (partial
    correlations given ln χ_max), in one sentence."""
    target = "tolerated_norm_loss"
    if "partial_rho" not in lk or "log_chi_max" not in lk["measure"].values:
        return None
    shape_r, shape_p = _rho(lk, "spearman", measure="log_chi_max", target=target)
    part = lk["partial_rho"].sel(target=target).drop_sel(measure="log_chi_max")
    if not (math.isfinite(shape_r) and np.isfinite(part.values).any()):
        return None
    m = str(part["measure"].values[int(np.nanargmax(np.abs(part.values)))])
    pr, pp = _rho(lk, "partial", measure=m, target=target)
    label = measure_name(m)
    verdict = ("adds to it" if pp < 0.05 else "adds nothing significant")
    return (f"Matrix size alone (ln χ_max) rank-correlates with the tolerated norm loss at "
            f"ρ = {shape_r:+.2f} (p = {shape_p:.2g}); the spectrum {verdict}: {label}, "
            f"partial ρ = {pr:+.2f} given the size (p = {pp:.2g}).")


def headline(run: Run) -> dict[str, Any]:
    """The first screen: the study's question, three or four plain sentences answering it
    (with the censored tolerance ranges and the correlation behind the verdict, the
    sampling rule and baseline interval, the compression achieved, what the spectra
    add), and a note on the two baselines when both appear."""
    ds = run.datasets
    sw, lk = ds.get("sweep"), ds.get("linkage")
    out: dict[str, Any] = {"question": None, "verdict": None, "sentences": [],
                           "baselines": None}
    if lk is None or sw is None:
        return out
    delta = float(lk.attrs.get("delta_points", 1.0))
    z = float(lk.attrs.get("z", Z_95))
    out["question"] = (f"Do deeper layers tolerate larger norm losses (more of their "
                       f"correlations truncated before accuracy drops by more than "
                       f"δ = {_points(delta)}), as {PAPER} found?")
    verdict, trend = depth_answer(lk)
    out["verdict"] = verdict
    if "seeds" in ds:
        per = [depth_correlation(ds["seeds"].sel(seed=s)) for s in ds["seeds"]["seed"].values]
        sig = sum(1 for r, q, _ in per if q < 0.05)
        trend += (f" Over {len(per)} training seeds ρ = "
                  f"{', '.join(f'{r:+.2f}' for r, _, _ in per)} (p < 0.05 in {sig} of "
                  f"{len(per)}; section Seeds).")
    out["sentences"].append(trend + " Ranges: last passing to first failing truncation, "
                            "median over a layer's distinct cuts.")
    base = float(sw.attrs["baseline_accuracy"])
    n = sw.attrs.get("n_test", sw.attrs.get("n_samples"))
    ci = (lk["baseline_accuracy_ci"].values if "baseline_accuracy_ci" in lk
          else np.full(2, np.nan))
    on = f"the {int(n):,} test images" if n is not None else "the test images"
    ci_text = (f"95 % CI {_pct(float(ci[0]))}–{_pct(float(ci[1]))}"
               if np.isfinite(ci).all() else "")
    rule = (f" beyond paired sampling error (drop − {z:g}·SE ≤ δ)" if z > 0
            and lk.attrs.get("per_image", 1) else "")
    full = run.record.get("test_accuracy")
    two = isinstance(full, (int, float)) and abs(float(full) - base) > 1e-9
    other = (f"not the training record's {_pct(float(full))} on the full test set"
             if two else "")
    notes = "; ".join(t for t in (ci_text, other) if t)
    out["sentences"].append(f"Tolerated means an accuracy drop within δ = {_points(delta)}"
                            f"{rule} on {on}, where the untruncated model scores {_pct(base)}"
                            + (f" ({notes})" if notes else "") + ".")
    if "params_dense" in sw and "params_factorized" in sw:
        out["sentences"].append(_compression_sentence(
            best_compression(sw, delta, z, network_params(run)), delta))
    spectra = _spectra_sentence(lk)
    if spectra:
        out["sentences"].append(spectra)
    if two:
        out["baselines"] = (f"Two baselines appear in this report: {_pct(float(full))} is the "
                            f"trained model on the full test set (training record, training "
                            f"figure); {_pct(base)} is the same model on {on} that every "
                            "truncation and re-training trial is evaluated on — all drops "
                            "are measured against this one.")
    return out


def plan_rows(rec: xr.Dataset) -> list[dict[str, str]] | None:
    """The re-training plan as table rows (layer, cuts, keep, χ per cut, and ``params``:
    dense → factorised, where the dataset records them); None when the plan is not the
    layer → {cuts, keep} mapping (then it is shown as text)."""
    def load(key: str) -> Any:
        value = rec.attrs.get(key)
        try:
            return json.loads(value) if isinstance(value, str) else value
        except ValueError:
            return None

    plan, chis = load("plan"), load("chi_plan") or {}
    if not isinstance(plan, dict) or not all(isinstance(v, dict) for v in plan.values()):
        return None
    names = [str(n) for n in rec["layer"].values] if "layer" in rec.coords else []
    sizes = {}
    if "params_dense" in rec and "params_factorized" in rec:
        sizes = {n: (int(d), int(f)) for n, d, f in zip(
            names, _per_layer(rec, "params_dense"), _per_layer(rec, "params_factorized"),
            strict=True)}
    full = ({n: int(m) for n, m in zip(names, _per_layer(rec, "chi_max"), strict=True)}
            if "chi_max" in rec else {})
    rows = []
    for layer, spec in plan.items():
        cuts = spec.get("cuts") or []
        chi = (chis.get(layer) or {}).get("keep")
        chi = [chi] if isinstance(chi, str) else chi if isinstance(chi, list) else []
        chi = ", ".join(str(c).removeprefix("chi=") for c in chi)
        if chi and "," not in chi and str(layer) in full:
            chi += f" of {full[str(layer)]}"
        d, f = sizes.get(str(layer), (0, 0))
        rows.append({"layer": str(layer), "cuts": "; ".join(str(c) for c in cuts),
                     "keep": str(spec.get("keep", "")), "chi": chi,
                     "params": f"{d:,} → {min(f, d):,} ({d / max(min(f, d), 1):.1f}×)"
                     if d else "",
                     "other": ", ".join(f"{k}: {v}" for k, v in spec.items()
                                        if k not in ("cuts", "keep"))})
    return rows


# --------------------------------------------------------------------------- setup


def _versions(run: Run) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in ("package_versions", "versions"):
        if isinstance(run.record.get(key), dict):
            out.update({str(k): str(v) for k, v in run.record[key].items()})
    for ds in run.datasets.values():
        for k, v in ds.attrs.items():
            if k.startswith("version_"):
                out.setdefault(k[len("version_"):], str(v))
    return dict(sorted(out.items()))


def _distinct(*values: Any) -> str:
    seen = [str(v) for v in values if v not in (None, "", "none")]
    return ", ".join(dict.fromkeys(seen)) or "—"


def setup_rows(run: Run) -> list[tuple[str, str]]:
    """The setup table: model, data, baseline accuracy, what was truncated and re-trained."""
    rec, cfg = run.record, run.config
    sw = run.datasets.get("sweep")
    spectra = run.datasets.get("spectra")
    rows = [("run", run.name), ("model", str(rec.get("model") or cfg.get("model", "—"))),
            ("data set", str(rec.get("dataset") or cfg.get("dataset", "—")))]
    if "n_params" in rec:
        rows.append(("parameters", f"{int(rec['n_params']):,}"))
    if "test_accuracy" in rec:
        rows.append(("test accuracy, full test set (training record)",
                     _pct(float(rec["test_accuracy"]))))
    if sw is not None:
        n = sw.attrs.get("n_test", sw.attrs.get("n_samples"))
        rows.append(("baseline of every accuracy drop",
                     _pct(float(sw.attrs["baseline_accuracy"]))
                     + (f" on the {int(n):,}-image evaluation subset" if n is not None else "")))
        rows.append(("trials", f"{sw.sizes['trial']}"))
    if spectra is not None:
        rows.append(("layers analysed", f"{spectra.sizes['layer']} "
                     f"({_layer_list([str(n) for n in spectra['layer'].values])})"))
        rows.append(("cuts", f"{spectra.sizes['cut']}"))
    if "linkage" in run.datasets:
        rows.append(("tolerated accuracy drop δ",
                     f"{float(run.datasets['linkage'].attrs.get('delta_points', 1.0)):g} "
                     "point(s)"))
    rec_ds = run.datasets.get("recovery")
    if rec_ds is not None:
        modes = [m for m, _ in recovery_modes(rec_ds)]
        epochs = rec_ds.sizes.get("epoch", 1) - 1
        rows.append(("re-training", f"{', '.join(modes)}; {epochs} epoch(s) each, the same "
                     "optimiser and data"))
        c = recovery_compression(rec_ds)
        if c is not None and "kernels" in c:
            rows.append(("compression of the plan", f"kernels {c['kernels']:,} → "
                         f"{c['kernels_after']:,} parameters ({c['ratio']:.2f}×)"))
    if rec_ds is not None and "plan" in rec_ds.attrs and plan_rows(rec_ds) is None:
        rows.append(("re-training plan", json.dumps(rec_ds.attrs["plan"])
                     if not isinstance(rec_ds.attrs["plan"], str) else rec_ds.attrs["plan"]))
    return rows


def provenance_rows(run: Run) -> list[tuple[str, str]]:
    """Git commits, data checksum, devices, seeds, creation times."""
    rec, cfg, ds = run.record, run.config, run.datasets
    seeds = [cfg.get("seed"), (rec.get("config") or {}).get("seed")
             if isinstance(rec.get("config"), dict) else None,
             *(d.attrs.get("seed") for d in ds.values())]
    rows = [
        ("git commit", _distinct(rec.get("git_commit"),
                                 *(d.attrs.get("git_commit") for d in ds.values()))),
        ("data checksum", _distinct(rec.get("dataset_checksum"))),
        ("checkpoint", _distinct(rec.get("checkpoint"))),
        ("checkpoint SHA-256", _distinct(rec.get("checkpoint_sha256"))),
        ("model.pt SHA-256", _distinct(rec.get("model_sha256"))),
        ("devices", _distinct(rec.get("device"), *(d.attrs.get("device") for d in ds.values()))),
        ("seeds", _distinct(*[s for s in seeds if not str(s).startswith("none")])),
        ("training wall time", f"{float(rec['wall_seconds']):.1f} s"
         if "wall_seconds" in rec else "—"),
    ]
    return [(k, v) for k, v in rows if v != "—" or k in ("git commit", "data checksum")]


def stage_rows(run: Run) -> list[tuple[str, str, str]]:
    """(stage, seconds, finished) from stages.json, in pipeline order (as read)."""
    return [(s, f"{float(rec.get('seconds', float('nan'))):.1f}", str(rec.get("finished", "")))
            for s, rec in run.stages.items()]


# --------------------------------------------------------------------------- rendering


def _markdown(ctx: Mapping[str, Any]) -> str:
    lines = [f"# Report: {ctx['name']}", "", f"Generated {ctx['created']} by corranalysis "
             f"{ctx['version']}.", ""]
    head = ctx["headline"]
    if head["question"]:
        lines += ["## Answer", "", f"**{head['question']}** {head['verdict']}.", ""]
        lines += [f"{i}. {t}" for i, t in enumerate(head["sentences"], 1)]
        lines += ["", head["baselines"], ""] if head["baselines"] else [""]
    lines += ["## Setup", ""]
    lines += [f"- **{k}**: {v}" for k, v in ctx["setup"]]
    if ctx["plan"]:
        lines += ["", "Re-training plan:", "",
                  "| layer | cuts | keep | χ per cut | parameters |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['layer']} | {r['cuts']} | {r['keep']} | {r['chi']} | {r['params']} |"
                  for r in ctx["plan"]]
    lines += ["", "## Findings", ""] + [f"- {f}" for f in ctx["findings"]]
    if ctx["recovery"]:
        lines += ["", "## Recovery", "", "| mode | epoch 0 | epochs | start | end | against "
                  "the control | re-truncated at the plan | its norm loss | verdict |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['mode']} | {r['start_is']} | {r['epochs']} | {r['start']} | "
                  f"{r['final']} | {r['versus']} | {r['retruncated']} | {r['norm_loss']} | "
                  f"{r['verdict']} |" for r in ctx["recovery"]]
    if ctx["seeds"]:
        lines += ["", "## Seeds: what holds in every training seed", "",
                  "Spearman ρ with the tolerated norm loss per seed (* p < 0.05); holds: "
                  "same sign and p < 0.05 in every seed.", "",
                  "| measure | ρ per seed | holds | partial ρ given ln χ_max | holds |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['measure']} | {r['rho']} | {r['holds']} | {r['partial']} | "
                  f"{r['partial_holds']} |" for r in ctx["seeds"]]
    for c in ctx["comparisons"]:
        lines += ["", f"## Tensorization at equal budgets: {c['title']}", ""]
        lines += [f"- {t}" for t in c["sentences"]]
        lines += ["", f"![{c['title']}]({c['png']}) ([PDF]({c['pdf']}))"]
    lines += ["", "## Figures", ""]
    for fig in ctx["figure_list"]:
        lines.append(f"- [{fig['title']}]({fig['png']}) ([PDF]({fig['pdf']})): {fig['caption']}")
    lines += ["", "## Provenance", ""] + [f"- **{k}**: {v}" for k, v in ctx["provenance"]]
    lines.append("- **package versions**: " + ", ".join(f"{k} {v}"
                                                         for k, v in ctx["versions"].items()))
    if ctx["stages"]:
        lines += ["", "| stage | seconds | finished |", "| --- | ---: | --- |"]
        lines += [f"| {s} | {sec} | {fin} |" for s, sec, fin in ctx["stages"]]
    return "\n".join(lines) + "\n"


_TITLES = {"central": "What tolerates truncation, and what it buys",
           "training": "Training", "spectra": "Singular-value spectra",
           "entropy": "Normalised entropy per layer and cut", "norm_loss": "Norm-loss curves",
           "compression": "Compression against accuracy",
           "accuracy_vs_norm_loss": "Accuracy vs norm loss",
           "accuracy_vs_kept_fraction": "Accuracy vs kept fraction",
           "combined_truncations": "All-cuts and all-layers truncations",
           "tolerance": "Tolerated norm loss and correlations",
           "depth": "Tolerance against depth",
           "seeds": "Tolerance and correlations over training seeds",
           "recovery": "Recovery against the control",
           "recovery_spectra": "Spectra of the planned kernels after re-training",
           "tensorize": "Tensorization vs truncation"}


def render_figures(datasets: Mapping[str, xr.Dataset], out_dir: Path,
                   formats: Sequence[str] = ("png", "pdf"), width: float | None = None,
                   layers: Sequence[str] | None = None, *,
                   total_params: float | None = None) -> list[str]:
    """Write every figure the datasets allow into ``out_dir`` (``stem.fmt``); return stems.
    ``total_params``: the whole network's parameters (for the compression ratios)."""
    stems = []
    for stem, draw in figure_makers(datasets, width=width, layers=layers,
                                    total_params=total_params).items():
        save_figure(draw(), out_dir / stem, formats)
        stems.append(stem)
    return stems


def _context(run: Run, stems: Sequence[str],
             comparisons: Mapping[str, xr.Dataset] | None = None) -> dict[str, Any]:
    def fig(stem: str) -> dict[str, str]:
        return {"stem": stem, "title": _TITLES.get(stem, stem), "caption": CAPTIONS.get(stem, ""),
                "png": f"figures/{stem}.png", "pdf": f"figures/{stem}.pdf"}

    compared = comparison_context(comparisons or {})
    sections = []
    for sid, title, names in SECTIONS:
        figs = [fig(s) for s in names if s in stems]
        if figs or (sid == "tensorize" and "tensorize" in run.datasets) or (
                sid == "comparison" and compared):
            sections.append({"id": sid, "title": title, "figures": figs})
    ds = run.datasets
    lk = ds.get("linkage")
    corr = []
    if lk is not None:
        for m in lk["measure"].values:
            for t in lk["target"].values:
                r = float(lk["spearman_rho"].sel(measure=m, target=t))
                p = float(lk["spearman_p"].sel(measure=m, target=t))
                n = int(lk["n_pairs"].sel(measure=m, target=t)) if "n_pairs" in lk else 0
                corr.append({"measure": str(m).replace("_", " "),
                             "target": str(t).replace("_", " "),
                             "rho": f"{r:+.2f}" if math.isfinite(r) else "n/a",
                             "p": f"{p:.2g}" if math.isfinite(p) else "n/a", "n": n})
    tol = [{"layer": n, "max": _num(m), "cut": c, "median": _num(d)}
           for n, m, c, d in (_tolerance(lk) if lk is not None else [])]
    rec_ds = ds.get("recovery")
    delta = float(lk.attrs.get("delta_points", 1.0)) if lk is not None else 1.0
    return {
        "headline": headline(run), "central_figure": fig("central") if "central" in stems
        else None,
        "plan": plan_rows(rec_ds) if rec_ds is not None else None,
        "model": str(run.record.get("model") or run.config.get("model", "")),
        "dataset": str(run.record.get("dataset") or run.config.get("dataset", "")),
        "name": run.name, "run_dir": str(run.path), "version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "setup": setup_rows(run), "findings": findings(ds), "provenance": provenance_rows(run),
        "versions": _versions(run), "stages": stage_rows(run),
        "training_figure": fig("training") if "training" in stems else None,
        "sections": sections, "figure_list": [fig(s) for s in stems],
        "correlations": corr, "tolerance": tol,
        "delta": delta,
        "recovery": recovery_rows(rec_ds, delta) if rec_ds is not None else [],
        "seeds": seed_rows(ds["seeds"]) if "seeds" in ds else [],
        "recovery_summary": recovery_summary(rec_ds) if rec_ds is not None else None,
        "comparisons": compared, "comparison_caption": COMPARISON_CAPTION,
        "tensorize": (tensorize_rows(ds["tensorize"], ds["sweep"])
                      if "tensorize" in ds and "sweep" in ds else []),
    }


def _default_out(run: Run) -> Path:
    return Path("reports") / run.name


#: Kept for callers of the earlier name.
_check_out = check_out


def build_report(run: Run, out_dir: str | os.PathLike | None = None, *,
                 comparisons: Mapping[str, xr.Dataset] | None = None) -> Path:
    """Build the report of ``run`` into ``out_dir`` (default ``reports/NAME``); return it.

    ``run``: a run as :func:`corranalysis.load_run` reads it (``ca.build_report(
    ca.load_run("runs/NAME"))``). Writes ``index.html`` (figures beside it under
    ``figures/``), ``summary.md`` and every figure as PNG and PDF. The report is built
    in a temporary directory and renamed into place, replacing an earlier report only
    at the end.

    ``comparisons``: tensorization comparisons of the same model by name (``compare.nc`` of
    :func:`corranalysis.tensorize.compare`, as
    :func:`corranalysis.report.read_comparisons` reads them): a section "Tensorization at
    equal budgets" (figure, table and statements per comparison), and their fine-tuned
    variants as points of the compression figures. InputError for a comparison of another
    model than the run's.
    """
    t0 = time.perf_counter()
    comparisons = dict(comparisons or {})
    for name, cds in comparisons.items():
        check_comparison(cds, f"comparison {name!r}")
    check_same_model(comparisons, str(run.record.get("model") or run.config.get("model")
                                      or "") or None)
    out = Path(out_dir) if out_dir is not None else _default_out(run)
    datasets = dict(run.datasets)
    if comparisons:
        sw = datasets.get("sweep")
        points = comparison_points(comparisons, truncated_layers(sw) if sw is not None else ())
        if points is not None:
            datasets["comparison"] = points
    with report_folder(out, run.path) as tmp:
        stems = render_figures(datasets, tmp / "figures", total_params=network_params(run))
        render_comparisons(comparisons, tmp / "figures")
        ctx = _context(run, stems, comparisons)
        ctx["stages"] = [*ctx["stages"], ("report (this build)",
                                          f"{time.perf_counter() - t0:.1f}", ctx["created"])]
        (tmp / "index.html").write_text(env().get_template("report.html.j2").render(**ctx),
                                        encoding="utf-8")
        (tmp / "summary.md").write_text(_markdown(ctx), encoding="utf-8")
    return out


def build_figures(run: Run | Mapping[str, xr.Dataset], out_dir: str | os.PathLike,
                  width: float | None = None, layers: Sequence[str] | None = None,
                  formats: Sequence[str] = ("pdf",)) -> list[Path]:
    """The paper figures of ``run`` alone (vector PDF by default) into ``out_dir``.

    ``run``: a run as :func:`corranalysis.load_run` reads it, or its datasets by name
    (any of ``spectra``, ``sweep``, ``linkage``, ``recovery``, ``tensorize``,
    ``metrics``); InputError when it has none of the first four. ``width``: force
    every figure to this width in inches (default: each figure's own journal width,
    3.4 or 7.0 in). Files are renamed into place when all are drawn.
    """
    datasets = run if isinstance(run, Mapping) else run.datasets
    if not any(k in datasets for k in FIGURE_DATASETS):
        where = "" if isinstance(run, Mapping) else f" of {str(run.path)!r}"
        raise InputError(f"the run{where} holds none of the datasets "
                         f"{', '.join(FIGURE_DATASETS)}: run the study first "
                         "(`corranalysis run CONFIG`)")
    if layers is not None:
        known = {str(n) for key, d in datasets.items() if key != "sweep" and "layer" in d.coords
                 for n in d["layer"].values}
        if "sweep" in datasets:
            known.update(truncated_layers(datasets["sweep"]))
        unknown = [n for n in layers if n not in known]
        if unknown or not layers:
            raise InputError(f"layers {unknown or list(layers)} are not in the run; valid: "
                             f"{', '.join(sorted(known))}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a directory for the figures")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".figures.tmp-", dir=out))
    try:
        stems = render_figures(datasets, tmp, formats, width=width, layers=layers,
                               total_params=None if isinstance(run, Mapping)
                               else network_params(run))
        paths = []
        for stem in stems:
            for fmt in formats:
                os.replace(tmp / f"{stem}.{fmt}", out / f"{stem}.{fmt}")
                paths.append(out / f"{stem}.{fmt}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


__all__ = ["build_figures", "build_report", "findings"]
