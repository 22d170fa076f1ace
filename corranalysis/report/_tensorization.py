"""The tensorization comparison in figures, tables and words: ``compare.nc`` in.

One figure (:func:`comparison_figure`): accuracy against the compression of the targeted
layers for every method (after encoding, hollow; after fine-tuning, filled), the dense
baseline with its 1-point band and the Pareto front over all methods; beside it the time of a
training step and of an inference batch relative to the dense model, measured in the same run.
The table (:func:`comparison_rows`), the plain statements (:func:`comparison_sentences`: the
best method per budget, where ADTN lands, the step-time ratios, all read from the data), and
the points the study report's compression figures add (:func:`comparison_points`).

:func:`read_comparisons` finds and reads ``compare.nc`` files (the CLI's edge);
:func:`build_tensorization_report` writes the standalone report of a folder of comparisons
(``corranalysis report runs/tensorize``): one figure and table per model.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from ..errors import InputError
from ..io import read_netcdf
from ._output import env, report_folder
from .figures import (
    METHOD_NAMES,
    comparison_figure,
    final_accuracy,
    pareto_front,
    save_figure,
)


def comparison_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per variant for the report's table (accuracies in %, times relative)."""
    rows = []
    end = final_accuracy(ds)
    for i, name in enumerate(ds.variant.values):
        v = ds.isel(variant=i)
        reach = bool(v["reachable"])
        rows.append({
            "variant": str(name), "method": METHOD_NAMES.get(str(v["method"].values),
                                                             str(v["method"].values)),
            "params": int(v["params_after"]) if reach else None,
            "compression": float(v["compression"]) if reach else None,
            "epoch0": 100 * float(v["accuracy"].isel(epoch=0)) if reach else None,
            "final": 100 * float(end[i]) if reach else None,
            "step_ratio": float(v["step_seconds"] / v["dense_step_seconds"]) if reach else None,
            "inference_ratio": float(v["inference_seconds"] / v["dense_inference_seconds"])
            if reach else None,
            "fell": bool(v["fell_below_start"] > 0) if reach else False,
            "note": "" if reach else str(v["note"].values),
        })
    return rows


# --------------------------------------------------------------------------- reading

#: What a comparison dataset must hold (written by :func:`corranalysis.tensorize.compare`).
NEEDED = ("accuracy", "method", "params_before", "params_after", "compression", "reachable",
          "step_seconds", "dense_step_seconds", "inference_seconds", "dense_inference_seconds",
          "fell_below_start")


def check_comparison(ds: xr.Dataset, where: str = "the comparison") -> xr.Dataset:
    """``ds`` when it is a ``compare.nc`` dataset; InputError naming ``where`` otherwise."""
    lacking = [v for v in NEEDED if v not in ds.variables]
    if lacking or "variant" not in ds.dims or "epoch" not in ds.dims:
        raise InputError(f"{where} is not a tensorization comparison (lacks "
                         f"{', '.join(lacking) or 'the variant and epoch dimensions'}); write "
                         "it with `corranalysis compare CHECKPOINT --layers ... --out DIR`")
    return ds


def comparison_files(folder: str | os.PathLike) -> list[Path]:
    """The ``compare.nc`` files of ``folder``: its own, then ``*/compare.nc`` of its
    sub-folders (``compare_fc2/compare.nc``, …) by name."""
    folder = Path(folder)
    own = [folder / "compare.nc"] if (folder / "compare.nc").is_file() else []
    return own + sorted(p for p in folder.glob("*/compare.nc") if p.is_file())


def _name_of(path: Path, ds: xr.Dataset) -> str:
    name = path.parent.name.removeprefix("compare_").removeprefix("compare-")
    if not name or name == "compare":
        name = str(ds.attrs.get("model") or path.parent.name or "comparison")
    return name


