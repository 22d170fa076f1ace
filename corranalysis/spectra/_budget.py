"""What a spectra request costs, estimated before any work, and the memory budget it must fit.

The estimate counts the cuts of every layer without enumerating them (the cuts of ``n``
legs are counted by the sizes of their sides, a product over subsets computed by dynamic
programming), and from their matrix sizes (d × D, d ≤ D) it adds up

* the results: ``singular_values`` and ``norm_loss`` ``(layer, cut, k)`` in float64,
  NaN-padded to the longest spectrum, the spectra themselves and the ``(layer, cut)``
  measures;
* the largest working set: per kernel a matricised copy, a Gram matrix, its tridiagonal
  reduction and the Gram matrices kept for partial traces, for as many kernels as run at
  once (CUDA: every Gram matrix, stacked on the device; quimb: one SVD at a time);
* the time: per cut a fixed cost, a Gram product (2d²D flops) and a symmetric eigensolver
  (d³), at rates measured on one core (quimb: an SVD, 2d²D), divided among the cores that
  share the work.

It is an estimate of the order of magnitude, meant to refuse a request that cannot fit
before it starts (:func:`check_budget`) and to tell the user what a long one will take.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..kernels import MAX_ALL_LEGS, Cut, LegLayout, all_cuts

#: the default memory budget: this fraction of the memory available when a request starts
MEMORY_FRACTION = 0.5
#: seconds per cut, per Gram flop (2d²D) and per eigensolver d³ of the fast path on one CPU
#: core, of the quimb reference, and of the fast path on a GPU (measured, rounded up)
SECONDS = {"cpu": (1.7e-4, 4e-11, 3e-11), "quimb": (1.5e-4, 1.4e-10, 0.0),
           "cuda": (2e-5, 1e-12, 5e-12)}
#: the largest batch of stacked Gram matrices and of kept Gram matrices, in float64 elements
MAX_BATCH_ELEMENTS = 32 * 2**20
_BYTES = 8  # float64

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_memory(value: int | float | str, name: str = "max_memory") -> int:
    """A memory size in bytes from a number of bytes or a string such as ``8GB``, ``500MB``,
    ``1.5GiB`` (kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024); ``name`` names
    the option in the error."""
    hint = "give a size such as 8GB, 500MB or 1.5GiB"
    if isinstance(value, bool):
        raise InputError(f"{name}={value!r} is not a memory size; {hint}")
    if isinstance(value, (int, float)):
        number, unit = float(value), 1
    else:
        match = _SIZE.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise InputError(f"{name}={value!r} is not a memory size; {hint}")
        number, unit = float(match.group(1)), _UNITS[match.group(2).lower()]
    size = number * unit
    if not (math.isfinite(size) and size >= 1):
        raise InputError(f"{name}={value!r} is not a memory size; {hint} (at least 1 byte)")
    return int(size)


def available_memory() -> int | None:
    """Bytes of memory available now (psutil, else ``/proc/meminfo``'s MemAvailable, else
    sysconf), or None when the system does not say."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in words: ``512 B``, ``3.4 MB``, ``8.6 GB`` (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def format_seconds(s: float) -> str:
    """A duration in words: ``< 1 s``, ``40 s``, ``12 min``, ``3.5 h``, ``2.0 days``."""
    if s < 1:
        return "< 1 s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


