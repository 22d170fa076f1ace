"""Batch-major evaluation of many weight variants of one model (the engine of sweeps).

A *variant* replaces the kernels of some layers (``{layer: weight}``). The naive way
to evaluate V variants is V full passes over the data. :func:`evaluate_variants`
instead walks the data once: for every batch it runs the unmodified network once
(torch.fx graph, node by node), keeps the values that the layers' *suffixes* need,
and for each variant re-runs only the suffix: the target layers and every node
that depends on them. Prefix nodes (all nodes that do not depend on the changed
layers, including skip branches of a ResNet) are computed once per batch. Memory
stays bounded by one batch's activations.

The suffix runs the same modules and functions on the same inputs as the eager
forward, so accuracies and losses equal those of the naive path bit for bit on
CPU. Models that torch.fx cannot trace fall back to the naive path.

*Early stopping* (``stop=StopRule(drop)``): after each batch, a variant whose accuracy
drop below the baseline exceeds ``drop`` points beyond sampling error — the paired
difference over the images seen so far, d_i = baseline correct_i − variant correct_i,
with mean(d) − z·sd(d)/√n > drop/100 — is evaluated no further. With
``StopRule(drop, within=True)`` so is a variant certain to stay within ``drop`` points of
the baseline either way: |mean(d)| + z·max(sd(d)/√n, 1/n) < drop/100 (the standard error
floored at one image, so a prefix without a single changed prediction is not taken as
certain). A stopped variant's result holds the images it saw (``EvalResult.n`` < the
data's size, ``correct`` on them) and the paired estimates accuracy = the baseline's
accuracy on all the data − mean(d), loss likewise: unbiased, with the sampling error of
the paired difference (small where few predictions change), not the full-data value.
Variants never stopped are unaffected.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from ._evaluate import EvalResult, _Acc, batches, evaluate

Variant = Mapping[str, torch.Tensor]

_INPLACE_FUNCS = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
                  operator.ifloordiv, operator.imod, operator.ipow, operator.iand,
                  operator.ior, operator.ixor, operator.ilshift, operator.irshift,
                  operator.imatmul, operator.setitem}


@torch.no_grad()
def _swap(modules: dict[str, nn.Module], variant: Variant) -> None:
    for name, weight in variant.items():
        modules[name].weight.copy_(weight)


def _paired_mean_se(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Mean and standard error of paired differences from n, Σd, Σd² (sample sd; one
    sample: se 0; no sample: NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        var = np.where(n > 1, (s2 - n * mean * mean) / (n - 1), 0.0)
        return mean, np.sqrt(np.maximum(var, 0.0) / n)


def paired_drop_beyond(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, drop: float,
                       z: float) -> np.ndarray:
    """Whether a paired accuracy drop exceeds ``drop`` points beyond ``z`` standard errors.

    From the per-sample differences d_i = baseline correct_i − variant correct_i over
    ``n`` samples, given as ``s1`` = Σd and ``s2`` = Σd²: 100·(mean(d) − z·sd(d)/√n) > drop,
    with sd the sample standard deviation (one sample: sd = 0). Vectorised; a float array
    with 1.0 (exceeds), 0.0 or NaN (no sample: undecided). The one sampling-error rule of
    the package: early stopping (:class:`StopRule`) and the tolerance rule of
    :mod:`corranalysis.linkage` use it.
    """
    n = np.asarray(n, dtype=float)
    mean, se = _paired_mean_se(n, s1, s2)
    out = 100.0 * (mean - z * se) > drop
    return np.where(n > 0, out, np.nan)


def paired_drop_within(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, drop: float,
                       z: float) -> np.ndarray:
    """Whether a paired accuracy difference stays within ``drop`` points either way beyond
    ``z`` standard errors: 100·(|mean(d)| + z·max(SE, 1/n)) < drop, with d, ``s1``, ``s2``
    as in :func:`paired_drop_beyond` and the standard error floored at one sample's worth
    (no changed prediction yet is not certainty). Vectorised; bool, False for no sample."""
    n = np.asarray(n, dtype=float)
    mean, se = _paired_mean_se(n, s1, s2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * (np.abs(mean) + z * np.maximum(se, 1.0 / n)) < drop
    return np.where(n > 0, out, False)


@dataclass(frozen=True)
class StopRule:
    """Stop evaluating a variant once its accuracy drop exceeds ``drop`` percentage points
    beyond ``z`` standard errors of the paired per-sample difference; ``within=True``:
    also once it is certain to stay within ``drop`` points of the baseline either way
    (see module doc)."""

    drop: float
    z: float = 3.0
    within: bool = False

    def __post_init__(self) -> None:
        if not (np.isfinite(self.drop) and self.drop >= 0 and np.isfinite(self.z)
                and self.z >= 0):
            raise ValueError(f"StopRule(drop={self.drop!r}, z={self.z!r}): give drop >= 0 "
                             "points and z >= 0")

    def stops(self, baseline: np.ndarray, variant: np.ndarray) -> bool:
        """Whether the per-sample correctness ``variant`` (bool ``(n,)``) shows a drop below
        ``baseline`` (same samples) beyond ``drop`` points with ``z`` standard errors
        (:func:`paired_drop_beyond`), or with ``within`` a difference certain to stay
        within ``drop`` points (:func:`paired_drop_within`); never on fewer than two
        samples."""
        n = len(variant)
        if n < 2:
            return False
        d = baseline[:n].astype(np.float64) - variant.astype(np.float64)
        s1, s2 = d.sum(), (d * d).sum()
        if paired_drop_beyond(n, s1, s2, self.drop, self.z) == 1:
            return True
        return self.within and bool(paired_drop_within(n, s1, s2, self.drop, self.z))


@torch.no_grad()
def evaluate_variants_naive(
    model: nn.Module, loader: Iterable, variants: Sequence[Variant],
    device: str | torch.device = "cpu", progress: Callable[[int], None] | None = None,
    record: bool = False,
) -> tuple[EvalResult, list[EvalResult]]:
    """Baseline and one full evaluation per variant (truncate, evaluate, restore)."""
    modules = dict(model.named_modules())
    baseline = evaluate(model, loader, device, record=record)
    out = []
    for variant in variants:
        saved = {n: modules[n].weight.detach().clone() for n in variant}
        try:
            _swap(modules, variant)
            out.append(evaluate(model, loader, device, record=record))
        finally:
            _swap(modules, saved)
        if progress:
            progress(1)
    return baseline, out


# --------------------------------------------------------------------------- fx engine


def _mutates_args(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """Whether ``node`` may modify one of its inputs in place."""
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return (node.target in _INPLACE_FUNCS or name.endswith("_") and not name.endswith("__")
                or bool(node.kwargs.get("inplace", False)))
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).endswith("__")
    if node.op == "call_module":
        return bool(getattr(modules.get(str(node.target)), "inplace", False))
    return False


@dataclass
class _Group:
    layers: tuple[str, ...]
    suffix: list[fx.Node]
    needed: list[fx.Node]
    clone_needed: set[fx.Node]  # needed values some suffix node mutates in place
    last_use: dict[fx.Node, int]  # node -> position in suffix of its last user there
    ready_at: int  # index in the graph after which the needed values all exist


class _Engine:
    def __init__(self, model: nn.Module, groups: Sequence[tuple[str, ...]]):
        self.gm = fx.symbolic_trace(model)
        self.nodes = list(self.gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.modules = dict(self.gm.named_modules())
        self.output = next(n for n in self.nodes if n.op == "output")
        self.groups = {g: self._group(g) for g in groups}
        needed_by = {}
        for g in self.groups.values():
            for n in g.needed:
                needed_by.setdefault(n, []).append(g)
        self.needed_by = needed_by
        self.mutated = {n for n in self.nodes
                        if any(_mutates_args(u, self.modules) for u in n.users)}
        self.last_user = {}
        for n in self.nodes:
            for a in n.all_input_nodes:
                self.last_user[a] = self.index[n]

    def _group(self, layers: tuple[str, ...]) -> _Group:
        targets = [n for n in self.nodes if n.op == "call_module" and n.target in layers]
        found = {n.target for n in targets}
        missing = [name for name in layers if name not in found]
        if missing:
            raise LookupError(f"layers {missing} are not called as modules in the traced graph")
        in_suffix: set[fx.Node] = set()
        stack = list(targets)
        while stack:
            n = stack.pop()
            if n in in_suffix:
                continue
            in_suffix.add(n)
            stack.extend(n.users)
        in_suffix.add(self.output)
        suffix = sorted(in_suffix, key=self.index.__getitem__)
        needed = sorted({a for s in suffix for a in s.all_input_nodes if a not in in_suffix},
                        key=self.index.__getitem__)
        clone_needed = {a for s in suffix if _mutates_args(s, self.modules)
                        for a in s.all_input_nodes if a not in in_suffix}
        last_use: dict[fx.Node, int] = {}
        for pos, s in enumerate(suffix):
            for a in s.all_input_nodes:
                last_use[a] = pos
        ready = max((self.index[n] for n in needed), default=0)
        return _Group(layers, suffix, needed, clone_needed, last_use, ready)

    def _run(self, node: fx.Node, env: Mapping[fx.Node, object], x: torch.Tensor) -> object:
        def load(a):
            return fx.node.map_arg(a, lambda n: env[n])

        if node.op == "placeholder":
            return x
        if node.op == "get_attr":
            obj = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        args, kwargs = load(node.args), load(node.kwargs)
        if node.op == "call_module":
            return self.modules[str(node.target)](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        if node.op == "output":
            return args[0]
        raise RuntimeError(f"unsupported fx node op {node.op!r}")

    def _suffix(self, g: _Group, cache: Mapping[fx.Node, object], x: torch.Tensor) -> object:
        env: dict[fx.Node, object] = {
            n: (cache[n].clone() if n in g.clone_needed and isinstance(cache[n], torch.Tensor)
                else cache[n]) for n in g.needed
        }
        out = None
        for pos, node in enumerate(g.suffix):
            value = self._run(node, env, x)
            if node is self.output:
                out = value
            else:
                env[node] = value
            for a in node.all_input_nodes:
                if g.last_use.get(a) == pos:
                    env.pop(a, None)
        return out

    @torch.no_grad()
    def batch(self, x: torch.Tensor, y: torch.Tensor, baseline: _Acc,
              variants: Mapping[tuple[str, ...], Sequence[tuple[int, Variant]]],
              accs: Sequence[_Acc], on_variant: Callable[[], None] | None) -> None:
        """Run one batch: the baseline once, every variant's suffix once."""
        env: dict[fx.Node, object] = {}
        cache: dict[fx.Node, object] = {}
        pending = {n: len(gs) for n, gs in self.needed_by.items()}
        by_ready: dict[int, list[_Group]] = {}
        for key, g in self.groups.items():
            if variants.get(key):
                by_ready.setdefault(g.ready_at, []).append(g)
            else:
                for n in g.needed:
                    pending[n] -= 1
        for i, node in enumerate(self.nodes):
            value = self._run(node, env, x)
            if node is self.output:
                baseline.add(value, y)
            else:
                env[node] = value
                if pending.get(node, 0) > 0:
                    cache[node] = (value.clone() if node in self.mutated
                                   and isinstance(value, torch.Tensor) else value)
            for a in node.all_input_nodes:
                if self.last_user.get(a) == i:
                    env.pop(a, None)
            for g in by_ready.get(i, ()):
                self._group_variants(g, variants[g.layers], cache, x, y, accs, on_variant)
                for n in g.needed:
                    pending[n] -= 1
                    if pending[n] == 0:
                        cache.pop(n, None)

    def _group_variants(self, g: _Group, items: Sequence[tuple[int, Variant]],
                        cache: Mapping[fx.Node, object], x: torch.Tensor, y: torch.Tensor,
                        accs: Sequence[_Acc], on_variant: Callable[[], None] | None) -> None:
        saved = {name: self.modules[name].weight.detach().clone() for name in g.layers}
        try:
            for idx, variant in items:
                _swap(self.modules, variant)
                accs[idx].add(self._suffix(g, cache, x), y)
                if on_variant:
                    on_variant()
        finally:
            _swap(self.modules, saved)