def read_comparisons(*paths: str | os.PathLike) -> dict[str, xr.Dataset]:
    """Read comparisons by name (the folder's name less ``compare_``, else the model):
    each path a ``compare.nc`` file or a folder holding ``compare.nc`` or
    ``compare_*/compare.nc``. InputError for a path that holds none, or a file that is not
    a comparison."""
    out: dict[str, xr.Dataset] = {}
    for raw in paths:
        path = Path(raw)
        files = [path] if path.is_file() else comparison_files(path) if path.is_dir() else []
        if not files:
            raise InputError(f"--compare {str(path)!r}: no compare.nc there; give a compare.nc "
                             "file or a folder holding compare.nc or compare_*/compare.nc "
                             "(written by `corranalysis compare`)")
        for file in files:
            ds = check_comparison(read_netcdf(file), repr(str(file)))
            name, i = _name_of(file, ds), 2
            while name in out:
                name, i = f"{_name_of(file, ds)}-{i}", i + 1
            out[name] = ds
    return out


# --------------------------------------------------------------------------- in words


def _short(method: str) -> str:
    return {"svd": "truncation (svd)"}.get(method, METHOD_NAMES.get(method, method))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if math.isfinite(x) else "n/a"


def _x(c: float) -> str:
    return f"{c:.3g}×" if c < 1000 else f"{c:,.0f}×"


def _attr(ds: xr.Dataset, key: str, default: Any = None) -> Any:
    value = ds.attrs.get(key, default)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _reachable(ds: xr.Dataset) -> np.ndarray:
    return np.asarray(ds["reachable"].values).astype(bool) & np.isfinite(final_accuracy(ds))


def best_per_budget(ds: xr.Dataset) -> list[dict[str, Any]]:
    """Per asked compression (``target``; ADTN has its own sizes, none): the variant with the
    highest accuracy after fine-tuning, with the number of methods that reached that budget
    and the runner-up. Keys: ``target``, ``variant``, ``method``, ``compression``,
    ``params``, ``final``, ``start`` (epoch 0), ``drop`` (points below dense), ``methods``
    (how many reached it), ``runner_up`` ((method, final) or None), ``unreachable`` (methods
    that could not reach it), ``not_run`` (methods whose run is still to do)."""
    end = final_accuracy(ds)
    ok = _reachable(ds)
    base = float(ds.attrs.get("baseline_accuracy", np.nan))
    target = np.asarray(ds["target"].values, float) if "target" in ds.coords or \
        "target" in ds else np.full(ds.sizes["variant"], np.nan)
    method = np.asarray(ds["method"].values).astype(str)
    rows = []
    for t in np.unique(target[np.isfinite(target)]):
        at = np.flatnonzero(target == t)
        done = at[ok[at]]
        notes = np.asarray(ds["note"].values).astype(str) if "note" in ds else \
            np.full(ds.sizes["variant"], "")
        pending = {method[i] for i in at if not ok[i] and notes[i].startswith("not run")}
        row: dict[str, Any] = {"target": float(t), "unreachable": sorted(
            {method[i] for i in at if not ok[i]} - pending), "not_run": sorted(pending),
            "methods": len(done)}
        if done.size:
            order = done[np.argsort(-end[done], kind="stable")]
            i = int(order[0])
            row.update(variant=str(ds["variant"].values[i]), method=method[i],
                       compression=float(ds["compression"].values[i]),
                       params=int(ds["params_after"].values[i]), final=float(end[i]),
                       start=float(ds["accuracy"].values[i, 0]),
                       drop=100 * (base - float(end[i])),
                       runner_up=(method[order[1]], float(end[order[1]]))
                       if order.size > 1 else None)
        rows.append(row)
    return rows


