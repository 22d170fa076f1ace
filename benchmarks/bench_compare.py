"""Step and inference time of every variant of a tensorization comparison against its dense
model, measured interleaved (dense, variant, dense, variant, ...) on real images.

The comparison run (``corranalysis compare``) records the same two times while it trains, but
on a shared machine a load that comes and goes between variants makes those ratios noisy.
Here each variant is timed beside the dense model in the same loop (``runtime.time_steps``
with both models), after the fact, from its saved ``tensorized.pt``: one training step on a
batch of ``--batch`` training images and one inference pass on ``--eval-batch`` test images,
median of ``--repeat`` runs. Prints a table, then one JSON object on the last line.

    python benchmarks/bench_compare.py runs/tensorize/compare_cnn4 [--batch 128] [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import xarray as xr

from corranalysis.runtime import load_trained, time_steps
from corranalysis.tensorize import load
from corranalysis.tensorize.run import FINE_TUNE


def _batch(loader, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        if sum(len(v) for v in ys) >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a compare output folder (compare.nc, variants/)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = xr.open_dataset(args.folder / "compare.nc").load()
    trained = load_trained(ds.attrs["checkpoint"], None, None if ds.attrs.get("dataset") is None
                           else ds.attrs["dataset"], test_size=args.eval_batch,
                           train_size=args.batch, device="cpu")
    x, y = _batch(trained.train, args.batch)
    x_eval, _ = _batch(trained.test, args.eval_batch)
    rows = []
    print(f"{'variant':<14} {'compression':>11} {'step ms':>9} {'dense':>9} {'ratio':>6} "
          f"{'infer ms':>9} {'dense':>9} {'ratio':>6}")
    for name, reach in zip(ds.variant.values, ds.reachable.values, strict=True):
        path = args.folder / "variants" / str(name) / "tensorized.pt"
        if not reach or not path.is_file():
            continue
        model, _ = load(path)
        dense, new = time_steps([trained.model, model.eval()], x, y, x_eval, optim=FINE_TUNE,
                                repeats=args.repeat)
        row = {"variant": str(name),
               "compression": float(ds.compression.sel(variant=name)),
               "step_ms": 1e3 * new.step_seconds, "dense_step_ms": 1e3 * dense.step_seconds,
               "inference_ms": 1e3 * new.inference_seconds,
               "dense_inference_ms": 1e3 * dense.inference_seconds}
        row["step_ratio"] = row["step_ms"] / row["dense_step_ms"]
        row["inference_ratio"] = row["inference_ms"] / row["dense_inference_ms"]
        rows.append(row)
        print(f"{row['variant']:<14} {row['compression']:>10.1f}× {row['step_ms']:>9.1f} "
              f"{row['dense_step_ms']:>9.1f} {row['step_ratio']:>6.2f} "
              f"{row['inference_ms']:>9.1f} {row['dense_inference_ms']:>9.1f} "
              f"{row['inference_ratio']:>6.2f}")
    print(json.dumps({"folder": str(args.folder), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "batch": args.batch,
                      "eval_batch": args.eval_batch, "repeat": args.repeat, "rows": rows}))


if __name__ == "__main__":
    main()
