"""Speed of tensorized layers against their dense originals (forward + backward).

Times, on the CPU (and CUDA when present): Linear(n, n) vs MPO; Conv2d(c, c, 3) vs MPO,
Tucker-2 and CP at about 5× compression; an ADTN-generated Linear vs dense; and the ADTN
weight generation for Q qubits (default 24: 16.8 M weights, the VGG-16 4096×4096 layer).
Prints a table, then, on the last line, one JSON object with every figure.

    python benchmarks/bench_tensorize.py [--linear 2048] [--channels 64] [--qubits 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from corranalysis.tensorize import apply
from corranalysis.tensorize.adtn import ADTN


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, repeat: int) -> float:
    """Median seconds of ``module(x).sum().backward()``."""
    module.train()
    times = []
    for i in range(repeat + 1):
        module.zero_grad(set_to_none=True)
        _sync(x.device)
        t0 = time.perf_counter()
        module(x).sum().backward()
        _sync(x.device)
        if i:  # first call warms up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_layers(device: torch.device, n: int, c: int, side: int, batch: int,
                 repeat: int) -> list[dict]:
    torch.manual_seed(0)
    rows = []
    lin = nn.Sequential(nn.Linear(n, n))
    conv = nn.Sequential(nn.Conv2d(c, c, 3, padding=1))
    cases = [
        *[("linear", lin, torch.randn(batch, n), {"0": {"method": m, "compression": 5}})
          for m in ("svd", "mpo")],
        ("linear", lin, torch.randn(batch, n),
         {"0": {"method": "adtn", "depth": 2, "fit_steps": 0}}),
        *[("conv2d", conv, torch.randn(batch, c, side, side),
           {"0": {"method": m, "compression": 5}}) for m in ("svd", "mpo", "tucker", "cp")],
    ]
    dense_cache: dict[str, float] = {}
    for kind, dense, x, spec in cases:
        x = x.to(device)
        dense = dense.to(device)
        if kind not in dense_cache:
            dense_cache[kind] = time_fwd_bwd(dense, x, repeat)
        new, table = apply(dense.cpu(), spec)
        dense.to(device)
        t = time_fwd_bwd(new.to(device), x, repeat)
        rows.append({
            "device": device.type, "layer": kind, "shape": table.shape[0] and table["shape"][0],
            "input": list(x.shape), "method": spec["0"]["method"], "rank": table["rank"][0],
            "compression": round(float(table["compression"][0]), 2),
            "dense_ms": round(1e3 * dense_cache[kind], 3), "tensorized_ms": round(1e3 * t, 3),
            "speedup": round(dense_cache[kind] / t, 3),
        })
    return rows


def bench_adtn(device: torch.device, qubits: int, depth: int) -> dict:
    a = ADTN(1 << qubits, depth, qubits).to(device)
    with torch.no_grad():
        a.generate()  # warm up
        _sync(device)
        t0 = time.perf_counter()
        a.generate()
        _sync(device)
        gen = time.perf_counter() - t0
    _sync(device)
    t0 = time.perf_counter()
    a.generate().pow(2).mean().backward()
    _sync(device)
    gen_bwd = time.perf_counter() - t0
    return {"device": device.type, "qubits": qubits, "depth": depth,
            "params": sum(p.numel() for p in a.parameters()), "weights": 1 << qubits,
            "generate_s": round(gen, 3), "generate_fwd_bwd_s": round(gen_bwd, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--linear", type=int, default=2048, help="Linear(n, n) size")
    ap.add_argument("--channels", type=int, default=64, help="Conv2d(c, c, 3) channels")
    ap.add_argument("--side", type=int, default=28, help="image side for the conv")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--qubits", type=int, default=24, help="ADTN generation size 2^Q")
    ap.add_argument("--depth", type=int, default=2, help="ADTN layers M")
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "layers": [], "adtn": []}
    for dev in devices:
        result["layers"] += bench_layers(dev, args.linear, args.channels, args.side,
                                         args.batch, args.repeat)
        result["adtn"].append(bench_adtn(dev, args.qubits, args.depth))
    print(f"{'dev':<5}{'layer':<8}{'shape':<12}{'method':<8}{'compr.':>8}{'dense ms':>11}"
          f"{'tensor ms':>11}{'speedup':>9}")
    for r in result["layers"]:
        print(f"{r['device']:<5}{r['layer']:<8}{r['shape']:<12}{r['method']:<8}"
              f"{r['compression']:>8.1f}{r['dense_ms']:>11.2f}{r['tensorized_ms']:>11.2f}"
              f"{r['speedup']:>9.2f}")
    for r in result["adtn"]:
        print(f"{r['device']}: ADTN Q={r['qubits']} M={r['depth']} ({r['params']} params → "
              f"{r['weights']:,} weights): generate {r['generate_s']:.3f} s, "
              f"generate + backward {r['generate_fwd_bwd_s']:.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