def adtn_landing(ds: xr.Dataset) -> list[dict[str, Any]]:
    """Each reachable ADTN variant: its compression, parameters, accuracy at epoch 0 and
    after fine-tuning, drop below dense (points), whether it is on the Pareto front over
    all methods, and the other method's best variant nearest below and above its
    compression (``below``/``above``: (method, compression, final) or None)."""
    end = final_accuracy(ds)
    ok = _reachable(ds)
    comp = np.asarray(ds["compression"].values, float)
    method = np.asarray(ds["method"].values).astype(str)
    base = float(ds.attrs.get("baseline_accuracy", np.nan))
    front = set(pareto_front(np.where(ok, comp, np.nan), np.where(ok, -end, np.nan)).tolist())
    others = np.flatnonzero(ok & (method != "adtn"))
    rows = []
    for i in np.flatnonzero(ok & (method == "adtn")):
        below = others[comp[others] <= comp[i]]
        above = others[comp[others] > comp[i]]

        def best(idx: np.ndarray, nearest: bool) -> tuple[str, float, float] | None:
            if not idx.size:
                return None
            c = comp[idx].max() if nearest else comp[idx].min()
            same = idx[comp[idx] == c]
            j = int(same[np.argmax(end[same])])
            return (method[j], float(comp[j]), float(end[j]))

        rows.append({"variant": str(ds["variant"].values[i]), "compression": float(comp[i]),
                     "params": int(ds["params_after"].values[i]),
                     "params_before": int(ds["params_before"].values[i]),
                     "start": float(ds["accuracy"].values[i, 0]), "final": float(end[i]),
                     "drop": 100 * (base - float(end[i])), "on_front": int(i) in front,
                     "below": best(below, True), "above": best(above, False),
                     "fell": bool(ds["fell_below_start"].values[i] > 0)})
    return rows


def time_ratios(ds: xr.Dataset) -> dict[str, dict[str, tuple[float, float]]]:
    """Per method: (median, smallest, largest) ratio of its training-step and inference-batch
    times to the dense model's over its reachable variants (``step``, ``inference``), and
    the number of variants ``n``."""
    ok = _reachable(ds)
    method = np.asarray(ds["method"].values).astype(str)
    step = np.asarray(ds["step_seconds"].values, float) / np.asarray(
        ds["dense_step_seconds"].values, float)
    inf = np.asarray(ds["inference_seconds"].values, float) / np.asarray(
        ds["dense_inference_seconds"].values, float)
    out = {}
    for m in dict.fromkeys(method[ok]):
        sel = ok & (method == m) & np.isfinite(step)
        if sel.any():
            out[m] = {"step": (float(np.median(step[sel])), float(step[sel].min()),
                               float(step[sel].max())),
                      "inference": (float(np.nanmedian(inf[sel])), float(np.nanmin(inf[sel])),
                                    float(np.nanmax(inf[sel]))),
                      "n": int(sel.sum())}
    return out


def _span(median: float, lo: float, hi: float) -> str:
    """``1.2×``, or the median with the range over several variants: ``0.5× (0.04–2.6×)``."""
    if abs(hi - lo) < 0.05 * max(lo, 1e-9):
        return f"{median:.2g}×"
    return f"{median:.2g}× ({lo:.2g}–{hi:.2g}×)"


def _pts(x: float) -> str:
    """Signed points with a real minus sign: ``−0.5 pt``, ``+0.2 pt``."""
    return f"{x:+.1f} pt".replace("-", "−") if math.isfinite(x) else "n/a"


