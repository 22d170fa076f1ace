"""Resolve a validated spec against a model: which layers, which concrete ranks, how many params.

Everything that can be wrong with a spec for a given model (a pattern that matches nothing,
a method that does not apply to the layer type, ranks larger than the layer allows, MPO
factors whose product is not the size) is found here, before any decomposition runs.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import InputError
from .adtn import adtn_params, adtn_params_all, adtn_qubits
from .cp import cp_params, max_cp_rank
from .factorized import best_cut, cut_size, executable_cuts, norm_loss_at, svd_params
from .mpo import balanced_factors, bond_list, full_bonds, mpo_params
from .spec import APPLIES_TO
from .tucker import tucker_params

TENSORIZABLE = (nn.Linear, nn.Conv2d)


@dataclass
class LayerPlan:
    """One layer to replace: its name, module, method and concrete settings."""

    name: str
    module: nn.Module
    method: str
    settings: dict[str, Any]
    params_before: int
    params_after: int = 0
    group: str = ""
    rank: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.module.weight.shape)


def _bias(m: nn.Module) -> int:
    return m.bias.numel() if getattr(m, "bias", None) is not None else 0


def _n_params(m: nn.Module) -> int:
    return m.weight.numel() + _bias(m)


def match_layers(model: nn.Module, spec: dict[str, dict]) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, pattern)`` for every layer matched, in forward (registration) order."""
    modules = dict(model.named_modules())
    candidates = {n: m for n, m in modules.items() if n and isinstance(m, TENSORIZABLE)}
    owner: dict[str, str] = {}
    for pattern in spec:
        hits = [n for n in candidates if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            other = [n for n in modules if n and fnmatch.fnmatchcase(n, pattern)]
            if other:
                kinds = sorted({type(modules[n]).__name__ for n in other})
                raise InputError(
                    f"spec entry {pattern!r} matches only {kinds} modules ({other[:4]}); "
                    "tensorizable layers are Linear and Conv2d"
                )
            raise InputError(
                f"spec entry {pattern!r} matches no layer; Linear/Conv2d layers are: "
                f"{', '.join(list(candidates)[:12])}{' ...' if len(candidates) > 12 else ''}"
            )
        for n in hits:
            if n in owner:
                raise InputError(
                    f"layer {n!r} is matched by both spec entries {owner[n]!r} and {pattern!r}; "
                    "make the patterns disjoint"
                )
            owner[n] = pattern
    return [(n, candidates[n], owner[n]) for n in candidates if n in owner]


def _frac_or_int(value: int | float, full: int) -> int:
    return value if isinstance(value, int) else max(1, math.ceil(value * full))


def _target(plan: LayerPlan, ratio: float) -> float:
    return plan.params_before / float(ratio)


def _unreachable(plan: LayerPlan, ratio: float, smallest: int) -> InputError:
    return InputError(
        f"layer {plan.name!r}: {plan.method} cannot reach compression {ratio}× "
        f"({plan.params_before} params; the smallest {plan.method} has {smallest}); "
        "ask for less compression"
    )


def _plan_mpo(p: LayerPlan) -> None:
    s, m = p.settings, p.module
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise InputError(f"layer {p.name!r}: mpo needs groups=1, numeric zero padding")
        out_size, in_size = m.out_channels, m.in_channels
    else:
        out_size, in_size = m.out_features, m.in_features
    if "factors" in s:
        fin, fout = s["factors"]["in"], s["factors"]["out"]
        for leg, fs, size in (("in", fin, in_size), ("out", fout, out_size)):
            if math.prod(fs) != size:
                raise InputError(
                    f"layer {p.name!r}: MPO {leg} factors {fs} multiply to {math.prod(fs)}, "
                    f"but the {leg} size is {size}; give factors whose product is {size}"
                )
    else:
        fin, fout = balanced_factors(in_size, s["sites"]), balanced_factors(out_size, s["sites"])
    site_out, site_in = list(fout), list(fin)
    if isinstance(m, nn.Conv2d):
        site_out, site_in = [1, *fout], [m.kernel_size[0] * m.kernel_size[1], *fin]
    full = full_bonds(site_out, site_in)
    max_chi = max(full, default=1)
    bias = _bias(m)
    if "bond_dim" in s:
        chi = _frac_or_int(s["bond_dim"], max_chi)
        if chi > max_chi:
            raise InputError(
                f"layer {p.name!r}: bond_dim {chi} is larger than the layer allows "
                f"(largest full bond {max_chi} for out {site_out} × in {site_in})"
            )
    else:
        target = _target(p, s["compression"])
        ok = [c for c in range(1, max_chi + 1)
              if mpo_params(bond_list(c, site_out, site_in), site_out, site_in) + bias <= target]
        if not ok:
            smallest = mpo_params(bond_list(1, site_out, site_in), site_out, site_in) + bias
            raise _unreachable(p, s["compression"], smallest)
        chi = ok[-1]
    bonds = bond_list(chi, site_out, site_in)
    p.extra = {"in_factors": list(fin), "out_factors": list(fout), "bonds": bonds}
    p.params_after = mpo_params(bonds, site_out, site_in) + bias
    p.rank = f"chi={chi} bonds={bonds} out={list(fout)} in={list(fin)}"


def _plan_svd(p: LayerPlan) -> None:
    """Rank and cut of a plain truncation kept factorised: the given cut, or the cut of least
    norm loss among those that run as two layers (``best``) at the rank that fits."""
    s, w, bias = p.settings, p.module.weight, _bias(p.module)
    try:
        cuts = executable_cuts(p.module)
    except InputError as exc:
        raise InputError(f"layer {p.name!r}: {exc}") from None
    if s["cut"] != "best":
        if s["cut"] not in cuts:
            raise InputError(f"layer {p.name!r}: svd cut {s['cut']!r} does not apply to a "
                             f"{p.kind}; use best or one of {', '.join(cuts)}")
        cuts = (s["cut"],)
    shape = tuple(w.shape)
    if "rank" in s:

        def chi_at(cut: str) -> int:
            return min(_frac_or_int(s["rank"], min(cut_size(shape, cut))),
                       min(cut_size(shape, cut)))

        if len(cuts) > 1:  # a rank without a cut: the cut of least norm loss at that rank
            cuts = (min(cuts, key=lambda c: norm_loss_at(w, c, chi_at(c))),)
        full = min(cut_size(shape, cuts[0]))
        chi = _frac_or_int(s["rank"], full)
        if chi > full:
            raise InputError(f"layer {p.name!r}: svd rank {chi} is larger than the layer allows "
                             f"(≤ {full} at cut {cuts[0]!r})")
        cut, loss = cuts[0], norm_loss_at(w, cuts[0], chi)
    else:
        found = best_cut(w, cuts, _target(p, s["compression"]), bias)
        if found is None:
            smallest = min(svd_params(shape, c, 1, bias) for c in cuts)
            raise _unreachable(p, s["compression"], smallest)
        cut, chi, loss = found
    p.extra = {"cut": cut, "chi": chi, "norm_loss": loss}
    p.params_after = svd_params(shape, cut, chi, bias)
    p.rank = f"cut={cut} chi={chi} norm_loss={loss:.3g}"


def _conv_dims(p: LayerPlan) -> tuple[int, int, int, int]:
    m = p.module
    if m.groups != 1 or isinstance(m.padding, str) or m.padding_mode != "zeros":
        raise InputError(f"layer {p.name!r}: {p.method} needs groups=1 and numeric zero padding")
    return m.out_channels, m.in_channels, *m.kernel_size


def _plan_tucker(p: LayerPlan) -> None:
    s = p.settings
    out, inp, kh, kw = _conv_dims(p)
    bias = _bias(p.module) > 0
    if "rank" in s:
        r = s["rank"]
        if isinstance(r, list):
            r_out, r_in = r
            if r_out > out or r_in > inp:
                raise InputError(
                    f"layer {p.name!r}: Tucker rank {r} is larger than the layer allows "
                    f"([r_out ≤ {out}, r_in ≤ {inp}])"
                )
        elif isinstance(r, int):
            if r > max(out, inp):
                raise InputError(
                    f"layer {p.name!r}: Tucker rank {r} is larger than the layer allows "
                    f"(≤ {max(out, inp)}; out={out}, in={inp})"
                )
            r_out, r_in = min(r, out), min(r, inp)
        else:
            r_out, r_in = _frac_or_int(r, out), _frac_or_int(r, inp)
    else:
        target = _target(p, s["compression"])
        ok = []
        for r_out in range(1, out + 1):
            r_in = min(inp, max(1, round(r_out * inp / out)))
            if tucker_params(out, inp, kh, kw, r_out, r_in, bias) <= target:
                ok.append((r_out, r_in))
        if not ok:
            raise _unreachable(p, s["compression"], tucker_params(out, inp, kh, kw, 1, 1, bias))
        r_out, r_in = ok[-1]
    p.extra = {"r_out": r_out, "r_in": r_in}
    p.params_after = tucker_params(out, inp, kh, kw, r_out, r_in, bias)
    p.rank = f"r_out={r_out} r_in={r_in}"


def _plan_cp(p: LayerPlan) -> None:
    s = p.settings
    out, inp, kh, kw = _conv_dims(p)
    bias = _bias(p.module) > 0
    full = max_cp_rank((out, inp, kh, kw))
    if "rank" in s:
        if isinstance(s["rank"], list):
            raise InputError(f"layer {p.name!r}: CP rank must be one integer or fraction")
        rank = _frac_or_int(s["rank"], full)
        if rank > full:
            raise InputError(
                f"layer {p.name!r}: CP rank {rank} is larger than the layer allows (≤ {full}, "
                f"the exact rank bound for shape {(out, inp, kh, kw)})"
            )
    else:
        target = _target(p, s["compression"])
        rank = min(full, int((target - (out if bias else 0)) // (out + inp + kh + kw)))
        if rank < 1:
            raise _unreachable(p, s["compression"], cp_params(out, inp, kh, kw, 1, bias))
    p.extra = {"rank": rank}
    p.params_after = cp_params(out, inp, kh, kw, rank, bias)
    p.rank = f"R={rank}"


PLANNERS = {"svd": _plan_svd, "mpo": _plan_mpo, "tucker": _plan_tucker, "cp": _plan_cp}


def plan(model: nn.Module, spec: dict[str, dict]) -> list[LayerPlan]:
    """Resolve a validated ``spec`` on ``model``; raises :class:`InputError` on any problem."""
    plans = []
    for name, module, pattern in match_layers(model, spec):
        settings = spec[pattern]
        kind = type(module).__name__
        method = settings["method"]
        if method not in APPLIES_TO[kind]:
            raise InputError(
                f"method {method!r} does not apply to {kind} layer {name!r} (spec entry "
                f"{pattern!r}); methods for {kind}: {', '.join(APPLIES_TO[kind])}"
            )
        p = LayerPlan(name, module, method, dict(settings), _n_params(module))
        PLANNERS.get(method, lambda _: None)(p)
        plans.append(p)
    _plan_adtn_groups([p for p in plans if p.method == "adtn"])
    return plans


def resolved_spec(plans: list[LayerPlan]) -> dict[str, dict[str, Any]]:
    """One exact entry per planned layer, with every choice that depends on the weights
    fixed (``svd``'s cut and rank), so that the structure can be rebuilt on any weights
    (a saved tensorized model is rebuilt on a freshly initialised base)."""
    out: dict[str, dict[str, Any]] = {}
    for p in plans:
        entry = dict(p.settings)
        if p.method == "svd":
            entry.pop("compression", None)
            entry.update(cut=p.extra["cut"], rank=int(p.extra["chi"]))
        out[p.name] = entry
    return out


def _plan_adtn_groups(plans: list[LayerPlan]) -> None:
    """Group ADTN layers (``share``), check each group agrees on its settings, place the layers
    in the generated vector. ``params_after`` is the free count (:func:`.adtn.adtn_params`),
    ``extra["params_all_entries"]`` counts every gate entry; both on the group's first layer."""
    groups: dict[str, list[LayerPlan]] = {}
    for p in plans:
        p.group = p.settings.get("share", p.name)
        groups.setdefault(p.group, []).append(p)
    for gname, members in groups.items():
        first = members[0].settings
        for p in members[1:]:
            for key in ("depth", "qubits", "nonlinearity", "fit_steps", "fit_lr", "seed",
                        "init_scale"):
                if p.settings.get(key) != first.get(key):
                    raise InputError(
                        f"ADTN group {gname!r}: layers {members[0].name!r} and {p.name!r} "
                        f"disagree on {key} ({first.get(key)!r} vs {p.settings.get(key)!r}); "
                        "a shared ADTN needs one setting"
                    )
        n = sum(p.module.weight.numel() for p in members)
        q = first.get("qubits") or adtn_qubits(n)
        if (1 << q) < n:
            raise InputError(
                f"ADTN group {gname!r}: qubits {q} gives 2^{q} = {1 << q} entries, fewer than "
                f"the {n} weights; use qubits ≥ {adtn_qubits(n)}"
            )
        offset = 0
        for i, p in enumerate(members):
            own = i == 0  # a shared ADTN's parameters are counted on its first layer
            p.extra = {"qubits": q, "offset": offset, "n_weights": n, "params_all_entries":
                       _bias(p.module) + (adtn_params_all(first["depth"], q) if own else 0)}
            offset += p.module.weight.numel()
            p.params_after = _bias(p.module) + (adtn_params(first["depth"], q) if own else 0)
            shared = f" shared by {len(members)} layers" if len(members) > 1 else ""
            p.rank = f"M={first['depth']} Q={q}{shared}"
