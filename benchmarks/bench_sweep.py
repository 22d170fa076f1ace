"""Benchmark: corranalysis' sweep against the naive loop (truncate, evaluate all, restore).

A trained ResNet-20 on real Fashion-MNIST (``--checkpoint``, else trained here for
``--train-epochs`` on ``--train-size`` images with the runtime's defaults), evaluated
on ``--images`` test images (fixed seed) in batches of ``--batch``. The grid is every
layer × every natural cut × the keep specs, single-layer trials (issue 12's grid).

* **naive**: each trial applied with ``truncated`` and the whole network run over the
  test images;
* **fast**: ``corranalysis.sweep`` (batch-major prefix/suffix evaluation, one SVD per
  (layer, cut), identical or no-op truncations evaluated once) — bit-identical;
* **fast + stop**: the same with ``stop_drop`` (a trial stops once its drop exceeds
  that many points beyond 3 standard errors) — trials that are never stopped are
  bit-identical; stopped ones are measured on a prefix of the images (paired estimate:
  the baseline's accuracy on all images minus the drop on the images seen);
* **fast + stop both ways**: ``stop_within=True`` as well — a trial also stops once it
  is certain to stay within ``stop_drop`` points of the baseline either way.

The paths run over ``--groups`` consecutive groups of layers, the four in a rotating order
for each group, so that on a shared machine each meets the same load (the fast paths then
pay one baseline pass per group, which one sweep over all layers would share).
Prints the times, the ratios, the largest accuracy difference of unstopped trials
(must be 0), and for stopped trials the largest difference and how many of them the
naive loop puts on the other side of ``stop_drop`` (false stops: stopped as a drop
but within it, or stopped as within but beyond it). The last line is JSON:
``{"naive_s", "fast_s", "ratio", "stop_s", "stop_ratio", "within_s", "within_ratio", ...}``.

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
    # Group by group of layers, the four paths one after the other in a rotating order: on
    # a shared machine each path meets the same load (each fast path then pays one baseline
    # pass per group, which a sweep over all layers at once would share).
    seconds = dict.fromkeys(paths, 0.0)
    parts: dict[str, list[xr.Dataset]] = {name: [] for name in paths}
    names = list(paths)
    for i, group in enumerate(groups):
        for name in names[i % 4:] + names[:i % 4]:
            t0 = time.perf_counter()
            parts[name].append(paths[name](group))
            seconds[name] += time.perf_counter() - t0
        print(f"  {i + 1}/{len(groups)} {group[0]}..{group[-1]}: " + ", ".join(
            f"{n} {seconds[n]:.0f} s" for n in names), flush=True)
    res = {name: xr.concat(parts[name], dim="trial", data_vars="all") for name in names}
    naive = res["naive"].accuracy.values
    naive_s, fast_s, stop_s, both_s = (seconds[n] for n in names)
    base = evaluate(model, data, "cpu").accuracy
    print(f"  naive:       {naive_s:8.1f} s  (baseline {base:.4f})", flush=True)

    fast = res["fast"]
    diff = float(np.abs(fast.accuracy.values - naive).max())
    print(f"  fast:        {fast_s:8.1f} s  ratio {naive_s / fast_s:.2f}  "
          f"max |Δ accuracy| {diff}", flush=True)

    stop = res["stop"]
    stopped = stop.stopped.values.astype(bool)
    d = np.abs(stop.accuracy.values - naive)
    free_diff = float(d[~stopped].max())
    stop_diff = float(d[stopped].max()) if stopped.any() else 0.0
    false_stops = int((100 * (base - naive[stopped]) <= args.stop_drop).sum())
    seen = stop.n_images.values[stopped].mean() if stopped.any() else 0
    print(f"  fast + stop: {stop_s:8.1f} s  ratio {naive_s / stop_s:.2f}  "
          f"{int(stopped.sum())} stopped (mean {seen:.0f} images); "
          f"max |Δ| unstopped {free_diff}, stopped {stop_diff:.4f}; false stops {false_stops}",
          flush=True)

    both = res["within"]
    b_stopped = both.stopped.values.astype(bool)
    b_drop = 100 * (base - both.accuracy.values)
    as_within = b_stopped & (np.abs(b_drop) < args.stop_drop)
    naive_drop = 100 * (base - naive)
    bd = 100 * np.abs(both.accuracy.values - naive)
    b_free = float(bd[~b_stopped].max()) / 100 if (~b_stopped).any() else 0.0
    within_diff = float(bd[as_within].max()) / 100 if as_within.any() else 0.0
    beyond_diff = float(bd[b_stopped & ~as_within].max()) / 100 if (
        b_stopped & ~as_within).any() else 0.0
    false_within = int((np.abs(naive_drop[as_within]) > args.stop_drop).sum())
    false_beyond = int((naive_drop[b_stopped & ~as_within] <= args.stop_drop).sum())
    print(f"  fast + stop both ways: {both_s:8.1f} s  ratio {naive_s / both_s:.2f}  "
          f"{int(as_within.sum())} stopped within, {int((b_stopped & ~as_within).sum())} "
          f"beyond (mean {both.n_images.values[b_stopped].mean():.0f} images); max |Δ| "
          f"unstopped {b_free}, within {within_diff:.4f}, beyond {beyond_diff:.4f}; "
          f"false stops {false_within} within, {false_beyond} beyond", flush=True)
    print(json.dumps({
        "model": "resnet20", "dataset": "fashion-mnist", "test_images": args.images,
        "batch": args.batch, "layers": n_layers, "trials": len(trials), "keeps": args.keeps,
        "baseline_accuracy": base, "naive_s": round(naive_s, 1), "fast_s": round(fast_s, 1),
        "ratio": round(naive_s / fast_s, 2), "max_acc_diff": diff,
        "stop_drop": args.stop_drop, "stop_s": round(stop_s, 1),
        "stop_ratio": round(naive_s / stop_s, 2), "stopped": int(stopped.sum()),
        "max_acc_diff_unstopped": free_diff, "max_acc_diff_stopped": stop_diff,
        "false_stops": false_stops, "within_s": round(both_s, 1),
        "within_ratio": round(naive_s / both_s, 2), "stopped_within": int(as_within.sum()),
        "stopped_beyond": int((b_stopped & ~as_within).sum()),
        "max_acc_diff_within_unstopped": b_free, "max_acc_diff_stopped_within": within_diff,
        "max_acc_diff_stopped_beyond": beyond_diff, "false_within": false_within,
        "false_beyond": false_beyond}))


if __name__ == "__main__":
    main()