@torch.no_grad()
def evaluate_variants(
    model: nn.Module, loader: Iterable, variants: Sequence[Variant],
    device: str | torch.device = "cpu", method: str = "fast",
    progress: Callable[[int], None] | None = None, *, record: bool = False,
    stop: StopRule | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    """Evaluate the model's baseline and each variant ``{layer: weight}`` over ``loader``.

    ``method="fast"`` (batch-major prefix/suffix, see module doc) or ``"naive"``.
    The model must be in eval mode on ``device``; weights are restored on return.
    ``progress(n)`` is called with the number of variant-batches done. ``record=True``
    keeps per-sample correctness (``EvalResult.correct``); ``stop`` stops variants whose
    drop is already certain (fast method only; it implies ``record``).
    Returns ``(baseline, [result per variant])``.
    """
    device = torch.device(device)
    if stop is not None and method != "fast":
        raise ValueError("early stopping needs method='fast'")
    if method == "naive" or not variants:
        if not variants:
            return evaluate(model, loader, device, record=record), []
        return evaluate_variants_naive(model, loader, variants, device, record=record,
                                       progress=(lambda n: progress(n)) if progress else None)
    keys = [tuple(sorted(v)) for v in variants]
    try:
        engine = _Engine(model, sorted(set(keys)))
    except Exception as exc:  # noqa: BLE001 - any tracing failure falls back to the naive path
        warnings.warn(f"torch.fx cannot split this model ({exc}); evaluating naively",
                      stacklevel=2)
        return evaluate_variants_naive(model, loader, variants, device, record=record)
    record = record or stop is not None
    active = set(range(len(variants)))
    baseline = _Acc(record)
    accs = [_Acc(record) for _ in variants]
    tick = (lambda: progress(1)) if progress else None
    # the baseline's correct count and summed loss after each batch (paired estimates)
    base_sums: list[tuple[int, int, float]] = []
    for x, y in batches(loader, device):
        by_group: dict[tuple[str, ...], list[tuple[int, Variant]]] = {}
        for i in sorted(active):
            by_group.setdefault(keys[i], []).append((i, variants[i]))
        engine.batch(x, y, baseline, by_group, accs, tick)
        base_sums.append((baseline.n, baseline.correct, baseline.loss))
        if stop is not None and active:
            base = torch.cat(baseline.hits).numpy()
            for i in list(active):
                if stop.stops(base, torch.cat(accs[i].hits).numpy()):
                    active.discard(i)
    full = baseline.result()
    return full, [_paired(a, full, base_sums) for a in accs]


def _paired(acc: _Acc, full: EvalResult,
            base_sums: Sequence[tuple[int, int, float]]) -> EvalResult:
    """The result of a variant; one stopped after ``acc.n`` samples gets accuracy and loss
    as the baseline's on all samples plus its paired difference on the samples it saw."""
    r = acc.result()
    if acc.n >= full.n:
        return r
    n, correct, loss = next(s for s in base_sums if s[0] == acc.n)
    return EvalResult(full.accuracy - (correct - acc.correct) / n,
                      full.loss + (acc.loss - loss) / n, acc.n, r.correct)
