"""Benchmark: the runtime's default training on real Fashion-MNIST, for every zoo model.

Each model of ``corranalysis.models`` is trained from scratch with the runtime's defaults
(``corranalysis.runtime.DEFAULT_OPTIM``, batch ``BATCH_SIZE``) for ``--epochs`` epochs on a
seeded subset of ``--train-size`` training images, and tested on ``--test-size`` test images.
Prints one row per model (epochs, images, test accuracy, first and last training loss of the
run, wall time) and, last, one JSON line with the same figures.

    python benchmarks/bench_training.py                          # 1 epoch, 6,000 images
    python benchmarks/bench_training.py --models cnn4 --epochs 10 --train-size 0   # full set
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from corranalysis.models import available
from corranalysis.runtime import BATCH_SIZE, DEFAULT_OPTIM, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(available()))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=6000, help="0: the full set")
    parser.add_argument("--test-size", type=int, default=2000, help="0: the full set")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    rows = []
    print(f"defaults: {DEFAULT_OPTIM.as_dict()}, batch {BATCH_SIZE}")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            run = train(name, "fashion-mnist", epochs=args.epochs, out=out,
                        train_size=args.train_size or None, test_size=args.test_size or None,
                        device="cpu", progress=False, num_threads=args.threads)
            wall = time.perf_counter() - t0
        losses = [h["train_loss"] for h in run["history"]]
        row = {"model": name, "epochs": args.epochs, "train_images": args.train_size or 60000,
               "test_images": args.test_size or 10000, "test_accuracy": run["test_accuracy"],
               "first_epoch_train_loss": losses[0], "last_epoch_train_loss": losses[-1],
               "wall_s": round(wall, 1)}
        rows.append(row)
        print(f"{name:<10} {args.epochs:>3} ep  {row['train_images']:>6} img  "
              f"acc {100 * row['test_accuracy']:6.2f} %  loss {losses[0]:.3f} → {losses[-1]:.3f}"
              f"  {wall:7.1f} s", flush=True)
    print(json.dumps({"defaults": DEFAULT_OPTIM.as_dict(), "batch_size": BATCH_SIZE,
                      "runs": rows}))


if __name__ == "__main__":
    main()
