"""Benchmark: corranalysis' sweep against the naive loop (truncate, evaluate all, restore).

Two models with random weights (eval mode): a ``resnet18``-shaped network and a
``cnn4``. The grid is the chosen layers × every natural cut × 5 keep specs,
single-layer trials. The naive path applies each trial with ``truncated`` and runs
the whole network over the test images; the fast path is ``corranalysis.sweep``
(batch-major prefix/suffix evaluation, one SVD per (layer, cut), identical or
no-op truncations evaluated once). Prints both times, the ratio and the largest
accuracy difference per model; the last line is JSON for the resnet18 run:
``{"naive_s", "fast_s", "ratio", "max_acc_diff", ...}``.

    python benchmarks/bench_sweep.py            # defaults sized for ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from corranalysis.models import create
from corranalysis.runtime import evaluate
from corranalysis.sweep import build_trials, sweep
from corranalysis.truncation import truncated

KEEPS = "frac=0.75,frac=0.5,frac=0.25,frac=0.1,loss=0.05"
RESNET_LAYERS = "conv1,layer1.1.conv1,layer2.0.downsample.0,layer3.0.conv2,layer4.1.conv1,fc"


def data(n: int, shape: tuple[int, ...], batch: int, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def run(name: str, shape: tuple[int, int, int], n: int, layers: str | None, batch: int,
        keeps: str) -> dict:
    torch.manual_seed(0)
    model = create(name, shape[0], 10, image_size=shape[1]).eval()
    loader = data(n, shape, batch)
    trials = build_trials(model, layers=layers, keeps=keeps)
    n_layers = len({t.layer for t in trials})
    print(f"{name} {shape} on {n} images, batch {batch}: {n_layers} layers, "
          f"{len(trials)} trials, keeps {keeps}", flush=True)

    t0 = time.perf_counter()
    naive = []
    for t in trials:
        with truncated(model, t.plan):
            naive.append(evaluate(model, loader).accuracy)
    naive_s = time.perf_counter() - t0
    print(f"  naive: {naive_s:8.1f} s", flush=True)

    t0 = time.perf_counter()
    ds = sweep(model, loader, layers=layers, keeps=keeps, device="cpu")
    fast_s = time.perf_counter() - t0
    diff = max(abs(a - b) for a, b in zip(naive, ds.accuracy.values.tolist(), strict=True))
    ratio = naive_s / fast_s
    print(f"  fast:  {fast_s:8.1f} s   ratio {ratio:.2f}   max |Δ accuracy| {diff}", flush=True)
    return {"model": name, "input": list(shape), "test_images": n, "layers": n_layers,
            "trials": len(trials), "naive_s": round(naive_s, 2), "fast_s": round(fast_s, 2),
            "ratio": round(ratio, 2), "max_acc_diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resnet-images", type=int, default=256)
    p.add_argument("--resnet-size", type=int, default=16, help="image side for resnet18")
    p.add_argument("--resnet-layers", default="all", help="'all' or globs, e.g. the quick "
                   f"subset {RESNET_LAYERS}")
    p.add_argument("--cnn4-images", type=int, default=1024)
    p.add_argument("--cnn4-layers", default="all")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--keeps", default=KEEPS)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    cnn = run("cnn4", (1, 28, 28), args.cnn4_images,
              None if args.cnn4_layers == "all" else args.cnn4_layers, args.batch, args.keeps)
    res = run("resnet18", (3, args.resnet_size, args.resnet_size), args.resnet_images,
              None if args.resnet_layers == "all" else args.resnet_layers, args.batch,
              args.keeps)
    print(json.dumps({"naive_s": res["naive_s"], "fast_s": res["fast_s"],
                      "ratio": res["ratio"], "max_acc_diff": res["max_acc_diff"],
                      "resnet18": res, "cnn4": cnn}))


if __name__ == "__main__":
    main()
