"""One training step (forward + backward + Adam step) of VGG-16 with its two large head layers
ADTN-encoded at the paper's 424-parameter configuration, against the dense model, on the CPU.

Two measurements: the head alone (``classifier``, input 128×512 features) and the whole model
(128 images of 1×28×28). ADTN variants: ``adtn`` (the default: at depth 1 each head matrix is a
rank-4 product applied without building it), ``adtn-vector`` (the 2^Q vector built as an MPS
product ``L @ R``, then a dense matmul) and ``adtn-gates`` (the gate-by-gate reference: 2^Q
vector passes per gate). Prints a table, then, on the last line, one JSON object.

    python benchmarks/bench_adtn.py [--batch 128] [--repeat 5] [--threads 1] [--no-model]
        [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from corranalysis.models import create
from corranalysis.tensorize import apply

SPEC = {"classifier.0": {"method": "adtn", "depth": 1},
        "classifier.3": {"method": "adtn", "depth": 1}}
HEAD_SPEC = {"0": SPEC["classifier.0"], "3": SPEC["classifier.3"]}


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One optimiser step of ``model`` on ``(x, y)`` (Adam, cross-entropy, train mode)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def median_seconds(step: Callable[[], None], repeat: int) -> float:
    step()  # warm-up: allocations, Adam state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def variants(dense: nn.Module, spec: dict) -> dict[str, nn.Module]:
    """Dense, and the three ADTN paths of the same encoded model."""
    out = {"dense": dense}
    for name in ("adtn", "adtn-vector", "adtn-gates"):
        new, _ = apply(dense, spec)
        for m in new.modules():
            if hasattr(m, "adtn"):
                if name == "adtn-vector":
                    m.adtn.linear_factors = lambda *a: None  # no low-rank form: build the vector
                if name == "adtn-gates":
                    m.adtn.fast = False
        out[name] = new
    return out


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def bench(label: str, dense: nn.Module, spec: dict, x: torch.Tensor, y: torch.Tensor,
          repeat: int, skip: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    for name, model in variants(dense, spec).items():
        if name in skip:
            continue
        s = median_seconds(step_fn(model, x, y), repeat)
        rows.append({"what": label, "variant": name, "params": n_params(model),
                     "step_ms": round(1e3 * s, 2)})
    base = rows[0]["step_ms"]
    for r in rows:
        r["vs_dense"] = round(r["step_ms"] / base, 3)
    return rows


def profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    from torch.profiler import profile as prof

    step = step_fn(model, x, y)
    step()
    with prof() as p:
        for _ in range(3):
            step()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-model", action="store_true", help="head only (the model is slow)")
    ap.add_argument("--profile", action="store_true", help="print a profile of each step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create("vgg16", 1, 10)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    head = model.classifier
    feats = torch.randn(args.batch, 512, generator=g)
    rows = bench("head 128x512", head, HEAD_SPEC, feats, y, args.repeat)
    if args.profile:
        for name, m in variants(head, HEAD_SPEC).items():
            print(f"--- profile: head, {name}")
            profile(m, feats, y)
    if not args.no_model:
        images = torch.randn(args.batch, 1, 28, 28, generator=g)
        rows += bench("vgg16 128x1x28x28", model, SPEC, images, y, max(2, args.repeat // 2),
                      skip=("adtn-gates",))
    print(f"{'what':<20}{'variant':<13}{'params':>12}{'step ms':>11}{'vs dense':>10}")
    for r in rows:
        print(f"{r['what']:<20}{r['variant']:<13}{r['params']:>12,}{r['step_ms']:>11.2f}"
              f"{r['vs_dense']:>10.3f}")
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
