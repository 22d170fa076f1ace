"""Truncation of kernels along cuts, keep specs, plans and the ``truncated`` context manager.

A *truncation* projects a kernel W onto its top-χ singular subspace across a cut
(W̃ = U_χ S_χ V_χᵀ of the cut's matricisation). Several cuts are applied in the
order given, each to the result of the previous one. The SVD is computed in
float64 (numpy or torch, on the kernel's device); W̃ comes back in the kernel's
dtype, on its device.

A *keep spec* says how much to keep at one cut: ``chi=N`` (1 ≤ N ≤ χ_max),
``frac=f`` (0 < f ≤ 1, χ = ⌈f·χ_max⌉) or ``loss=ε`` (0 ≤ ε < 1, the smallest χ
whose norm loss Σ_{k>χ} s_k²/Σ s² is ≤ ε).

A *data-aware* truncation (``truncate(..., gram=C)``, plan entries with
``truncation: data-aware``) works on the cut ``out|rest`` only: with ``C`` the layer's
input Gram (:func:`corranalysis.runtime.input_grams`), it keeps the top-χ eigenvectors
U_χ of the output covariance ``W C Wᵀ`` and returns W̃ = U_χ U_χᵀ W, the rank-χ kernel
of least output error ‖(W̃ − W) ⋆ X‖² (the SVD of the kernel whitened by C^½). W̃ is
an orthogonal projection of W's output space, so its norm loss is still
1 − ‖W̃‖²/‖W‖²; ``loss=ε`` here budgets the *output error* on ``C``.

A *plan* maps layer names to ``{"cuts": [...], "keep": spec}`` (keep shared by
the cuts or one per cut, optional ``legs`` and ``truncation``); :func:`truncated`
applies one to a model in place and restores the exact original weights on exit. A plan's
cuts name each layer's legs as the layer stores them and spectra name them
(:func:`corranalysis.kernels.module_legs`): ``out|in,kh,kw`` for a Conv2d, ``in|out,kh,kw``
for a ConvTranspose2d, ``token|dim`` for an Embedding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from .errors import InputError, check_opt
from .io import read_yaml
from .kernels import (
    CUT_MODES,
    Cut,
    LegLayout,
    LegsSpec,
    as_cuts,
    check_finite,
    fine_grain,
    kernel_modules,
    make_cut,
    matricize,
    module_kind,
    module_legs,
    natural_legs,
    parse_cut,
    select_cuts,
    unmatricize,
)
from .spectra import norm_loss_curve, numerical_rank

KeepKind = Literal["chi", "frac", "loss"]
KEEP_KINDS: tuple[str, ...] = ("chi", "frac", "loss")
#: how a cut is truncated: the best rank-χ kernel (``svd``) or the one of least output
#: error on the layer's inputs (``data-aware``, cut ``out|rest`` only)
TRUNCATIONS: tuple[str, ...] = ("svd", "data-aware")
# Norm losses within this of the budget count as inside it (float64 round-off).
_LOSS_SLACK = 1e-12


@dataclass(frozen=True)
class KeepSpec:
    """How much of a cut's spectrum to keep: ``chi=N``, ``frac=f`` or ``loss=ε``."""

    kind: KeepKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KEEP_KINDS:
            raise InputError(f"keep spec kind {self.kind!r} is unknown; valid: chi, frac, loss")
        v = self.value
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise InputError(f"keep spec {self.kind}={v!r}: the value must be a finite number")
        if self.kind == "chi" and (v != int(v) or v < 1):
            raise InputError(f"keep spec chi={v:g}: chi must be an integer >= 1")
        if self.kind == "frac" and not 0 < v <= 1:
            raise InputError(f"keep spec frac={v:g}: frac must be in (0, 1]")
        if self.kind == "loss" and not 0 <= v < 1:
            raise InputError(f"keep spec loss={v:g}: the norm-loss budget must be in [0, 1)")
        if self.kind == "chi":
            object.__setattr__(self, "value", int(v))

    @classmethod
    def parse(cls, spec: KeepLike) -> KeepSpec:
        """A KeepSpec from ``"chi=40"``, ``"frac=0.5"``, ``"loss=0.1"``, a dict or a KeepSpec."""
        if isinstance(spec, KeepSpec):
            return spec
        if isinstance(spec, Mapping) and len(spec) == 1:
            ((kind, value),) = spec.items()
            return cls(str(kind).strip().lower(), value)  # type: ignore[arg-type]
        text = str(spec).strip()
        kind, sep, value = text.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in KEEP_KINDS:
            raise InputError(
                f"keep spec {spec!r} is malformed; write chi=N (1 <= N <= chi_max), "
                "frac=f (0 < f <= 1) or loss=e (0 <= e < 1)"
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"keep spec {spec!r}: {value.strip()!r} is not a number") from None
        if kind == "chi" and math.isfinite(number) and number == int(number):
            number = int(number)
        return cls(kind, number)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return f"{self.kind}={self.value:g}" if self.kind != "chi" else f"chi={self.value}"

    def __str__(self) -> str:
        return self.label

    def check(self, chi_max: int, where: str = "") -> None:
        """InputError unless this spec fits a cut of rank ``chi_max`` (``chi=N`` needs
        N ≤ χ_max; ``frac`` and ``loss`` always fit): the one home of that check."""
        if self.kind == "chi" and self.value > chi_max:
            raise InputError(f"keep spec {self.label}{where} exceeds chi_max: chi must be "
                             f"<= chi_max = {chi_max}; use a smaller chi or a frac= spec")

    def chi(self, s: np.ndarray | None, chi_max: int, where: str = "") -> int:
        """χ this spec keeps for singular values ``s`` (descending) of a cut of rank ``chi_max``
        (``s`` is only read by ``loss=``); ``frac=f`` keeps ⌈f·χ_max⌉, at least 1."""
        self.check(chi_max, where)
        if self.kind == "chi":
            return int(self.value)
        if self.kind == "frac":
            return max(1, min(chi_max, math.ceil(self.value * chi_max - 1e-9)))
        losses = norm_loss_curve(s)
        ok = np.nonzero(losses <= self.value + _LOSS_SLACK)[0]
        return int(ok[0]) + 1 if ok.size else chi_max


