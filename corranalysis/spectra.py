"""Spectra: singular values of every kernel across every cut, as an ``xarray.Dataset``.

Two paths compute the same numbers:

* the **reference** (``method="quimb"``): each kernel is a ``quimb.tensor.Tensor``
  with its legs as named indices, and a cut's spectrum is quimb's own
  ``Tensor.singular_values(left_inds)``;
* the **fast path** (``method="fast"``, default): for each cut the Gram matrix of
  the smaller side is formed with one matrix product and diagonalised (float64).
  On the CPU the cuts run as parallel tasks with single-threaded LAPACK each; on
  CUDA, Gram matrices of equal size are stacked across cuts and layers into one
  batched ``eigvalsh``. Squaring costs accuracy for the smallest singular values:
  those whose error estimate exceeds the tolerance (:func:`_uncertain_tail`) are
  recomputed on the matrix itself by inverse subspace iteration and Rayleigh–Ritz
  (:func:`_refine_tail`), with an SVD as the last resort. Tested to agree with the
  reference: s within 1e-6 relative (s > 1e-8 s_max), entropies within 1e-9.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import quimb.tensor as qtn
import scipy.linalg
import torch
import xarray as xr
from threadpoolctl import threadpool_info, threadpool_limits
from tqdm.auto import tqdm

from .cuts import Cut, CutsSpec, matricize, select_cuts
from .devices import resolve_device
from .errors import InputError
from .kernels import check_finite, extract_kernels, kernel_items
from .legs import LegLayout, LegsSpec, fine_grain
from .provenance import provenance

#: largest estimated relative error of a singular value from Gram eigenvalues;
#: smaller values are refined on the matrix itself (the promise is 1e-6)
GRAM_TOLERANCE = 1e-7
#: largest error bound ρ²/δ of a refined singular value, relative to the value
RITZ_TOLERANCE = 1e-9
#: rounds of 4 inverse-iteration steps before the refinement gives up for an SVD
RITZ_ROUNDS = 6
#: largest batch of stacked Gram matrices, in float64 elements (~256 MiB)
MAX_BATCH_ELEMENTS = 32 * 2**20
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
def kernel_tensor(weight: np.ndarray, layout: LegLayout, layer: str = "kernel") -> qtn.Tensor:
    """The kernel as a quimb Tensor whose indices are its (fine-grained) legs."""
    data = np.asarray(weight, dtype=np.float64).reshape(layout.sizes)
    return qtn.Tensor(data, inds=layout.names, tags={layer})


def reference_spectrum(weight: np.ndarray, layout: LegLayout, cut: Cut) -> np.ndarray:
    """Singular values of ``weight`` across ``cut``: quimb's own, descending."""
    s = kernel_tensor(weight, layout).singular_values(list(cut.left))
    return np.sort(np.asarray(s, dtype=np.float64))[::-1]


def kernel_mps(weight: np.ndarray, layout: LegLayout, **split_opts) -> qtn.MatrixProductState:
    """The kernel as a quimb MPS over its legs in order (no truncation by default).

    Its bonds are the contiguous cuts ``legs[:i] | legs[i:]``.
    """
    data = np.asarray(weight, dtype=np.float64).reshape(-1)
    split_opts.setdefault("cutoff", 0.0)
    return qtn.MatrixProductState.from_dense(data, dims=list(layout.sizes), **split_opts)


def bond_spectra(mps: qtn.MatrixProductState) -> list[np.ndarray]:
    """Singular values across each bond i = 1..L-1 of ``mps`` (quimb, descending)."""
    return [np.sort(np.asarray(mps.singular_values(i), dtype=np.float64))[::-1]
            for i in range(1, mps.L)]


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


def _gram(matrix):
    """``(A A^T, A)`` with ``A`` the matrix or its transpose, whichever side is smaller."""
    a = matrix if matrix.shape[0] <= matrix.shape[1] else matrix.T
    return a @ a.T, a


def _uncertain_tail(lam: np.ndarray, d: int) -> int:
    """How many trailing Gram eigenvalues ``lam`` (descending) may miss the tolerance.

    A Gram eigenvalue carries an absolute error of about ``d · eps · λ_max``, so
    s_k = sqrt(λ_k) has relative error about ``d·eps·λ_max / (2 λ_k)``; values above
    1e-8·s_max whose estimate exceeds :data:`GRAM_TOLERANCE` are uncertain, and with
    them every smaller one.
    """
    top = lam[0]
    if top <= 0.0:
        return 0
    worst = d * np.finfo(np.float64).eps * top / (2.0 * np.maximum(lam, np.finfo(np.float64).tiny))
    bad = np.flatnonzero((worst > GRAM_TOLERANCE) & (lam > 1e-16 * top))
    return 0 if bad.size == 0 else len(lam) - int(bad[0])