def sentence_parts(name: str, ds: xr.Dataset) -> dict[str, Any]:
    """The statements of one comparison by kind, every number read from ``ds``: ``setup``
    (what was compared), ``best`` (the best method per budget), ``adtn`` (where each ADTN
    variant lands), ``times`` (step and inference time against dense), ``fell`` and
    ``missing`` (variants that ended below their start, or could not be built); None or
    [] where there is nothing to say."""
    base = float(ds.attrs.get("baseline_accuracy", np.nan))
    epochs = _attr(ds, "epochs", ds.sizes["epoch"] - 1)
    methods = [_short(m) for m in dict.fromkeys(np.asarray(ds["method"].values).astype(str))]
    out: dict[str, Any] = {
        "setup": f"{_attr(ds, 'model', name)}, layers {_attr(ds, 'layers', '')}: the dense "
                 f"model scores {_pct(base)}; {', '.join(methods)} each encode the layers and "
                 f"are fine-tuned {epochs} epoch(s) with the same loop, optimiser and data.",
        "best": None, "adtn": [], "times": None, "fell": None, "missing": None}
    rows = best_per_budget(ds)
    done = [r for r in rows if "method" in r]
    only = {r["method"] for r in done}
    alone = bool(done) and len(only) == 1 and all(r["methods"] == 1 for r in done)
    parts = []
    for row in rows:
        at = f"{row['target']:g}×"
        if "method" not in row:
            parts.append(f"{at}: " + ("not run yet" if row["not_run"]
                                      else "no method reaches it"))
            continue
        who = "" if alone else f"{_short(row['method'])} "
        nxt = (f"; next {_short(row['runner_up'][0])} {_pct(row['runner_up'][1])}"
               if row["runner_up"] else "")
        parts.append(f"{at}: {who}{_pct(row['final'])} ({_pts(-row['drop'])}{nxt})")
    if parts and alone:
        out["best"] = (f"Only {_short(only.pop())} was run at the asked budgets (ADTN has "
                       "its own sizes); after fine-tuning — " + "; ".join(parts) + ".")
    elif parts:
        out["best"] = "Best after fine-tuning, per budget — " + "; ".join(parts) + "."
    for row in adtn_landing(ds):
        text = (f"ADTN lands at {_x(row['compression'])} ({row['params']:,} of "
                f"{row['params_before']:,} parameters): {_pct(row['start'])} right after "
                f"encoding, {_pct(row['final'])} after fine-tuning ({_pts(-row['drop'])})")
        near = [f"{_short(o[0])} at {_x(o[1])} reaches {_pct(o[2])}"
                for o in (row["below"], row["above"]) if o is not None]
        if near:
            text += "; nearest other: " + ", ".join(near)
        text += ("; it is on the Pareto front" if row["on_front"]
                 else "; another method beats it on both compression and accuracy")
        out["adtn"].append(text + ".")
    ratios = time_ratios(ds)
    if ratios:
        out["times"] = (
            "Time relative to the dense model (same run; median and range over a method's "
            "variants) — training step: "
            + ", ".join(f"{_short(m)} {_span(*r['step'])}" for m, r in ratios.items())
            + "; inference batch: "
            + ", ".join(f"{_short(m)} {_span(*r['inference'])}" for m, r in ratios.items())
            + ".")
    fell = [str(v) for v, f, r in zip(ds["variant"].values, ds["fell_below_start"].values,
                                      ds["reachable"].values, strict=True) if r and f > 0]
    if fell:
        out["fell"] = f"Ended below their accuracy right after encoding: {', '.join(fell)}."
    notes = (np.asarray(ds["note"].values).astype(str) if "note" in ds
             else np.full(ds.sizes["variant"], ""))
    pending = [str(v) for v, r, n in zip(ds["variant"].values, ds["reachable"].values, notes,
                                         strict=True) if not r and n.startswith("not run")]
    missing = [str(v) for v, r, n in zip(ds["variant"].values, ds["reachable"].values, notes,
                                         strict=True) if not r and not n.startswith("not run")]
    parts = []
    if missing:
        parts.append("Not reachable (the method's smallest form is larger): "
                     + ", ".join(missing) + ".")
    if pending:
        parts.append("Not run yet (gathered with --finished-only): " + ", ".join(pending) + ".")
    if parts:
        out["missing"] = " ".join(parts)
    return out


def comparison_sentences(name: str, ds: xr.Dataset) -> list[str]:
    """:func:`sentence_parts` in reading order, as a list of sentences."""
    p = sentence_parts(name, ds)
    return [t for t in (p["setup"], p["best"], *p["adtn"], p["times"], p["fell"],
                        p["missing"]) if t]


# --------------------------------------------------------------------------- in the study