KeepLike = KeepSpec | str | Mapping[str, float]


@dataclass(frozen=True)
class TruncationMetrics:
    """What a truncation did to one kernel.

    ``chi``/``chi_max``/``cut_losses`` are per cut in order (each cut's loss relative
    to the kernel it received); ``norm_loss`` = 1 − ‖W̃‖²/‖W‖² overall; ``rel_error``
    = ‖W − W̃‖/‖W‖; ``fidelity`` = ⟨W, W̃⟩/(‖W‖‖W̃‖); ``params_factorized`` is the
    parameter count of the cheapest two-factor form A·B of W̃ across one of the cuts
    (χ·(dim A + dim B), using W̃'s numerical rank at earlier cuts); ``params_dense``
    the kernel's size.
    """

    cuts: tuple[str, ...]
    chi: tuple[int, ...]
    chi_max: tuple[int, ...]
    cut_losses: tuple[float, ...]
    norm_loss: float
    rel_error: float
    fidelity: float
    params_factorized: int
    params_dense: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


class Truncation(NamedTuple):
    """The truncated kernel (kernel's dtype and device) and its metrics."""

    weight: Any
    metrics: TruncationMetrics


# --------------------------------------------------------------------------- helpers


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _to64(weight: Any) -> Any:
    if _is_torch(weight):
        return weight.detach().to(torch.float64)
    return np.asarray(weight, dtype=np.float64)