def _refine_tail(a: np.ndarray, gram: np.ndarray, lam: np.ndarray, n_tail: int):
    """The ``n_tail`` smallest singular values of ``a`` (d × D), accurate, or None.

    Inverse subspace iteration on the (shifted) Gram matrix finds the subspace of
    the smallest singular vectors; Rayleigh–Ritz on ``a`` itself — not on its Gram
    matrix — then gives singular values accurate to about eps·s_max. A Ritz value
    σ with residual ρ = ‖a u − σ v‖/√2 lies within ρ²/δ of a singular value, δ
    being its distance to the other values (and to 0); it is accepted when that
    bound is below :data:`RITZ_TOLERANCE`·σ. None means "use a full SVD".
    """
    d = gram.shape[0]
    p = min(d, 2 * n_tail + 8)
    if 4 * p > d:
        return None
    shift = d * np.finfo(np.float64).eps * lam[0]  # above the Gram error: positive definite
    try:
        factor = scipy.linalg.cho_factor(gram + shift * np.eye(d), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    x = np.random.default_rng(0).standard_normal((d, p))
    floor = 1e-8 * np.sqrt(lam[0])  # values below it are not promised
    for _ in range(RITZ_ROUNDS):
        for _ in range(4):
            x, _ = np.linalg.qr(scipy.linalg.cho_solve(factor, x, check_finite=False))
        u, s, wt = np.linalg.svd(a.T @ x, full_matrices=False)  # Ritz values of a on span(x)
        rho = np.linalg.norm(a @ u - (x @ wt.T) * s, axis=0) / np.sqrt(2.0)
        neighbours = np.abs(s[:, None] - np.append(s, 0.0)[None, :])
        neighbours[np.arange(p), np.arange(p)] = np.inf
        delta = neighbours.min(axis=1)
        tail, rho, delta = s[-n_tail:], rho[-n_tail:], delta[-n_tail:]
        scale = np.maximum(tail, floor)
        if np.all(rho < delta / 2) and np.all(rho**2 / delta <= RITZ_TOLERANCE * scale):
            # the Ritz values must be the values the Gram eigenvalues approximate
            gap = np.abs(tail**2 - np.clip(lam[-n_tail:], 0.0, None))
            return tail if np.all(gap <= 2 * shift + 1e-3 * tail**2) else None
    return None


def _from_gram(matrix, gram, lam: np.ndarray) -> np.ndarray:
    """Singular values of ``matrix`` from its Gram eigenvalues ``lam`` (descending).

    Certain values are sqrt(λ); an uncertain tail (:func:`_uncertain_tail`) is
    recomputed by :func:`_refine_tail`, or the whole spectrum by SVD where that fails.
    """
    s = np.sqrt(np.clip(lam, 0.0, None))
    n_tail = _uncertain_tail(lam, len(lam))
    if n_tail == 0:
        return s
    if isinstance(matrix, torch.Tensor):  # the refinement runs on the CPU
        matrix, gram = matrix.cpu().numpy(), gram.cpu().numpy()
    a = matrix if matrix.shape[0] <= matrix.shape[1] else matrix.T
    tail = _refine_tail(a, gram, lam, n_tail)
    if tail is None:
        return np.linalg.svd(matrix, compute_uv=False)
    s[-n_tail:] = tail
    return s


def _cut_spectrum(matrix: np.ndarray) -> np.ndarray:
    """Singular values of one matricised kernel (NumPy): Gram eigenvalues, refined tail."""
    if min(matrix.shape) == 1:
        return np.array([float(np.linalg.norm(matrix))])
    gram, _ = _gram(matrix)
    return _from_gram(matrix, gram, np.linalg.eigvalsh(gram)[::-1])


def _reduced_key(job: _Job) -> tuple:
    """Cuts whose sides differ only by size-1 legs have the same matrix: one key."""
    sizes = dict(zip(job.layout.names, job.layout.sizes, strict=True))
    left = tuple(leg for leg in job.cut.left if sizes[leg] > 1)
    right = tuple(leg for leg in job.cut.right if sizes[leg] > 1)
    if left and right and left[0] > right[0]:
        left, right = right, left
    return (id(job.weight), left, right) if left and right else (id(job.weight), "trivial")


def _matrix(job: _Job):
    return matricize(job.weight, job.layout.names, job.layout.sizes, job.cut)


def _spectra_cpu(groups: list[list[_Job]], finish: Callable) -> None:
    """NumPy on the CPU: one task per distinct cut matrix, largest first, on a pool of
    threads each running single-threaded BLAS/LAPACK (the reductions in ``eigvalsh``
    use one core poorly, two at once use both)."""
    def size(group):
        rows, cols = group[0].dims
        return min(rows, cols) ** 2 * max(rows, cols)

    groups = sorted(groups, key=size, reverse=True)
    threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
                  default=1)
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        # matricised inside the task: memory holds one matrix per thread
        futures = {pool.submit(lambda job: _cut_spectrum(_matrix(job)), group[0]): group
                   for group in groups}
        for future in as_completed(futures):
            finish(futures[future], future.result())


