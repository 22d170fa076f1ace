"""Benchmark: corranalysis' sweep against the naive loop (truncate, evaluate all, restore).

A trained ResNet-20 on real Fashion-MNIST (``--checkpoint``, else trained here for
``--train-epochs`` on ``--train-size`` images with the runtime's defaults), evaluated
on ``--images`` test images (fixed seed) in batches of ``--batch``. The grid is every
layer × every natural cut × the keep specs, single-layer trials (issue 12's grid).

* **naive**: each trial applied with ``truncated`` and the whole network run over the
  test images;
* **fast**: ``corranalysis.sweep`` (batch-major prefix/suffix evaluation, one SVD per
  (layer, cut), identical or no-op truncations evaluated once) — bit-identical;
* **stop**: the same with ``stop_drop`` (a trial stops once its drop exceeds that many
  points beyond 3 standard errors) — trials never stopped are bit-identical; a stopped
  one's accuracy is the paired estimate from the images it saw (the baseline's accuracy
  on all images minus the drop on those);
* **within**: ``stop_within=True`` as well — a trial also stops once it is certain to
  stay within ``stop_drop`` points of the baseline either way.

``--paths`` picks the paths besides naive (default all three). They run over
``--groups`` consecutive groups of layers, in a rotating order for each group, so that on
a shared machine each meets the same load (the fast paths then pay one baseline pass per
group, which one sweep over all layers would share). Prints each path's time, its ratio
to naive, the largest accuracy difference (points) to naive for unstopped trials (must
be 0), trials stopped within and beyond ``stop_drop``, and false stops (stopped within
but beyond on all images, or the reverse). The last line is JSON: ``naive_s``, and per
path ``<path>_s``, ``<path>_ratio``, ``<path>_max_diff_points``, ``<path>_false_*``.

    python benchmarks/bench_sweep.py --checkpoint runs/fashion_resnet20/model.pt
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from corranalysis.runtime import evaluate, load_trained, train
from corranalysis.sweep import build_trials, sweep
from corranalysis.truncation import truncated

KEEPS = "frac=0.8,frac=0.6,frac=0.4,frac=0.2,frac=0.1,loss=0.01,loss=0.05,loss=0.2"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a trained resnet20 (run directory's "
                   "model.pt); default: train one here")
    p.add_argument("--train-epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--layers", default=None, help="globs (default: every layer)")
    p.add_argument("--keeps", default=KEEPS)
    p.add_argument("--stop-drop", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--paths", default="fast,stop,within", help="paths besides naive: "
                   "fast, stop (stop_drop), within (stop_drop and stop_within)")
    p.add_argument("--groups", type=int, default=6, help="layer groups the paths alternate "
                   "over (1: each path over the whole grid at once)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        run = Path(tempfile.mkdtemp()) / "resnet20"
        t0 = time.perf_counter()
        train("resnet20", "fashion-mnist", epochs=args.train_epochs, out=run,
              train_size=args.train_size, progress=False, device="cpu")
        checkpoint = str(run / "model.pt")
        print(f"trained resnet20 in {time.perf_counter() - t0:.0f} s", flush=True)
    trained = load_trained(checkpoint, "resnet20", "fashion-mnist", test_size=args.images,
                           eval_batch_size=args.batch, device="cpu")
    model, data = trained.model.eval(), trained.test
    trials = build_trials(model, layers=args.layers, keeps=args.keeps)
    n_layers = len({t.layer for t in trials})
    print(f"resnet20 on {args.images} Fashion-MNIST test images, batch {args.batch}: "
          f"{n_layers} layers, {len(trials)} trials, keeps {args.keeps}", flush=True)

    layers = list(dict.fromkeys(t.layer for t in trials))
    groups = [list(g) for g in np.array_split(layers, min(args.groups, len(layers)))]

    def naive_path(group: list[str]) -> xr.Dataset:
        acc = []
        for t in trials:
            if t.layer in group:
                with truncated(model, t.plan):
                    acc.append(evaluate(model, data, "cpu").accuracy)
        return xr.Dataset({"accuracy": ("trial", acc)})

    paths = {
        "naive": naive_path,
        "fast": lambda group: sweep(model, data, layers=group, keeps=args.keeps, device="cpu"),
        "stop": lambda group: sweep(model, data, layers=group, keeps=args.keeps, device="cpu",
                                    stop_drop=args.stop_drop),
        "within": lambda group: sweep(model, data, layers=group, keeps=args.keeps,
                                      device="cpu", stop_drop=args.stop_drop,
                                      stop_within=True),
    }
    # Group by group of layers, the paths one after the other in a rotating order: on a
    # shared machine each path meets the same load (each fast path then pays one baseline
    # pass per group, which a sweep over all layers at once would share).
    names = ["naive"] + [n for n in paths if n != "naive" and n in args.paths.split(",")]
    seconds = dict.fromkeys(names, 0.0)
    parts: dict[str, list[xr.Dataset]] = {name: [] for name in names}
    k = len(names)
    for i, group in enumerate(groups):
        for name in names[i % k:] + names[:i % k]:
            t0 = time.perf_counter()
            parts[name].append(paths[name](group))
            seconds[name] += time.perf_counter() - t0
        print(f"  {i + 1}/{len(groups)} {group[0]}..{group[-1]}: " + ", ".join(
            f"{n} {seconds[n]:.0f} s" for n in names), flush=True)
    res = {name: xr.concat(parts[name], dim="trial", data_vars="all") for name in names}
    naive, naive_s = res["naive"].accuracy.values, seconds["naive"]
    base = evaluate(model, data, "cpu").accuracy
    naive_drop = 100 * (base - naive)
    print(f"  naive:       {naive_s:8.1f} s  (baseline {base:.4f})", flush=True)
    summary = {
        "model": "resnet20", "dataset": "fashion-mnist", "test_images": args.images,
        "batch": args.batch, "layers": n_layers, "groups": len(groups),
        "trials": len(trials), "keeps": args.keeps, "baseline_accuracy": base,
        "stop_drop": args.stop_drop, "naive_s": round(naive_s, 1)}
    for name in names[1:]:
        ds, sec = res[name], seconds[name]
        diff = 100 * np.abs(ds.accuracy.values - naive)
        stopped = ds.stopped.values.astype(bool)
        within = stopped & (100 * np.abs(base - ds.accuracy.values) < args.stop_drop)
        beyond = stopped & ~within
        worst = {kind: round(float(diff[m].max()), 4) if m.any() else 0.0
                 for kind, m in (("unstopped", ~stopped), ("within", within),
                                 ("beyond", beyond))}
        false_within = int((np.abs(naive_drop[within]) > args.stop_drop).sum())
        false_beyond = int((naive_drop[beyond] <= args.stop_drop).sum())
        seen = ds.n_images.values[stopped].mean() if stopped.any() else 0
        print(f"  {name + ':':12} {sec:8.1f} s  ratio {naive_s / sec:.2f}  stopped "
              f"{int(within.sum())} within, {int(beyond.sum())} beyond (mean {seen:.0f} "
              f"images); max |Δ accuracy| (points) {worst}; false stops {false_within} "
              f"within, {false_beyond} beyond", flush=True)
        summary.update({f"{name}_s": round(sec, 1), f"{name}_ratio": round(naive_s / sec, 2),
                        f"{name}_stopped_within": int(within.sum()),
                        f"{name}_stopped_beyond": int(beyond.sum()),
                        f"{name}_max_diff_points": worst,
                        f"{name}_false_within": false_within,
                        f"{name}_false_beyond": false_beyond})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