def _svd(matrix: Any) -> tuple[Any, np.ndarray, Any]:
    """Thin SVD (U, s as float64 numpy, Vh) of a float64 numpy array or torch tensor."""
    if _is_torch(matrix):
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        return u, s.cpu().numpy(), vh
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    return u, s, vh


def _norm(x: Any) -> float:
    return float(torch.linalg.vector_norm(x)) if _is_torch(x) else float(np.linalg.norm(x))


def _inner(a: Any, b: Any) -> float:
    return float((a * b).sum())


def parse_keeps(keeps: KeepLike | Sequence[KeepLike] | None) -> list[KeepSpec] | None:
    """Keep specs in their one typed form: a list of :class:`KeepSpec` (None for None or
    ``"default"``). Accepts one spec, a string of specs separated by ``,`` or ``;``, or a
    sequence of specs."""
    if keeps is None or keeps == "default":
        return None
    if isinstance(keeps, str):
        keeps = [k for k in keeps.replace(";", ",").split(",") if k.strip()]
    elif isinstance(keeps, (KeepSpec, Mapping)) or not isinstance(keeps, Sequence):
        keeps = [keeps]
    out = [KeepSpec.parse(k) for k in keeps]
    if not out:
        raise InputError("keeps: give at least one keep spec, e.g. frac=0.5,loss=0.1")
    return out


def _as_keeps(keep: KeepLike | Sequence[KeepLike], n: int) -> list[KeepSpec]:
    keeps = parse_keeps(keep) or []
    if len(keeps) == 1:
        return keeps * n
    if len(keeps) != n:
        raise InputError(
            f"keep: got {len(keeps)} keep specs for {n} cuts; give one shared spec or one per cut"
        )
    return keeps


def layout_of(shape: Sequence[int], legs: LegsSpec = "natural", *,
              transposed: bool = False, kind: str | None = None) -> LegLayout:
    """The (fine-grained) leg layout of a kernel of ``shape`` whose natural legs are
    :func:`~corranalysis.kernels.natural_legs` ``(len(shape), transposed=, kind=)``:
    ``out, in, *spatial``; ``in, out, *spatial`` for a transposed convolution
    (``transposed=True`` or a ``conv_transpose*`` kind); ``token, dim`` for an embedding
    (``kind="embedding"``)."""
    return fine_grain(natural_legs(len(shape), transposed=transposed, kind=kind),
                      tuple(int(n) for n in shape), legs)


def module_layout(module: nn.Module, legs: LegsSpec = "natural") -> LegLayout:
    """The (fine-grained) leg layout of a layer's kernel, its legs named as the layer
    stores them (:func:`~corranalysis.kernels.module_legs`): the one way truncation, plans
    and sweeps name a module's legs, as spectra do."""
    return fine_grain(module_legs(module), tuple(int(n) for n in module.weight.shape), legs)


def parse_cuts(cuts: str | Cut | Sequence[str | Cut], layout: LegLayout,
               where: str = "") -> list[Cut]:
    """Canonical cuts from one label / Cut or a sequence (``;`` also separates labels)."""
    if isinstance(cuts, (str, Cut)):
        cuts = [cuts]
    if not isinstance(cuts, Sequence) or not all(isinstance(c, (str, Cut)) for c in cuts):
        raise InputError(f"{where}cuts {cuts!r} are not cut labels; give labels such as "
                         f"'out|in' (legs: {', '.join(layout.names)})")
    out: list[Cut] = []
    for item in cuts:
        labels = item.split(";") if isinstance(item, str) else [item]
        for label in labels:
            text = label.label if isinstance(label, Cut) else label
            try:
                out.append(parse_cut(text, layout.names))
            except InputError as exc:
                raise InputError(f"{where}{exc}") from None
    if not out:
        raise InputError(f"{where}no cut given; valid legs: {', '.join(layout.names)}")
    return out


def cut_dims(layout: LegLayout, cut: Cut) -> tuple[int, int]:
    """(dim A, dim B) of the matrix of ``cut``."""
    return layout.size_of(cut.left), layout.size_of(cut.right)


