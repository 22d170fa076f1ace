"""Legs of a kernel and their fine-graining into factor legs.

A kernel's *natural* legs are ``out, in`` (Linear) followed by its spatial legs
(``k`` for Conv1d; ``kh, kw`` for Conv2d; ``kd, kh, kw`` for Conv3d). A transposed
convolution stores its kernel as ``(in, out/groups, *spatial)``: its legs are named for
what they are, in stored order (``in, out, kh, kw``). An embedding's table
``(num_embeddings, embedding_dim)`` has the legs ``token, dim``. Fine-graining
splits a leg of size ``n`` into factor legs ``leg.0, leg.1, ...`` whose sizes
multiply to ``n`` (row-major, ``leg.0`` most significant), exposing more cuts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError

LegsSpec = str | Mapping[str, Sequence[int]]
LEG_MODES = ("natural", "prime", "binary")

SPATIAL_LEGS = {1: ("k",), 2: ("kh", "kw"), 3: ("kd", "kh", "kw")}
#: legs of an embedding table ``(num_embeddings, embedding_dim)``: a row per token
EMBEDDING_LEGS = ("token", "dim")


def natural_legs(ndim: int, *, transposed: bool = False,
                 kind: str | None = None) -> tuple[str, ...]:
    """Natural leg names of a kernel with ``ndim`` dims, in stored order: ``out, in`` then
    spatial legs; ``in, out`` then spatial legs for a transposed convolution
    (``transposed=True``, or a ``kind`` ``conv_transpose*``, whose weight is
    ``(in, out/groups, *spatial)``); ``token, dim`` for an embedding table
    (``kind="embedding"``, ``(num_embeddings, embedding_dim)``).

    >>> natural_legs(4), natural_legs(2, kind="embedding")
    (('out', 'in', 'kh', 'kw'), ('token', 'dim'))
    """
    if ndim < 2:
        raise InputError(f"a kernel needs at least 2 dims (out, in), got {ndim}")
    if kind == "embedding":
        if ndim != 2:
            raise InputError(f"an embedding table has 2 dims (token, dim), got {ndim}")
        return EMBEDDING_LEGS
    transposed = transposed or (kind or "").startswith("conv_transpose")
    channels = ("in", "out") if transposed else ("out", "in")
    if ndim == 2:
        return channels
    spatial = SPATIAL_LEGS.get(ndim - 2, tuple(f"k{i}" for i in range(ndim - 2)))
    return (*channels, *spatial)


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order (``[]`` for 1)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


@dataclass(frozen=True)
class LegLayout:
    """Fine-grained legs of a kernel.

    ``names``/``sizes`` are the fine legs in order (a natural leg split into ``leg.0``,
    ``leg.1``, ...; itself when unsplit).
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    def size_of(self, legs: Sequence[str]) -> int:
        """Product of the sizes of ``legs``."""
        lookup = dict(zip(self.names, self.sizes, strict=True))
        out = 1
        for leg in legs:
            out *= lookup[leg]
        return out

    def squeezed(self, legs: Sequence[str]) -> tuple[str, ...]:
        """``legs`` without those of size 1. A cut's matrix, with the first leg's side
        as rows, depends only on the squeezed legs of that side."""
        lookup = dict(zip(self.names, self.sizes, strict=True))
        return tuple(leg for leg in legs if lookup[leg] > 1)


def _factors(leg: str, size: int, legs: LegsSpec) -> list[int]:
    if isinstance(legs, Mapping):
        if leg not in legs:
            return [size]
        factors = [int(f) for f in legs[leg]]
        prod = 1
        for f in factors:
            if f < 1:
                raise InputError(
                    f"fine-graining of leg {leg!r}: factors must be >= 1, got {factors}")
            prod *= f
        if prod != size:
            raise InputError(
                f"fine-graining of leg {leg!r}: factors {factors} multiply to {prod}, "
                f"but the leg has size {size}; give factors whose product is {size} "
                f"(prime factors: {prime_factors(size) or [1]})"
            )
        return factors
    if legs == "natural":
        return [size]
    if legs == "prime":
        return prime_factors(size) or [size]
    if legs == "binary":
        if size >= 2 and size & (size - 1) == 0:
            return [2] * (size.bit_length() - 1)
        return [size]
    raise InputError(f"legs={legs!r} is unknown; valid: {', '.join(LEG_MODES)} or a mapping")


def fine_grain(
    natural: Sequence[str], shape: Sequence[int], legs: LegsSpec = "natural"
) -> LegLayout:
    """Fine-grain the natural legs ``natural`` of sizes ``shape`` as ``legs`` asks.

    ``legs`` is ``"natural"``, ``"prime"``, ``"binary"`` or a mapping such as
    ``{"out": [4, 4, 4]}`` (the product must equal the leg size; no padding).
    """
    if isinstance(legs, Mapping):
        unknown = sorted(set(legs) - set(natural))
        if unknown:
            raise InputError(
                f"fine-graining names unknown legs {unknown}; valid legs: {', '.join(natural)}"
            )
    names: list[str] = []
    sizes: list[int] = []
    for leg, size in zip(natural, shape, strict=True):
        factors = _factors(leg, int(size), legs)
        fine = (leg,) if len(factors) == 1 else tuple(f"{leg}.{i}" for i in range(len(factors)))
        names.extend(fine)
        sizes.extend(factors)
    return LegLayout(tuple(names), tuple(sizes))
