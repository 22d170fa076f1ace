"""Spectra: singular values of every kernel across every cut, as an ``xarray.Dataset``.

Two paths compute the same numbers:

* the **reference** (``method="quimb"``): each kernel is a ``quimb.tensor.Tensor``
  with its legs as named indices, and a cut's spectrum is quimb's own
  ``Tensor.singular_values(left_inds)``;
* the **fast path** (``method="fast"``, default): for each cut the Gram matrix of
  the smaller side is formed with one matrix product and diagonalised (float64).
  On the CPU the cuts run as parallel tasks with single-threaded LAPACK each; on
  CUDA, Gram matrices of equal size are stacked across cuts and layers into one
  batched ``eigvalsh``. A kernel's smaller Gram matrices come from its larger ones
  by partial trace where one side contains another (:func:`_plan`). Squaring costs
  accuracy for the smallest singular values: those whose error estimate exceeds
  the tolerance (:func:`_uncertain_tail`) are recomputed by Rayleigh–Ritz on the
  matrix itself (:func:`_ritz_tail`), with an SVD as the last resort. Tested to agree with the
  reference: s within 1e-6 relative (s > 1e-8 s_max), entropies within 1e-9.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import xarray as xr
from scipy.linalg import lapack
from threadpoolctl import threadpool_info, threadpool_limits

from ..devices import resolve_device
from ..errors import InputError
from ..kernels import (
    Cut,
    CutsSpec,
    LegLayout,
    LegsSpec,
    as_cuts,
    check_kernel,
    extract_kernels,
    fine_grain,
    kernel_items,
    kernel_tensor,
    matricize,
    select_cuts,
)
from ..progress import progress_bar
from ..provenance import provenance
from . import _budget, _lapack
from ._budget import MAX_BATCH_ELEMENTS, SpectraEstimate

#: largest estimated relative error of a singular value from Gram eigenvalues;
#: smaller values are refined on the matrix itself (the promise is 1e-6)
GRAM_TOLERANCE = 1e-7
#: largest relative error bound accepted for a refined singular value
RITZ_TOLERANCE = 5e-7
METHODS = ("fast", "quimb")


# --------------------------------------------------------------------------- measures
def spectral_measures(s: np.ndarray) -> dict[str, float]:
    """Entropies and ranks of one spectrum ``s`` (descending, float64).

    ``entropy`` is von Neumann −Σ p ln p with p = s²/Σs² (natural log), ``renyi2``
    −ln Σ p², ``effective_rank`` exp(entropy). A zero spectrum has entropy 0.
    """
    s = np.asarray(s, dtype=np.float64)
    s2 = s * s
    total = s2.sum()
    if total <= 0.0:
        return {"entropy": 0.0, "renyi2": 0.0, "effective_rank": 1.0}
    p = s2 / total
    nz = p[p > 0.0]
    entropy = float(-(nz * np.log(nz)).sum()) + 0.0  # no -0.0
    return {
        "entropy": entropy,
        "renyi2": float(-np.log((p * p).sum())) + 0.0,
        "effective_rank": float(np.exp(entropy)),
    }


def norm_loss_curve(s: np.ndarray) -> np.ndarray:
    """Norm loss when keeping k = 1..len(s) singular values: Σ_{j>k} s_j² / Σ s²."""
    s2 = np.asarray(s, dtype=np.float64) ** 2
    total = s2.sum()
    if total <= 0.0:
        return np.zeros_like(s2)
    tail = np.cumsum(s2[::-1])[::-1]  # tail[k-1] = Σ_{j>=k} s_j²
    out = np.empty_like(s2)
    out[:-1] = tail[1:] / total
    out[-1] = 0.0
    return out


def numerical_rank(s: np.ndarray, shape: tuple[int, int]) -> int:
    """Number of singular values above ``s_max · max(shape) · eps`` (NumPy's convention)."""
    s = np.asarray(s)
    if s.size == 0 or s[0] <= 0.0:
        return 0
    return int((s > s[0] * max(shape) * np.finfo(np.float64).eps).sum())


# --------------------------------------------------------------------------- reference
def reference_spectrum(weight: np.ndarray, layout: LegLayout, cut: Cut) -> np.ndarray:
    """Singular values of ``weight`` across ``cut``: quimb's own, descending."""
    s = kernel_tensor(weight, layout).singular_values(list(cut.left))
    return np.sort(np.asarray(s, dtype=np.float64))[::-1]


# --------------------------------------------------------------------------- fast path
@dataclass
class _Job:
    key: tuple[int, int]
    weight: np.ndarray | torch.Tensor
    layout: LegLayout
    cut: Cut

    @property
    def dims(self) -> tuple[int, int]:
        return self.layout.size_of(self.cut.left), self.layout.size_of(self.cut.right)


def _gram_error(lam: np.ndarray) -> float:
    """Absolute error of the eigenvalues ``lam`` (descending) of a d × d Gram matrix:
    about ``d · eps · λ_max``."""
    return len(lam) * np.finfo(np.float64).eps * lam[0]


def _uncertain_tail(lam: np.ndarray) -> int:
    """How many trailing Gram eigenvalues ``lam`` (descending) may miss the tolerance.

    A Gram eigenvalue carries an absolute error of about ``d · eps · λ_max``
    (:func:`_gram_error`), so s_k = sqrt(λ_k) has relative error about
    ``d·eps·λ_max / (2 λ_k)``; values above
    1e-8·s_max whose estimate exceeds :data:`GRAM_TOLERANCE` are uncertain, and with
    them every smaller one.
    """
    top = lam[0]
    if top <= 0.0:
        return 0
    worst = _gram_error(lam) / (2.0 * np.maximum(lam, np.finfo(np.float64).tiny))
    bad = np.flatnonzero((worst > GRAM_TOLERANCE) & (lam > 1e-16 * top))
    return 0 if bad.size == 0 else len(lam) - int(bad[0])


def _tail_width(d: int, n_tail: int) -> int:
    """Width of the subspace searched for an uncertain tail of ``n_tail`` values
    (0: too wide to beat an SVD)."""
    p = min(d, 2 * n_tail + 8)
    return p if 4 * p <= d else 0


def _ritz_tail(a: np.ndarray, x: np.ndarray, lam: np.ndarray, n_tail: int):
    """The ``n_tail`` smallest singular values of ``a`` (d × D), accurate, or None.

    ``x`` (d × p, orthonormal) spans approximate singular vectors of the p smallest
    values — eigenvectors of the computed Gram matrix, whose eigenvalues ``lam``
    (descending) lose accuracy there. Rayleigh–Ritz on ``a`` itself, not on its
    Gram matrix: the singular values σ of ``Y = aᵀx`` carry an absolute error of
    about eps·‖a‖ only, plus ‖R‖²/gap in σ² (R = a Y − x YᵀY the block residual,
    gap the distance from the window to the next Gram eigenvalue). They are
    accepted where that bound, relative to σ, is below :data:`RITZ_TOLERANCE` and
    σ² matches the Gram eigenvalue it replaces within that eigenvalue's error.
    None means "use a full SVD".
    """
    eps = np.finfo(np.float64).eps
    d, p = x.shape
    y = a.T @ x
    s = np.linalg.svd(y, compute_uv=False)
    gap = (lam[d - p - 1] - s[0] ** 2) if p < d else np.inf
    if not gap > 0.0:
        return None
    residual = np.linalg.norm(a @ y - x @ (y.T @ y), ord=2)
    tail = s[-n_tail:]
    s_max = np.sqrt(lam[0])
    bound = residual**2 / gap / (2 * tail**2 + 1e-300) + 4 * eps * s_max / np.maximum(tail, 1e-300)
    promised = tail > 1e-8 * s_max  # smaller values are not promised
    if np.any(bound[promised] > RITZ_TOLERANCE):
        return None
    mismatch = np.abs(tail**2 - np.clip(lam[-n_tail:], 0.0, None))
    return tail if np.all(mismatch <= 2 * _gram_error(lam) + 1e-3 * tail**2) else None


def _with_tail_refined(lam: np.ndarray, side_matrix: Callable, tail_vectors: Callable):
    """Singular values sqrt(``lam``) of a cut matrix, its uncertain tail refined.

    ``lam`` are the Gram eigenvalues (descending), ``side_matrix()`` the matrix ``a``
    (d × D) with Gram matrix ``a aᵀ``, ``tail_vectors(p)`` the Gram eigenvectors of
    the p smallest eigenvalues (d × p) or None. A tail that :func:`_ritz_tail`
    cannot certify is left to a full SVD of ``a``.
    """
    s = np.sqrt(np.clip(lam, 0.0, None))
    n_tail = _uncertain_tail(lam)
    if n_tail == 0:
        return s
    a = side_matrix()
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else a
    p = _tail_width(len(lam), n_tail)
    x = tail_vectors(p) if p else None
    tail = _ritz_tail(a, x, lam, n_tail) if x is not None else None
    if tail is None:
        return np.linalg.svd(a, compute_uv=False)
    s[-n_tail:] = tail
    return s


def _tridiagonal_tail_vectors(c, diag, off, tau, p: int) -> np.ndarray | None:
    """Eigenvectors of the p smallest eigenvalues of the Gram matrix reduced by
    :func:`_lapack.dsytrd` (``c``, ``diag``, ``off``, ``tau``), or None."""
    m, w, block, split, _ = lapack.dstebz(diag, off, 3, 0.0, 0.0, 1, p, 0.0, "B")
    z, info = lapack.dstein(diag, off, w[:m], block, split)
    if m != p or info != 0:
        return None
    # back to the Gram matrix's basis: Q = H(1)…H(d-1), reflectors below c's subdiagonal
    x = np.array(z[:, :p], order="F")
    x[1:], _, info = lapack.dormqr("L", "N", c[1:, :-1], tau, x[1:], lwork=64 * p)
    return x if info == 0 else None


def _spectrum_cpu(gram: np.ndarray, side_matrix: Callable[[], np.ndarray]) -> np.ndarray:
    """Singular values of a cut matrix from its Gram matrix (NumPy, LAPACK).

    The Gram matrix is reduced to tridiagonal form once: the eigenvalues of the
    tridiagonal matrix are the spectrum, its eigenvectors the uncertain tail's.
    """
    try:  # GIL released: the threads of _spectra_cpu run these at once
        c, diag, off, tau = _lapack.dsytrd(gram)
        lam = _lapack.dsterf(diag, off)[::-1].copy()
    except np.linalg.LinAlgError:
        return np.linalg.svd(side_matrix(), compute_uv=False)
    return _with_tail_refined(lam, side_matrix,
                              partial(_tridiagonal_tail_vectors, c, diag, off, tau))


def _spectrum_torch(gram: torch.Tensor, lam: np.ndarray, side_matrix: Callable) -> np.ndarray:
    """Singular values of a cut matrix from Gram eigenvalues ``lam`` computed by torch
    on the device; an uncertain tail takes its vectors from ``torch.linalg.eigh``."""
    def tail_vectors(p: int) -> np.ndarray:
        return torch.linalg.eigh(gram)[1][:, :p].cpu().numpy()  # ascending: the tail first

    return _with_tail_refined(lam, side_matrix, tail_vectors)


@dataclass
class _CutMatrix:
    """One distinct matrix of a kernel's cuts (cuts differing by size-1 legs share it).

    ``side`` holds the legs (size > 1, in leg order) whose Gram matrix is
    diagonalised — the smaller side; ``source`` an earlier, larger side containing
    it, whose Gram matrix gives this one by a partial trace. An empty ``side``
    marks a matrix with a single row or column.
    """

    jobs: list[_Job]
    side: tuple[str, ...]
    source: tuple[str, ...] | None = None


#: with more distinct cut matrices than this in one kernel, a square cut takes its
#: first side and a Gram matrix's source is looked up among one-leg-larger sides only
PLAN_SEARCH_LIMIT = 64


def _plan(layout: LegLayout, jobs: list[_Job]) -> list[_CutMatrix]:
    """Distinct cut matrices of one kernel, largest Gram first, each taking its Gram
    matrix from an earlier one by partial trace where an earlier side contains it.

    A square cut may use either side: the one containing the most Gram work of the
    cuts still to come is chosen (``out,kh`` and ``in,kh`` of a 3×3 kernel give
    ``out``, ``in`` and ``kh`` for free). Sides are bit masks over the legs; above
    :data:`PLAN_SEARCH_LIMIT` matrices the search is kept linear in their number.
    """
    names, dim = layout.names, layout.size_of
    bit = {leg: 1 << i for i, leg in enumerate(names)}

    def mask(legs) -> int:
        return sum(bit[leg] for leg in legs)

    by_sides: dict[frozenset, tuple[list[_Job], list[tuple[str, ...]]]] = {}
    trivial: list[_Job] = []
    for job in jobs:
        left, right = layout.squeezed(job.cut.left), layout.squeezed(job.cut.right)
        if dim(left) == 1 or dim(right) == 1:
            trivial.append(job)
            continue
        key = frozenset([left, right])
        if key not in by_sides:
            smaller = min(dim(left), dim(right))
            by_sides[key] = ([], [side for side in (left, right) if dim(side) == smaller])
        by_sides[key][0].append(job)

    pending = sorted(by_sides.values(), key=lambda item: -dim(item[1][0]))
    small = len(pending) <= PLAN_SEARCH_LIMIT
    done: dict[int, tuple[str, ...]] = {}  # mask -> side, in the order computed
    plan = [_CutMatrix(trivial, ())] if trivial else []

    def source_of(side) -> tuple[str, ...] | None:
        m = mask(side)
        if small:
            found = [s for sm, s in done.items() if m & ~sm == 0]
        else:
            found = [done[m | bit[leg]] for leg in names if m | bit[leg] in done]
        return min(found, key=dim) if found else None

    for n, (cut_jobs, candidates) in enumerate(pending):
        for side in candidates:
            if (source := source_of(side)) is not None:
                plan.append(_CutMatrix(cut_jobs, side, source))
                break
        else:
            choice = candidates[0]
            if small and len(candidates) > 1:
                later = [c for _, cands in pending[n + 1:] for c in cands
                         if source_of(c) is None]
                gains = [sum(dim(c) ** 2 for c in later if mask(c) & ~mask(side) == 0)
                         for side in candidates]
                choice = candidates[int(np.argmax(gains))]
            plan.append(_CutMatrix(cut_jobs, choice))
        done[mask(plan[-1].side)] = plan[-1].side
    return plan


def _side_matrix(job: _Job, side: tuple[str, ...]):
    """The kernel of ``job`` as the matrix (dim side, rest), legs of ``side`` in order."""
    rest = tuple(leg for leg in job.layout.names if leg not in side)
    return matricize(job.weight, job.layout.names, job.layout.sizes, Cut(side, rest))


def _partial_trace(gram, legs: tuple[str, ...], sizes: dict[str, int], keep: tuple[str, ...]):
    """Gram matrix of ``keep`` ⊂ ``legs`` from the Gram matrix of ``legs``."""
    k = len(legs)
    t = gram.reshape(*(sizes[leg] for leg in legs), *(sizes[leg] for leg in legs))
    rows = list(range(k))
    cols = [k + i if leg in keep else i for i, leg in enumerate(legs)]
    kept = [i for i, leg in enumerate(legs) if leg in keep]
    einsum = torch.einsum if isinstance(gram, torch.Tensor) else np.einsum
    out = einsum(t, rows + cols, kept + [k + i for i in kept])
    d = int(np.prod([sizes[leg] for leg in keep], dtype=np.int64))
    return out.reshape(d, d)


def _grams(plan: list[_CutMatrix]):
    """Yield ``(item, gram)`` for each planned matrix (``gram`` None for a vector)."""
    kept: dict[tuple[str, ...], object] = {}
    budget = MAX_BATCH_ELEMENTS
    for item in plan:
        if not item.side:
            yield item, None
            continue
        job = item.jobs[0]
        if item.source in kept:  # a source past the memory budget was not kept
            sizes = dict(zip(job.layout.names, job.layout.sizes, strict=True))
            gram = _partial_trace(kept[item.source], item.source, sizes, item.side)
        else:
            a = _side_matrix(job, item.side)
            gram = a @ a.T
        if gram.shape[0] ** 2 <= budget:  # keep it as a source for smaller sides
            kept[item.side] = gram
            budget -= gram.shape[0] ** 2
        yield item, gram


def _vector_norm(job: _Job) -> np.ndarray:
    w = job.weight
    norm = torch.linalg.vector_norm(w) if isinstance(w, torch.Tensor) else np.linalg.norm(w)
    return np.array([float(norm)])


def _kernel_spectra(plan: list[_CutMatrix], finish: Callable) -> None:
    """Spectra of one kernel's planned matrices (NumPy), each passed to ``finish`` when done."""
    for item, gram in _grams(plan):
        if gram is None:
            finish(item.jobs, _vector_norm(item.jobs[0]))
            continue
        side_matrix = partial(_side_matrix, item.jobs[0], item.side)
        finish(item.jobs, _spectrum_cpu(gram, side_matrix))


def _blas_threads() -> int:
    """Threads of the BLAS NumPy uses (the CPU path runs this many kernels at once)."""
    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
               default=1)