@dataclass
class _CutSVD:
    """A cached SVD of a kernel across one cut (float64)."""

    u: Any
    s: np.ndarray
    vh: Any


def _low_rank(svd: _CutSVD, chi: int, matrix: Callable[[], Any]) -> Any:
    """The best rank-``chi`` approximation ``U_χ S_χ V_χᵀ`` of ``matrix()``, from its SVD.

    Where fewer values are discarded than kept, it is formed as the matrix minus
    its discarded part (fewer operations; the same to float64 rounding).
    """
    s = svd.s if not _is_torch(svd.u) else torch.as_tensor(svd.s, device=svd.u.device)
    if len(svd.s) - chi < chi:
        return matrix() - (svd.u[:, chi:] * s[chi:]) @ svd.vh[chi:]
    return (svd.u[:, :chi] * s[:chi]) @ svd.vh[:chi]


def _numerical_rank(matrix: Any) -> int:
    return numerical_rank(_svd(matrix)[1], tuple(matrix.shape))


def truncate(
    weight: Any,
    cuts: str | Cut | Sequence[str | Cut],
    keep: KeepLike | Sequence[KeepLike],
    legs: LegsSpec = "natural",
    *,
    transposed: bool = False,
    kind: str | None = None,
    gram: Any = None,
    _svd_cache: dict | None = None,
) -> Truncation:
    """Truncate ``weight`` along ``cuts`` (in order) keeping ``keep`` at each.

    ``weight``: a kernel ``(out, in, *spatial)`` as a torch tensor (any device) or a
    numpy array. ``cuts``: one cut label (``"out|in,kh,kw"``) or a sequence applied in
    order. ``keep``: one keep spec shared by the cuts, or one per cut. ``legs``:
    fine-graining of the natural legs (see :func:`corranalysis.kernels.fine_grain`);
    ``transposed``: the kernel is a transposed convolution's, ``(in, out, *spatial)``;
    ``kind``: the layer's kind (:func:`~corranalysis.kernels.module_kind`), naming its legs
    (``kind="embedding"``: ``token, dim``; see :func:`layout_of`).
    ``gram``: the layer's input Gram ``(D, D)`` (D = the product of the input legs):
    truncate data-aware instead (see module doc; one cut, ``out|rest``, of a kernel stored
    out-first: Linear or Conv).
    Returns ``(weight, metrics)``: the truncated kernel in ``weight``'s dtype and
    device, and a :class:`TruncationMetrics`. A cut kept at χ = χ_max is the identity.
    """
    if not (_is_torch(weight) or isinstance(weight, np.ndarray)):
        weight = np.asarray(weight)
    shape = tuple(int(n) for n in weight.shape)
    if len(shape) < 2 or 0 in shape:
        raise InputError(f"weight of shape {shape}: a kernel needs at least 2 dims, none empty")
    if weight.dtype.is_complex if _is_torch(weight) else np.iscomplexobj(weight):
        raise InputError(f"weight of dtype {weight.dtype} is complex; give a real kernel")
    if keep is None:
        raise InputError("keep is missing; give chi=N (1 <= N <= chi_max), frac=f (0 < f <= 1) "
                         "or loss=e (0 <= e < 1)")
    layout = layout_of(shape, legs, transposed=transposed, kind=kind)
    cut_list = parse_cuts(cuts, layout)
    keeps = _as_keeps(keep, len(cut_list))
    if _svd_cache is None or (w0 := _svd_cache.get("float64")) is None:
        w0 = _to64(weight)
        check_finite("weight", w0)
        if _svd_cache is not None:
            _svd_cache["float64"] = w0
    if gram is not None:
        return _truncate_aware(weight, w0, layout, cut_list, keeps[0], gram, _svd_cache)
    w = w0
    chis: list[int] = []
    chi_maxes: list[int] = []
    losses: list[float] = []
    changed = False
    for i, (cut, spec) in enumerate(zip(cut_list, keeps, strict=True)):
        rows, cols = cut_dims(layout, cut)
        chi_max = min(rows, cols)
        spec.check(chi_max, where=f" at cut {cut.label!r}")
        if spec.kind == "frac" and spec.value == 1:
            chis.append(chi_max)
            chi_maxes.append(chi_max)
            losses.append(0.0)
            continue
        key = layout.squeezed(cut.left)  # equivalent cuts share one matrix and its SVD
        if i == 0 and _svd_cache is not None and key in _svd_cache:
            svd = _svd_cache[key]
        else:
            svd = _CutSVD(*_svd(matricize(w, layout.names, layout.sizes, cut)))
            if i == 0 and _svd_cache is not None:
                _svd_cache[key] = svd
        chi = spec.chi(svd.s, chi_max, where=f" at cut {cut.label!r}")
        chis.append(chi)
        chi_maxes.append(chi_max)
        losses.append(float(norm_loss_curve(svd.s)[chi - 1]) if len(svd.s) else 0.0)
        if chi >= chi_max:
            continue
        m = _low_rank(svd, chi, partial(matricize, w, layout.names, layout.sizes, cut))
        w = unmatricize(m, layout.names, layout.sizes, cut, shape)
        changed = True

    norm_loss = 1.0 - float(np.prod([1.0 - x for x in losses]))
    if not changed:
        rel_error, fidelity = 0.0, 1.0
    elif len(cut_list) == 1:  # one cut: both follow from the singular values
        rel_error, fidelity = math.sqrt(losses[0]), math.sqrt(1.0 - losses[0])
    else:
        n0, nw = _norm(w0), _norm(w)
        rel_error = _norm(w0 - w) / n0 if n0 > 0 else 0.0
        fidelity = _inner(w0, w) / (n0 * nw) if n0 > 0 and nw > 0 else 0.0
    # parameter count of the cheapest two-factor form across one of the cuts
    ranks = list(chis)
    for i, cut in enumerate(cut_list[:-1]):
        if changed and i < len(cut_list) - 1:
            ranks[i] = min(chis[i], _numerical_rank(matricize(w, layout.names, layout.sizes, cut)))
    params = min(r * sum(cut_dims(layout, c)) for r, c in zip(ranks, cut_list, strict=True))
    metrics = TruncationMetrics(
        cuts=tuple(c.label for c in cut_list), chi=tuple(chis), chi_max=tuple(chi_maxes),
        cut_losses=tuple(losses), norm_loss=max(0.0, norm_loss), rel_error=rel_error,
        fidelity=min(1.0, fidelity), params_factorized=int(params),
        params_dense=int(np.prod(shape)),
    )
    return Truncation(_as_kernel(weight, w if changed else None), metrics)


