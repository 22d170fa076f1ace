"""What holds across training seeds: sentences and a table from ``seeds.nc``.

``seeds.nc`` is :func:`corranalysis.linkage.across_seeds` of the study's runs with
different training seeds (``corranalysis seeds runs/NAME runs/NAME_seed1 ...`` writes it
into ``runs/NAME/``). These functions only read it; the statistics live in
:mod:`corranalysis.linkage`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

#: Readable names of the spectral measures (the linkage's ``measure`` labels).
MEASURE_NAMES = {"renyi2": "Rényi-2 entropy", "entropy": "von Neumann entropy",
                 "normalized_entropy": "normalised entropy S/ln χ_max",
                 "effective_rank_ratio": "effective rank / χ_max",
                 "spectral_norm_loss_at_frac": "spectral norm loss at the fixed frac",
                 "log_chi_max": "matrix shape alone (ln χ_max)"}
TARGET = "tolerated_norm_loss"


def _seeds(ds: xr.Dataset) -> list[int]:
    return [int(s) for s in ds["seed"].values]


def measure_name(measure: str) -> str:
    """A spectral measure's readable name (its label with spaces where none is set)."""
    return MEASURE_NAMES.get(measure, measure.replace("_", " "))


def _names(measures: list[str]) -> str:
    return ", ".join(measure_name(m) for m in measures) or "none"


def _starred(rho: np.ndarray, p: np.ndarray) -> str:
    """ρ per seed, each with * where p < 0.05."""
    return " ".join(f"{r:+.2f}" + ("*" if q < 0.05 else "") for r, q in zip(rho, p, strict=True))


def seed_rows(ds: xr.Dataset, target: str = TARGET) -> list[dict[str, Any]]:
    """One row per spectral measure: its Spearman ρ with ``target`` in every seed, its
    partial ρ given ln χ_max, and whether each holds (same sign, p < 0.05, every seed)."""
    rows = []
    for m in (str(v) for v in ds["measure"].values):
        key = {"measure": m, "target": target}
        rho, p = ds["spearman_rho"].sel(key).values, ds["spearman_p"].sel(key).values
        prho, pp = ds["partial_rho"].sel(key).values, ds["partial_p"].sel(key).values
        shape = m == "log_chi_max"  # its partial correlation given itself is undefined
        rows.append({
            "measure": measure_name(m),
            "rho": _starred(rho, p),
            "holds": "yes" if bool(ds["holds"].sel(key)) else "no",
            "partial": "–" if shape else _starred(prho, pp),
            "partial_holds": "–" if shape else (
                "yes" if bool(ds["partial_holds"].sel(key)) else "no"),
        })
    return rows


def seed_findings(ds: xr.Dataset, target: str = TARGET) -> list[str]:
    """Plain sentences: which correlations with ``target`` hold in every seed (raw and
    beyond matrix shape), whether the least tolerant layer is the same in every seed, and
    which predictor of the accuracy drop wins in how many seeds."""
    seeds = _seeds(ds)
    out = []
    base = ds["baseline_accuracy"].values if "baseline_accuracy" in ds else []
    where = (f" (untruncated accuracy {100 * np.nanmin(base):.2f}–{100 * np.nanmax(base):.2f} % "
             "on the evaluation subsets)") if len(base) else ""
    measures = [str(m) for m in ds["measure"].values]
    holds = [m for m in measures if bool(ds["holds"].sel(measure=m, target=target))]
    partial = [m for m in measures if m != "log_chi_max"
               and bool(ds["partial_holds"].sel(measure=m, target=target))]
    out.append(f"Over {len(seeds)} training seeds ({', '.join(map(str, seeds))}){where}, the "
               f"rank correlation with the {target.replace('_', ' ')} has the same sign and "
               f"p < 0.05 in every seed for: {_names(holds)}; beyond matrix shape (partial ρ "
               f"given ln χ_max) for: {_names(partial)}.")
    if "layer_tolerated_norm_loss" in ds:
        per = ds["layer_tolerated_norm_loss"].transpose("seed", "layer")
        ok = np.isfinite(per.values).any(axis=1)
        if ok.any():
            least = [str(per["layer"].values[int(np.nanargmin(row))])
                     for row in per.values[ok]]
            spread = per.max("seed") - per.min("seed")
            widest = str(spread["layer"].values[int(np.nanargmax(spread.values))])
            if len(set(least)) == 1:
                text = (f"The least tolerant layer (median over its cuts) is {least[0]} in "
                        "every seed")
            else:
                text = ("The least tolerant layer (median over its cuts) changes with the seed: "
                        + ", ".join(f"{n} (seed {s})" for n, s in
                                    zip(least, np.array(seeds)[ok], strict=True)))
            out.append(f"{text}; the median tolerated norm loss of a layer varies by up to "
                       f"{float(spread.max()):.2f} between seeds ({widest}).")
    if "drop_rho" in ds and "all" in ds["group"].values:
        oe = ds["drop_rho"].sel(predictor="output_error", group="all").values
        nl = ds["drop_rho"].sel(predictor="norm_loss", group="all").values
        ok = np.isfinite(oe) & np.isfinite(nl)
        if ok.any():
            wins = int((np.abs(oe[ok]) > np.abs(nl[ok])).sum())
            out.append(f"Output error predicts the accuracy drop better than norm loss in "
                       f"{wins} of {int(ok.sum())} seeds (Spearman ρ "
                       f"{' '.join(f'{v:+.2f}' for v in oe[ok])} against "
                       f"{' '.join(f'{v:+.2f}' for v in nl[ok])}).")
    return out