# --------------------------------------------------------------------------- cut profiles
def cut_profile(layout: LegLayout, spec: str | Sequence[Cut]) -> Counter:
    """``Counter{(rows, cols): number of cuts}`` of one kernel for ``spec``: ``"all"``,
    ``"contiguous"`` or a list of cuts, without enumerating all cuts (``rows`` is the size of
    the side holding the first leg)."""
    sizes, total = layout.sizes, math.prod(layout.sizes)
    if spec == "all":
        if len(sizes) > MAX_ALL_LEGS:
            all_cuts(layout.names)  # refuses, naming the limit and what to do instead
        left: Counter = Counter({sizes[0]: 1})  # size of the first leg's side -> subsets
        for size in sizes[1:]:
            grown: Counter = Counter(left)
            for product, count in left.items():
                grown[product * size] += count
            left = grown
        left[total] -= 1  # every leg on one side is not a cut
        return Counter({(p, total // p): c for p, c in left.items() if c})
    if spec == "contiguous":
        return Counter((math.prod(sizes[:i]), math.prod(sizes[i:])) for i in range(1, len(sizes)))
    return Counter((layout.size_of(c.left), layout.size_of(c.right)) for c in spec)


@dataclass(frozen=True)
class SpectraEstimate:
    """What a spectra request needs: ``n_layers``, ``n_cuts`` (every (layer, cut) pair
    computed), ``n_labels`` (length of the ``cut`` dim), ``k_max`` (length of ``k``),
    ``result_bytes``, ``working_bytes``, their sum ``bytes``, and ``seconds`` (rough)."""

    n_layers: int
    n_cuts: int
    n_labels: int
    k_max: int
    result_bytes: int
    working_bytes: int
    seconds: float

    @property
    def bytes(self) -> int:
        return self.result_bytes + self.working_bytes

    def __str__(self) -> str:
        layers = f"{self.n_layers:,} layer{'s' if self.n_layers != 1 else ''}"
        return (f"{layers}, {self.n_cuts:,} cuts (up to {self.k_max:,} singular values each): "
                f"about {format_bytes(self.bytes)} of memory and "
                f"{format_seconds(self.seconds)}")


def estimate(profiles: Sequence[tuple[LegLayout, Counter]], n_labels: int, *, device: str,
             method: str, threads: int) -> SpectraEstimate:
    """The :class:`SpectraEstimate` of kernels with leg ``layout`` and cut ``profile`` each;
    ``n_labels`` distinct cut labels, computed on ``device`` (``cpu``/``cuda``) by ``method``
    with ``threads`` CPU threads."""
    n_layers = len(profiles)
    k_max = max((min(rc) for _, prof in profiles for rc in prof), default=0)
    n_cuts = sum(sum(prof.values()) for _, prof in profiles)
    spectra = sum(min(rc) * c for _, prof in profiles for rc, c in prof.items())
    result = _BYTES * (2 * n_layers * n_labels * k_max + 5 * n_layers * n_labels + spectra)

    path = "quimb" if method == "quimb" else ("cuda" if device == "cuda" else "cpu")
    per_cut, per_gram, per_eig = SECONDS[path]
    per_kernel, seconds, device_grams = [], 0.0, 0
    for layout, prof in profiles:
        n = math.prod(layout.sizes)
        d_max = max((min(rc) for rc in prof), default=0)
        grams = sum(min(rc) ** 2 * c for rc, c in prof.items())
        per_kernel.append(3 * n if path == "quimb"
                          else 2 * n + 2 * d_max**2 + min(grams, MAX_BATCH_ELEMENTS))
        device_grams += grams
        for (rows, cols), count in prof.items():
            d, big = min(rows, cols), max(rows, cols)
            seconds += count * (per_cut + per_gram * 2 * d * d * big + per_eig * d**3)
    if path == "quimb":
        working = max(per_kernel, default=0)
    elif path == "cuda":
        working = device_grams + MAX_BATCH_ELEMENTS + max(per_kernel, default=0)
    else:
        working = sum(sorted(per_kernel, reverse=True)[:max(1, threads)])
        seconds /= max(1, min(threads, n_layers))
    return SpectraEstimate(n_layers, n_cuts, n_labels, k_max, int(result),
                           int(_BYTES * working), seconds)


def check_budget(est: SpectraEstimate, max_memory: int | float | str | None) -> None:
    """InputError when ``est`` needs more memory than ``max_memory`` (bytes or ``"8GB"``;
    None: :data:`MEMORY_FRACTION` of the memory available now, no limit if unknown)."""
    if max_memory is None:
        available = available_memory()
        if available is None:
            return
        budget = int(available * MEMORY_FRACTION)
        source = (f"the default, {MEMORY_FRACTION:.0%} of the {format_bytes(available)} of "
                  "memory available")
    else:
        budget = parse_memory(max_memory)
        source = "max_memory"
    if est.bytes <= budget:
        return
    more = _suggest(est.bytes)
    raise InputError(
        f"spectra request too large: {est}, above the memory budget of {format_bytes(budget)} "
        f"({source}); ask for fewer cuts (cuts='contiguous' or cut labels, coarser legs) or "
        f"fewer layers, or raise the budget: max_memory='{more}' (--max-memory {more} at the "
        "command line)"
    )


def _suggest(n: int) -> str:
    """A round size above ``n`` bytes, e.g. ``12GB``."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= size:
            return f"{math.ceil(n * 1.1 / size)}{unit}"
    return "1MB"