def _as_kernel(weight: Any, w: Any | None) -> Any:
    """``w`` (float64) in ``weight``'s type and dtype; a copy of ``weight`` when None
    (nothing was truncated)."""
    if w is None:
        return weight.detach().clone() if _is_torch(weight) else np.array(weight, copy=True)
    return w.to(weight.dtype) if _is_torch(weight) else np.asarray(w, dtype=weight.dtype)


def _out_covariance(w0: Any, gram: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, ≥ 0) and eigenvectors of ``W C Wᵀ`` (float64 numpy)."""
    m = np.asarray(w0.cpu().numpy() if _is_torch(w0) else w0).reshape(w0.shape[0], -1)
    c = np.asarray(gram.detach().cpu().numpy() if _is_torch(gram) else gram, dtype=np.float64)
    if c.shape != (m.shape[1], m.shape[1]):
        raise InputError(f"gram of shape {c.shape} does not fit {where}: expected "
                         f"({m.shape[1]}, {m.shape[1]}), the input Gram of this layer")
    if not np.isfinite(c).all():
        raise InputError("gram holds NaN or infinite values; recompute the input Gram")
    mu, u = np.linalg.eigh(m @ c @ m.T)
    return np.clip(mu[::-1], 0.0, None), u[:, ::-1]


def aware_cut(layout: LegLayout) -> Cut | None:
    """The cut a data-aware truncation works on: the output legs against the input legs,
    ``out|in,kh,kw`` (``out.0,out.1|...`` when fine-grained), for a kernel stored out-first
    (Linear, Conv); None for a transposed convolution's ``in, out, ...`` or an embedding's
    ``token, dim``."""
    if layout.names[0].split(".")[0] != "out":
        return None
    return make_cut(layout.names, [n for n in layout.names if n.split(".")[0] == "out"])


def _truncate_aware(weight: Any, w0: Any, layout: LegLayout, cut_list: Sequence[Cut],
                    spec: KeepSpec, gram: Any, cache: dict | None) -> Truncation:
    """The data-aware truncation W̃ = U_χ U_χᵀ W (module doc) on the cut ``out|rest``."""
    if len(cut_list) != 1 or cut_list[0] != aware_cut(layout):
        got = ";".join(c.label for c in cut_list)
        legs = ", ".join(dict.fromkeys(n.split(".")[0] for n in layout.names))
        raise InputError(f"data-aware truncation works on one cut, out|rest (output legs "
                         f"against input legs) of a kernel stored out-first (Linear, Conv); "
                         f"got {got!r} on a kernel with legs {legs}")
    cut = cut_list[0]
    rows, cols = cut_dims(layout, cut)
    chi_max = min(rows, cols)
    spec.check(chi_max, where=f" at cut {cut.label!r}")
    key = ("data-aware", id(gram))
    if cache is not None and key in cache:
        mu, u = cache[key]
    else:
        mu, u = _out_covariance(w0, gram, f"a kernel of shape {tuple(w0.shape)}")
        if cache is not None:
            cache[key] = (mu, u)
    chi = spec.chi(np.sqrt(mu[:chi_max]), chi_max, where=f" at cut {cut.label!r}")
    shape = tuple(w0.shape)
    m = w0.reshape(shape[0], -1)
    if chi < chi_max:
        uk = u[:, :chi]
        if _is_torch(m):
            uk = torch.as_tensor(np.ascontiguousarray(uk), device=m.device)
        w = (uk @ (uk.T @ m)).reshape(shape)
        n0 = _norm(w0)
        loss = max(0.0, 1.0 - (_norm(w) / n0) ** 2) if n0 > 0 else 0.0
    else:
        w, loss = w0, 0.0
    metrics = TruncationMetrics(
        cuts=(cut.label,), chi=(chi,), chi_max=(chi_max,), cut_losses=(loss,), norm_loss=loss,
        rel_error=math.sqrt(loss), fidelity=math.sqrt(1.0 - loss),
        params_factorized=int(chi * (rows + cols)), params_dense=int(np.prod(shape)))
    return Truncation(_as_kernel(weight, w if chi < chi_max else None), metrics)


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class PlanEntry:
    """What to do to one layer: ``cuts`` in order, one keep per cut, optional fine-graining.

    ``transposed`` and ``kind`` say how the layer names its kernel's legs (see
    :func:`layout_of`); :meth:`of` fills them from the module. Neither is written by
    :meth:`as_dict` beyond ``transposed: true`` (plan files name layers, and
    :func:`resolve_plan` reads both off the model).
    """

    cuts: tuple[str, ...]
    keeps: tuple[KeepSpec, ...]
    legs: Any = "natural"
    #: the kernel is a transposed convolution's, stored ``(in, out, *spatial)``
    transposed: bool = False
    #: ``svd`` or ``data-aware`` (see :data:`TRUNCATIONS`)
    truncation: str = "svd"
    #: the layer's kind (:func:`~corranalysis.kernels.module_kind`): ``embedding`` names the
    #: legs ``token, dim``; None: ``out, in, *spatial`` (or ``in, out, ...`` if transposed)
    kind: str | None = None

    @classmethod
    def of(cls, module: nn.Module, cuts: Sequence[str], keeps: Sequence[KeepSpec],
           legs: Any = "natural", truncation: str = "svd") -> PlanEntry:
        """The entry for ``module``'s kernel, its legs named as the module stores them."""
        kind = module_kind(module)
        return cls(tuple(cuts), tuple(keeps), legs, module_legs(module)[0] == "in",
                   truncation, kind)

    def layout(self, shape: Sequence[int]) -> LegLayout:
        """The leg layout of this entry's kernel of ``shape``."""
        return layout_of(shape, self.legs, transposed=self.transposed, kind=self.kind)

    def truncate(self, weight: Any, *, gram: Any = None,
                 _svd_cache: dict | None = None) -> Truncation:
        """:func:`truncate` ``weight`` as this entry says (``gram``: data-aware entries)."""
        return truncate(weight, self.cuts, self.keeps, self.legs, transposed=self.transposed,
                        kind=self.kind, gram=gram, _svd_cache=_svd_cache)

    def as_dict(self) -> dict[str, Any]:
        keep: Any = self.keeps[0].label if len(set(self.keeps)) == 1 else [
            k.label for k in self.keeps]
        out: dict[str, Any] = {"cuts": list(self.cuts), "keep": keep}
        if self.legs != "natural":
            out["legs"] = self.legs
        if self.transposed:
            out["transposed"] = True
        if self.truncation != "svd":
            out["truncation"] = self.truncation
        return out