def comparison_points(comparisons: Mapping[str, xr.Dataset],
                      layers: Sequence[str] = ()) -> xr.Dataset | None:
    """The fine-tuned variants of ``comparisons`` as extra points of
    :func:`~corranalysis.report.figures.compression_figure` (dim ``point``; ``method``
    named "<method>, fine-tuned"; ``accuracy`` after the last epoch, ``params_after``,
    ``params_before``; ``layer`` where the comparison targets one of ``layers`` alone;
    ``baseline_accuracy``: each comparison's own, so drops are measured against the model
    the comparison fine-tuned). None when there is no reachable variant."""
    parts = []
    for ds in comparisons.values():
        ok = _reachable(ds)
        if not ok.any():
            continue
        method = np.asarray(ds["method"].values).astype(str)[ok]
        target = str(_attr(ds, "layers", ""))
        base = float(ds.attrs.get("baseline_accuracy", np.nan))
        end = final_accuracy(ds)[ok]
        # each comparison's points against its own baseline: shift into the first's frame
        parts.append(xr.Dataset(
            {"accuracy": ("point", end), "baseline": ("point", np.full(end.shape, base)),
             "params_after": ("point", np.asarray(ds["params_after"].values, float)[ok]),
             "params_before": ("point", np.asarray(ds["params_before"].values, float)[ok]),
             "layer": ("point", np.full(end.shape, target if target in layers else ""))},
            coords={"method": ("point", [f"{METHOD_NAMES.get(m, m)}, fine-tuned"
                                         for m in method])}))
    if not parts:
        return None
    out = xr.concat(parts, dim="point")
    base = float(out["baseline"].values[0])
    # one baseline attribute: every point's drop below its own model, kept exactly
    out["accuracy"] = out["accuracy"] + (base - out["baseline"])
    out.attrs["baseline_accuracy"] = base
    return out.drop_vars("baseline")


def check_same_model(comparisons: Mapping[str, xr.Dataset], model: str | None) -> None:
    """InputError when a comparison was made on another model than the run's."""
    if not model:
        return
    other = {name: str(_attr(ds, "model", "")) for name, ds in comparisons.items()
             if _attr(ds, "model", "") and str(_attr(ds, "model", "")) != model}
    if other:
        listing = ", ".join(f"{n} ({m})" for n, m in other.items())
        raise InputError(f"comparison(s) {listing} were made on another model than this run's "
                         f"{model!r}; give --compare only comparisons of {model}, or report "
                         "them on their own (`corranalysis report FOLDER_OF_COMPARISONS`)")


def comparison_context(comparisons: Mapping[str, xr.Dataset]) -> list[dict[str, Any]]:
    """Per comparison: name, title, sentences, figure stem and table rows (template)."""
    out = []
    for name, ds in comparisons.items():
        out.append({"name": name, "id": f"comparison-{name}",
                    "title": f"{_attr(ds, 'model', name)} · {_attr(ds, 'layers', '')}",
                    "sentences": comparison_sentences(name, ds),
                    "headline": [*sentence_parts(name, ds)["adtn"],
                                 *[t for t in [sentence_parts(name, ds)["times"]] if t]],
                    "stem": f"comparison_{name}",
                    "png": f"figures/comparison_{name}.png",
                    "pdf": f"figures/comparison_{name}.pdf", "rows": comparison_rows(ds),
                    "checkpoint": str(_attr(ds, "checkpoint", "")),
                    "baseline": _pct(float(ds.attrs.get("baseline_accuracy", np.nan)))})
    return out


COMPARISON_CAPTION = (
    "Left: test accuracy against the compression of the targeted layers (dense / "
    "compressed parameters, log), every method right after encoding (open, dotted) and after "
    "the same fine-tuning (filled); grey line: the dense model, band: 1 point below it; thick "
    "grey: the Pareto front over all methods; ×: ended below its start. Right: time of one "
    "training step (solid) and one inference batch (dotted) relative to the dense model, "
    "measured in the same run.")