def _spectra_torch(groups: list[list[_Job]], finish: Callable) -> None:
    """Torch on the device: Gram matrices of equal size are stacked across cuts and
    layers and diagonalised in one batched ``eigvalsh`` call."""
    by_size: dict[int, list] = defaultdict(list)
    for group in groups:
        matrix = _matrix(group[0])
        if min(matrix.shape) == 1:
            finish(group, np.array([float(torch.linalg.vector_norm(matrix))]))
            continue
        gram, _ = _gram(matrix)
        by_size[gram.shape[0]].append((group, gram))
    for d, items in by_size.items():
        step = max(1, MAX_BATCH_ELEMENTS // (d * d))
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            evals = torch.linalg.eigvalsh(torch.stack([g for _, g in chunk])).flip(-1).cpu().numpy()
            for (group, gram), lam in zip(chunk, evals, strict=True):
                finish(group, _from_gram(_matrix(group[0]), gram, lam))


def _fast_spectra(jobs: list[_Job], progress: Callable[[int], None]) -> dict:
    """Spectra of all ``jobs``, each distinct matrix computed once."""
    out: dict[tuple[int, int], np.ndarray] = {}
    by_key: dict[tuple, list[_Job]] = defaultdict(list)
    for job in jobs:
        by_key[_reduced_key(job)].append(job)

    def finish(group: list[_Job], s: np.ndarray) -> None:
        for job in group:
            out[job.key] = s
        progress(len(group))

    groups = list(by_key.values())
    if isinstance(jobs[0].weight, torch.Tensor):
        _spectra_torch(groups, finish)
    else:
        _spectra_cpu(groups, finish)
    return out


# --------------------------------------------------------------------------- dataset
def _layer_cuts(name: str, layout: LegLayout, cuts: CutsSpec) -> tuple[list[Cut], list]:
    """Cuts of one layer; explicit labels that do not fit this layer are skipped."""
    if isinstance(cuts, str) and "|" not in cuts:
        return select_cuts(layout.names, cuts), []  # "all", "contiguous", or an error
    labels = [cuts] if isinstance(cuts, str) else list(cuts)
    found, errors = [], []
    for label in labels:
        try:
            found.extend(select_cuts(layout.names, [label]))
        except InputError as exc:
            errors.append(exc)
    return found, errors


def _kernels_sha256(items: Sequence[tuple[str, xr.Dataset]]) -> str:
    h = hashlib.sha256()
    for name, ds in items:
        h.update(name.encode())
        h.update(np.ascontiguousarray(ds["weight"].values, dtype=np.float64).tobytes())
    return h.hexdigest()


def compute_spectra(
    kernels,
    legs: LegsSpec = "natural",
    cuts: CutsSpec = "all",
    device: str = "auto",
    method: str = "fast",
    progress: bool = False,
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

    Returns
    -------
    xarray.Dataset with dims ``(layer, cut, k)``: ``singular_values``, ``norm_loss``
    (NaN-padded along ``k``, 1-based), and ``entropy``, ``renyi2``,
    ``effective_rank``, ``rank``, ``chi_max`` per ``(layer, cut)``.
    """
    if method not in METHODS:
        raise InputError(f"method={method!r} is unknown; valid: {', '.join(METHODS)}")
    if not isinstance(kernels, xr.DataTree):
        kernels = extract_kernels(kernels)
    items = kernel_items(kernels)
    if not items:
        raise InputError("kernels tree holds no layers; select at least one layer")
    dev = resolve_device(device) if method == "fast" else torch.device("cpu")

    layer_cuts: list[tuple[str, xr.Dataset, LegLayout, list[Cut]]] = []
    all_errors: list[InputError] = []
    for name, ds in items:
        weight = ds["weight"]
        check_finite(name, weight.values)
        layout = fine_grain(list(weight.dims), weight.shape, legs)
        chosen, errors = _layer_cuts(name, layout, cuts)
        all_errors.extend(errors)
        layer_cuts.append((name, ds, layout, chosen))
    if not any(chosen for *_, chosen in layer_cuts):
        raise all_errors[0] if all_errors else InputError(f"cuts={cuts!r} select no cut")

    labels: list[str] = []
    for *_, chosen in layer_cuts:
        for cut in chosen:
            if cut.label not in labels:
                labels.append(cut.label)
    cut_index = {label: j for j, label in enumerate(labels)}

    jobs = []
    for i, (_, ds, layout, chosen) in enumerate(layer_cuts):
        # CPU: NumPy's LAPACK (robust under load); CUDA: torch on the device
        w = np.ascontiguousarray(ds["weight"].values, dtype=np.float64)
        if dev.type != "cpu":
            w = torch.as_tensor(w).to(dev)
        for cut in chosen:
            jobs.append(_Job((i, cut_index[cut.label]), w, layout, cut))

    bar = tqdm(total=len(jobs), desc="spectra", unit="cut", disable=not progress)
    with torch.no_grad():
        if method == "fast":
            spectra = _fast_spectra(jobs, bar.update)
        else:
            spectra = {}
            for job in jobs:
                spectra[job.key] = reference_spectrum(job.weight, job.layout, job.cut)
                bar.update(1)
    bar.close()

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
                "cuts": cuts if isinstance(cuts, str) else list(cuts), "method": method},
        device=str(dev),
        seed="none (deterministic)",
    )
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