@dataclass(frozen=True)
class Plan:
    """A truncation plan: layer name → :class:`PlanEntry`, in forward order."""

    entries: dict[str, PlanEntry] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def items(self):
        return self.entries.items()

    def as_dict(self) -> dict[str, Any]:
        return {name: e.as_dict() for name, e in self.entries.items()}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False)


PlanLike = Plan | Mapping[str, Any] | str | Path


def load_plan_file(path: str | Path) -> dict[str, Any]:
    """Read a plan file (YAML or JSON) into a mapping; InputError if it does not parse."""
    data = read_yaml(path, "plan file")
    if not isinstance(data, Mapping) or not data:
        raise InputError(
            f"plan file {str(path)!r} must map layer names to "
            "{cuts: [..], keep: 'frac=0.2'}, e.g. {features.0: {cuts: ['out|in,kh,kw'], "
            "keep: 'frac=0.2'}}"
        )
    return dict(data)


def resolve_plan(model: nn.Module, plan: PlanLike) -> Plan:
    """Validate ``plan`` against ``model``: layers exist, cuts parse, keeps are in range.

    ``plan`` is a :class:`Plan`, a mapping ``{layer: {cuts: [...], keep: spec}}``
    (``cuts`` may be ``"all"``/``"contiguous"`` or labels), or a YAML/JSON file path.
    """
    if isinstance(plan, Plan):
        raw: Mapping[str, Any] = plan.as_dict()
    elif isinstance(plan, (str, Path)):
        raw = load_plan_file(plan)
    elif isinstance(plan, Mapping):
        raw = plan
    else:
        raise InputError(f"plan {plan!r} must be a mapping, a Plan or a plan file path")
    modules = kernel_modules(model)
    entries: dict[str, PlanEntry] = {}
    order = list(modules)
    for name in raw:
        if name not in modules:
            raise InputError(
                f"plan names unknown layer {name!r}; layers with kernels: {', '.join(order)}"
            )
    for name in sorted(raw, key=order.index):
        spec = raw[name]
        if not isinstance(spec, Mapping) or "cuts" not in spec or "keep" not in spec:
            raise InputError(
                f"plan entry for layer {name!r} must be {{cuts: [..], keep: 'frac=0.2'}}, "
                f"got {spec!r}"
            )
        unknown = sorted(set(spec) - {"cuts", "keep", "legs", "transposed", "truncation"})
        if unknown:
            raise InputError(f"plan entry for layer {name!r} has unknown keys {unknown}; "
                             "valid: cuts, keep, legs, truncation")
        how = spec.get("truncation", "svd")
        check_opt(f"plan, layer {name!r}: truncation", how, TRUNCATIONS)
        legs = spec.get("legs", "natural")
        layout = module_layout(modules[name], legs)
        cuts_spec = spec["cuts"]
        if as_cuts(cuts_spec) in CUT_MODES:
            cut_list = select_cuts(layout.names, cuts_spec)
        else:
            cut_list = parse_cuts(cuts_spec, layout, where=f"plan, layer {name!r}: ")
        keeps = _as_keeps(spec["keep"], len(cut_list))
        for cut, k in zip(cut_list, keeps, strict=True):
            k.check(min(cut_dims(layout, cut)), where=f" (plan, layer {name!r}, cut "
                                                       f"{cut.label!r})")
        if how == "data-aware" and (len(cut_list) != 1 or aware_cut(layout) is None):
            raise InputError(f"plan, layer {name!r}: a data-aware truncation takes one cut, "
                             f"out|rest, of a kernel stored out-first (Linear, Conv); got "
                             f"{spec['cuts']!r} on legs {', '.join(module_legs(modules[name]))}")
        entries[name] = PlanEntry.of(modules[name], [c.label for c in cut_list], keeps, legs,
                                     how)
    return Plan(entries)