def render_comparisons(comparisons: Mapping[str, xr.Dataset], out_dir: Path,
                       formats: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Write each comparison's figure as ``comparison_NAME.fmt``; return the stems."""
    stems = []
    for name, ds in comparisons.items():
        save_figure(comparison_figure(ds), out_dir / f"comparison_{name}", formats)
        stems.append(f"comparison_{name}")
    return stems


# --------------------------------------------------------------------------- standalone


def _provenance(comparisons: Mapping[str, xr.Dataset]) -> list[dict[str, Any]]:
    keys = ("checkpoint", "model", "dataset", "layers", "epochs", "optim", "batch_size",
            "train_size", "test_size", "seed", "device", "git_commit", "created")
    return [{"name": name, "rows": [(k, str(_attr(ds, k))) for k in keys if k in ds.attrs]}
            for name, ds in comparisons.items()]


def _versions(comparisons: Mapping[str, xr.Dataset]) -> dict[str, str]:
    out: dict[str, set[str]] = {}
    for ds in comparisons.values():
        for k, v in ds.attrs.items():
            if k.startswith("version_"):
                out.setdefault(k[len("version_"):], set()).add(str(v))
    return {k: ", ".join(sorted(v)) for k, v in sorted(out.items())}


def budget_table(comparisons: Mapping[str, xr.Dataset]) -> dict[str, Any]:
    """The first screen's table: one row per asked compression, one column per comparison,
    each cell the best method after fine-tuning with its accuracy and drop (or "—")."""
    best = {name: {row["target"]: row for row in best_per_budget(ds)}
            for name, ds in comparisons.items()}
    targets = sorted({t for rows in best.values() for t in rows})
    rows = []
    for t in targets:
        cells = []
        for name in comparisons:
            row = best[name].get(t)
            if row is None or "method" not in row:
                text = "—" if row is None else ("not run yet" if row["not_run"]
                                                else "not reached")
                cells.append({"text": text, "sub": ""})
            else:
                cells.append({"text": f"{_short(row['method'])} {_pct(row['final'])}",
                              "sub": _pts(-row["drop"])
                              + (", only method" if row["methods"] == 1 else "")})
        rows.append({"target": f"{t:g}×", "cells": cells})
    return {"columns": list(comparisons), "rows": rows}


def _markdown(ctx: Mapping[str, Any]) -> str:
    lines = [f"# {ctx['title']}", "", f"Generated {ctx['created']} by corranalysis "
             f"{ctx['version']} from `{ctx['source']}`.", ""]
    for c in ctx["comparisons"]:
        lines += [f"## {c['title']}", ""] + [f"- {s}" for s in c["sentences"]]
        lines += ["", f"![{c['title']}]({c['png']}) ([PDF]({c['pdf']}))", ""]
    lines += ["## Provenance", ""]
    for p in ctx["provenance"]:
        lines += [f"### {p['name']}", ""] + [f"- **{k}**: {v}" for k, v in p["rows"]] + [""]
    lines.append("- **package versions**: " + ", ".join(f"{k} {v}"
                                                         for k, v in ctx["versions"].items()))
    return "\n".join(lines) + "\n"


def build_tensorization_report(comparisons: Mapping[str, xr.Dataset],
                               out_dir: str | os.PathLike, *,
                               source: str | os.PathLike | None = None) -> Path:
    """The standalone report of tensorization comparisons into ``out_dir``; return it.

    ``comparisons``: by name, as :func:`read_comparisons` reads them (``compare.nc`` of
    :func:`corranalysis.tensorize.compare`). The first screen states, per comparison, the
    best method per budget, where ADTN lands and the step-time ratios (all read from the
    data); then one figure (PNG and PDF) and table per comparison, and the provenance of
    each. Built aside and renamed into place, like the study report.
    """
    if not comparisons:
        raise InputError("no comparisons to report; give a folder holding "
                         "compare_*/compare.nc (written by `corranalysis compare`)")
    for name, ds in comparisons.items():
        check_comparison(ds, f"comparison {name!r}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    with report_folder(out, Path(source) if source is not None else None) as tmp:
        render_comparisons(comparisons, tmp / "figures")
        ctx = {"title": "Tensorization at equal parameter budgets",
               "source": str(source or ""), "version": __version__,
               "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
               "comparisons": comparison_context(comparisons),
               "budgets": budget_table(comparisons), "caption": COMPARISON_CAPTION,
               "provenance": _provenance(comparisons), "versions": _versions(comparisons)}
        ctx["seconds"] = f"{time.perf_counter() - t0:.1f}"
        (tmp / "index.html").write_text(
            env().get_template("tensorization.html.j2").render(**ctx), encoding="utf-8")
        (tmp / "summary.md").write_text(_markdown(ctx), encoding="utf-8")
    return out
