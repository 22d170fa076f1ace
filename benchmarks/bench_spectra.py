"""Benchmark: every cut's spectrum for all 53 convolution kernels of a CIFAR ResNet-50.

Two ways in one run: the straightforward loop over cuts calling quimb's per-cut
singular values (``method="quimb"``), and corranalysis' batched fast path.
Random weights (He-normal) are fine for timing. Prints both times, the ratio and
the largest deviation; the last line is JSON.

    python benchmarks/bench_spectra.py [--repeat N] [--skip-binary] [--threads N]

Each path is timed ``--repeat`` times (default 3) and its best time is reported.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from corranalysis import compute_spectra, extract_kernels
from corranalysis.models import create


def max_rel_err(fast, ref) -> float:
    """Largest |s_fast − s_ref| / s_ref over values above 1e-8 · s_max of their cut."""
    s_ref = ref["singular_values"].values
    s_fast = fast["singular_values"].values
    s_max = np.fmax.reduce(np.nan_to_num(s_ref, nan=0.0), axis=-1, keepdims=True)
    mask = np.isfinite(s_ref) & (s_ref > 1e-8 * s_max)
    return float(np.max(np.abs(s_fast[mask] - s_ref[mask]) / s_ref[mask]))


def best_time(repeat: int, fn):
    """``(best seconds over repeat calls, last result)``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(legs: str, cuts: str, threads: int, repeat: int) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = create("resnet50", in_channels=3, num_classes=10)
    kernels = extract_kernels(model, kinds="conv2d")
    n_layers = len(kernels.attrs["layers"])
    naive_s, ref = best_time(repeat, lambda: compute_spectra(
        kernels, legs=legs, cuts=cuts, method="quimb", device="cpu"))
    fast_s, fast = best_time(repeat, lambda: compute_spectra(
        kernels, legs=legs, cuts=cuts, method="fast", device="cpu"))
    err = max_rel_err(fast, ref)
    ent_err = float(np.nanmax(np.abs(fast["entropy"].values - ref["entropy"].values)))
    n_cuts = int(np.isfinite(ref["chi_max"].values).sum())
    print(f"legs={legs} cuts={cuts}: {n_layers} conv kernels, {n_cuts} (layer, cut) spectra")
    print(f"  naive (quimb per cut): {naive_s:8.2f} s  (best of {repeat})")
    print(f"  fast (batched):        {fast_s:8.2f} s")
    print(f"  ratio:                 {naive_s / fast_s:8.2f}x")
    print(f"  max rel err of s:      {err:.2e}   max |d entropy|: {ent_err:.2e}")
    return {"legs": legs, "cuts": cuts, "layers": n_layers, "spectra": n_cuts,
            "naive_s": round(naive_s, 3), "fast_s": round(fast_s, 3),
            "ratio": round(naive_s / fast_s, 2), "max_rel_err": err,
            "max_entropy_err": ent_err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each path")
    parser.add_argument("--skip-binary", action="store_true")
    args = parser.parse_args()
    results = [run("natural", "all", args.threads, args.repeat)]
    if not args.skip_binary:
        # fine-grained legs: 20 legs for the 3x3 kernels of layer4, so the chain cuts
        results.append(run("binary", "contiguous", args.threads, args.repeat))
    head = results[0]
    out = {k: head[k] for k in ("naive_s", "fast_s", "ratio", "max_rel_err")}
    out["device"] = "cpu"
    out["threads"] = args.threads
    out["repeat"] = args.repeat
    out["runs"] = results
    print(json.dumps(out))


if __name__ == "__main__":
    main()