def entry_gram(name: str, entry: PlanEntry, grams: Mapping[str, Any] | None) -> Any:
    """The input Gram a plan entry needs (None for a plain truncation); InputError when a
    data-aware entry has none in ``grams``."""
    if entry.truncation != "data-aware":
        return None
    if grams is None or name not in grams:
        raise InputError(f"plan, layer {name!r}: a data-aware truncation needs the layer's "
                         "input Gram (grams=corranalysis.runtime.input_grams(model, data, "
                         "layers)); Linear, Conv1d and Conv2d layers with one group have one")
    return grams[name]


def apply_plan(model: nn.Module, plan: PlanLike,
               grams: Mapping[str, Any] | None = None) -> dict[str, TruncationMetrics]:
    """Truncate the model's kernels in place as ``plan`` says; metrics per layer.

    ``grams``: input Grams by layer, for data-aware entries. No restore: use
    :func:`truncated` for a temporary truncation.
    """
    resolved = resolve_plan(model, plan)
    modules = kernel_modules(model)
    out: dict[str, TruncationMetrics] = {}
    with torch.no_grad():
        for name, entry in resolved.items():
            param = modules[name].weight
            new, metrics = entry.truncate(param.detach(), gram=entry_gram(name, entry, grams))
            param.copy_(new)
            out[name] = metrics
    return out


def chi_plan(plan: Plan, metrics: Mapping[str, TruncationMetrics]) -> Plan:
    """``plan`` with every keep replaced by the χ it resolved to (``metrics`` of applying it)."""
    return Plan({
        name: dataclasses.replace(e, keeps=tuple(KeepSpec("chi", c) for c in metrics[name].chi))
        for name, e in plan.items()
    })


@contextlib.contextmanager
def truncated(model: nn.Module, plan: PlanLike,
              grams: Mapping[str, Any] | None = None) -> Iterator[dict[str, TruncationMetrics]]:
    """Apply ``plan`` to ``model`` in place for the ``with`` body; restore exactly on exit
    (``grams``: input Grams for data-aware entries).

    Yields the metrics per layer. The original weights are restored bit for bit on
    exit, also when the body (or the truncation itself) raises.
    """
    resolved = resolve_plan(model, plan)
    modules = kernel_modules(model)
    saved = {name: modules[name].weight.detach().clone() for name in resolved}
    try:
        yield apply_plan(model, resolved, grams)
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                modules[name].weight.copy_(original)