def _spectra_cpu(plans: list[list[_CutMatrix]], finish: Callable) -> None:
    """NumPy on the CPU: one task per kernel, largest first, on a pool of threads each
    running single-threaded BLAS/LAPACK (a tridiagonal reduction uses one core
    poorly; two at once use both). Each matrix is reported as it is done."""
    def work(plan: list[_CutMatrix]) -> int:
        return sum(job.weight.size * min(job.dims) for item in plan for job in item.jobs[:1])

    lock = threading.Lock()

    def finish_locked(jobs: list[_Job], s: np.ndarray) -> None:
        with lock:
            finish(jobs, s)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(_blas_threads()) as pool:
        futures = [pool.submit(_kernel_spectra, plan, finish_locked)
                   for plan in sorted(plans, key=work, reverse=True)]
        for future in as_completed(futures):
            future.result()


def _spectra_torch(plans: list[list[_CutMatrix]], finish: Callable) -> None:
    """Torch on the device: Gram matrices of equal size are stacked across cuts and
    layers and diagonalised in one batched ``eigvalsh`` call."""
    by_size: dict[int, list] = defaultdict(list)
    for plan in plans:
        for item, gram in _grams(plan):
            if gram is None:
                finish(item.jobs, _vector_norm(item.jobs[0]))
            else:
                by_size[gram.shape[0]].append((item, gram))
    for d, items in by_size.items():
        step = max(1, MAX_BATCH_ELEMENTS // (d * d))
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            evals = torch.linalg.eigvalsh(torch.stack([g for _, g in chunk])).flip(-1).cpu().numpy()
            for (item, gram), lam in zip(chunk, evals, strict=True):
                side_matrix = partial(_side_matrix, item.jobs[0], item.side)
                finish(item.jobs, _spectrum_torch(gram, lam, side_matrix))


def _fast_spectra(jobs: list[_Job], progress: Callable[[int], None]) -> dict:
    """Spectra of all ``jobs``, each distinct matrix computed once."""
    out: dict[tuple[int, int], np.ndarray] = {}
    by_kernel: dict[int, list[_Job]] = defaultdict(list)
    for job in jobs:
        by_kernel[job.key[0]].append(job)
    plans = [_plan(kernel_jobs[0].layout, kernel_jobs) for kernel_jobs in by_kernel.values()]

    def finish(done: list[_Job], s: np.ndarray) -> None:
        for job in done:
            out[job.key] = s
        progress(len(done))

    if isinstance(jobs[0].weight, torch.Tensor):
        _spectra_torch(plans, finish)
    else:
        _spectra_cpu(plans, finish)
    return out


# --------------------------------------------------------------------------- request
def _label_cuts(layout: LegLayout, labels: Sequence[str]) -> tuple[list[Cut], list]:
    """Cuts of one layer from explicit labels; labels that do not fit it are skipped (their
    errors returned)."""
    found, errors = [], []
    for label in labels:
        try:
            found.extend(select_cuts(layout.names, [label]))
        except InputError as exc:
            errors.append(exc)
    return found, errors


@dataclass
class _Request:
    """A checked spectra request: the kernels, each layer's legs, the cuts spec and, for
    explicit labels, each layer's cuts; and what it will cost."""

    kernels: xr.DataTree
    layers: list[tuple[str, xr.Dataset, LegLayout]]
    spec: str | list[str]
    device: torch.device
    label_cuts: list[list[Cut]] | None
    estimate: SpectraEstimate

    def cuts_of(self, i: int) -> list[Cut]:
        if self.label_cuts is not None:
            return self.label_cuts[i]
        return select_cuts(self.layers[i][2].names, self.spec)


def _request(kernels, legs: LegsSpec, cuts: CutsSpec, device: str, method: str) -> _Request:
    """Check a request and estimate its cost, enumerating no cuts (explicit labels aside)."""
    if method not in METHODS:
        raise InputError(f"method={method!r} is unknown; valid: {', '.join(METHODS)}")
    spec = as_cuts(cuts)
    if not isinstance(kernels, xr.DataTree):
        kernels = extract_kernels(kernels)
    items = kernel_items(kernels)
    if not items:
        raise InputError("kernels tree holds no layers; select at least one layer")
    dev = resolve_device(device) if method == "fast" else torch.device("cpu")
    layers = []
    for name, ds in items:
        weight = ds["weight"]
        check_kernel(name, weight.values)
        layers.append((name, ds, fine_grain(list(weight.dims), weight.shape, legs)))

    label_cuts = None
    if isinstance(spec, str):  # "all" or "contiguous": counted, not enumerated
        profiles = [(layout, _budget.cut_profile(layout, spec)) for *_, layout in layers]
        per_legs = {layout.names: sum(prof.values()) for layout, prof in profiles}
        n_labels = sum(per_legs.values())
    else:
        label_cuts, errors = [], []
        for *_, layout in layers:
            found, errs = _label_cuts(layout, spec)
            label_cuts.append(found)
            errors.extend(errs)
        if not any(label_cuts):
            raise errors[0] if errors else InputError(f"cuts={cuts!r} select no cut")
        profiles = [(layout, _budget.cut_profile(layout, found))
                    for (*_, layout), found in zip(layers, label_cuts, strict=True)]
        n_labels = len({cut.label for found in label_cuts for cut in found})
    est = _budget.estimate(profiles, n_labels, device=dev.type, method=method,
                           threads=_blas_threads())
    return _Request(kernels, layers, spec, dev, label_cuts, est)


def estimate_spectra(
    kernels,
    legs: LegsSpec = "natural",
    cuts: CutsSpec = "all",
    device: str = "auto",
    method: str = "fast",
) -> SpectraEstimate:
    """What :func:`compute_spectra` with these arguments would need, before any work.

    Returns a :class:`SpectraEstimate`: layers, cuts, the longest spectrum, the memory of
    the results and of the largest working set (bytes), and a rough time in seconds;
    ``str()`` of it reads as a sentence. Bad arguments raise the same InputError as
    :func:`compute_spectra`.
    """
    return _request(kernels, legs, cuts, device, method).estimate


# --------------------------------------------------------------------------- dataset
def _kernels_sha256(items: Sequence[tuple[str, xr.Dataset]]) -> str:
    h = hashlib.sha256()
    for name, ds in items:
        w = np.ascontiguousarray(ds["weight"].values)
        h.update(f"{name}:{w.dtype.str}:{w.shape}".encode())
        h.update(w.data)
    return h.hexdigest()


def compute_spectra(
    kernels,
    legs: LegsSpec = "natural",
    cuts: CutsSpec = "all",
    device: str = "auto",
    method: str = "fast",
    progress: bool = False,
    *,
    max_memory: int | float | str | None = None,
) -> xr.Dataset:
    """Singular-value spectra of every kernel across every chosen cut.

    Parameters
    ----------
    kernels
        A kernels DataTree from :func:`~corranalysis.extract_kernels`, or anything
        it accepts (a module, a checkpoint path, ...).
    legs
        Fine-graining: ``"natural"``, ``"prime"``, ``"binary"`` or a mapping.
    cuts
        ``"all"`` (every bipartition), ``"contiguous"`` (MPS bonds) or cut labels.
        Labels that do not fit a layer's legs give NaN there.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the fast path (float64 throughout).
    method
        ``"fast"`` (batched) or ``"quimb"`` (the per-cut reference).
    progress
        Show a progress bar (cuts done of the total, with the time left).
    max_memory
        Memory budget in bytes, or a size such as ``"8GB"``; None (default): half of the
        memory available now. A request whose estimate (:func:`estimate_spectra`) is
        larger is refused with InputError before any work.

    Returns
    -------
    xarray.Dataset with dims ``(layer, cut, k)``: ``singular_values``, ``norm_loss``
    (NaN-padded along ``k``, 1-based), and ``entropy``, ``renyi2``,
    ``effective_rank``, ``rank``, ``chi_max`` per ``(layer, cut)``.
    """
    request = _request(kernels, legs, cuts, device, method)
    _budget.check_budget(request.estimate, max_memory)
    kernels, dev = request.kernels, request.device
    items = [(name, ds) for name, ds, _ in request.layers]
    layer_cuts = [(name, ds, layout, request.cuts_of(i))
                  for i, (name, ds, layout) in enumerate(request.layers)]

    cut_index: dict[str, int] = {}
    for *_, chosen in layer_cuts:
        for cut in chosen:
            cut_index.setdefault(cut.label, len(cut_index))
    labels = list(cut_index)

    jobs = []
    for i, (_, ds, layout, chosen) in enumerate(layer_cuts):
        # CPU: NumPy's LAPACK (robust under load); CUDA: torch on the device
        w = np.ascontiguousarray(ds["weight"].values, dtype=np.float64)
        if dev.type != "cpu":
            w = torch.as_tensor(w).to(dev)
        for cut in chosen:
            jobs.append(_Job((i, cut_index[cut.label]), w, layout, cut))

    # the estimate first, then the bar: cuts of all layers, updated as each matrix is done,
    # with the time left
    if progress:
        print(f"spectra: {request.estimate}", file=sys.stderr)
    with progress_bar(total=len(jobs), desc="spectra", unit="cut", disable=not progress,
                      dynamic_ncols=True) as bar, torch.no_grad():
        if method == "fast":
            spectra = _fast_spectra(jobs, bar.update)
        else:
            spectra = {}
            for job in jobs:
                spectra[job.key] = reference_spectrum(job.weight, job.layout, job.cut)
                bar.update(1)

    n_layers, n_cuts = len(layer_cuts), len(labels)
    k_max = max(len(s) for s in spectra.values())
    sv = np.full((n_layers, n_cuts, k_max), np.nan)
    nl = np.full_like(sv, np.nan)
    scalars = {key: np.full((n_layers, n_cuts), np.nan)
               for key in ("entropy", "renyi2", "effective_rank", "rank", "chi_max")}
    for job in jobs:
        i, j = job.key
        s = spectra[job.key]
        sv[i, j, : len(s)] = s
        nl[i, j, : len(s)] = norm_loss_curve(s)
        for key, value in spectral_measures(s).items():
            scalars[key][i, j] = value
        scalars["rank"][i, j] = numerical_rank(s, job.dims)
        scalars["chi_max"][i, j] = min(job.dims)

    names = [name for name, *_ in layer_cuts]
    attrs_of = [ds.attrs for _, ds, *_ in layer_cuts]
    coords = {
        "layer": names,
        "cut": labels,
        "k": np.arange(1, k_max + 1),
        "kind": ("layer", [a.get("kind", "") for a in attrs_of]),
        "shape": ("layer", ["x".join(str(d) for d in ds["weight"].shape)
                            for _, ds, *_ in layer_cuts]),
        "legs": ("layer", [",".join(layout.names) for _, _, layout, _ in layer_cuts]),
        "n_params": ("layer", [int(ds["weight"].size) for _, ds, *_ in layer_cuts]),
        "depth": ("layer", list(range(n_layers))),
    }
    data_vars = {
        "singular_values": (("layer", "cut", "k"), sv,
                            {"long_name": "singular value", "units": "weight units"}),
        "norm_loss": (("layer", "cut", "k"), nl,
                      {"long_name": "norm loss when keeping k singular values",
                       "units": "1"}),
        "entropy": (("layer", "cut"), scalars["entropy"],
                    {"long_name": "von Neumann entropy", "units": "nats"}),
        "renyi2": (("layer", "cut"), scalars["renyi2"],
                   {"long_name": "Renyi-2 entropy", "units": "nats"}),
        "effective_rank": (("layer", "cut"), scalars["effective_rank"],
                           {"long_name": "effective rank exp(entropy)", "units": "1"}),
        "rank": (("layer", "cut"), scalars["rank"], {"long_name": "numerical rank"}),
        "chi_max": (("layer", "cut"), scalars["chi_max"],
                    {"long_name": "full rank of the cut"}),
    }
    attrs = provenance(
        source=str(kernels.attrs.get("source", "")),
        source_sha256=str(kernels.attrs.get("source_sha256", "")),
        kernels_sha256=_kernels_sha256(items),
        config={"legs": legs if isinstance(legs, str) else dict(legs),
                "cuts": as_cuts(cuts), "method": method},
        device=str(dev),
        seed="none (deterministic)",
    )
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
