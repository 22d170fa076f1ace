"""Cuts: bipartitions A|B of a kernel's legs, their canonical labels and parsing.

The label of a cut lists the legs of the side holding the first leg, then ``|``,
then the rest, each side in leg order: ``out,kh|in,kw``. ``n`` legs have
``2**(n-1) - 1`` cuts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InputError

MAX_ALL_LEGS = 20
CUT_MODES = ("all", "contiguous")
CutsSpec = str | Sequence[str]


@dataclass(frozen=True)
class Cut:
    """A bipartition of ``legs`` into ``left`` (holding ``legs[0]``) and ``right``."""

    left: tuple[str, ...]
    right: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{','.join(self.left)}|{','.join(self.right)}"

    def __str__(self) -> str:
        return self.label


def make_cut(legs: Sequence[str], side: Iterable[str]) -> Cut:
    """The canonical cut of ``legs`` with one side ``side`` (either side may be given)."""
    side = set(side)
    if legs[0] not in side:
        side = set(legs) - side
    left = tuple(leg for leg in legs if leg in side)
    right = tuple(leg for leg in legs if leg not in side)
    if not left or not right:
        raise InputError(f"a cut needs legs on both sides; legs: {', '.join(legs)}")
    return Cut(left, right)


def n_cuts(n_legs: int) -> int:
    """Number of bipartitions of ``n_legs`` legs: ``2**(n-1) - 1``."""
    return 2 ** (n_legs - 1) - 1


def all_cuts(legs: Sequence[str]) -> list[Cut]:
    """Every bipartition of ``legs``, by size of the first leg's side, then leg order."""
    legs = tuple(legs)
    if len(legs) > MAX_ALL_LEGS:
        raise InputError(
            f"enumerating all {n_cuts(len(legs))} cuts of {len(legs)} legs is refused "
            f"(limit {MAX_ALL_LEGS} legs); pass an explicit list of cut labels, "
            "or cuts='contiguous' (the n-1 cuts of a chain in leg order, i.e. MPS bonds)"
        )
    rest = legs[1:]
    out = []
    for r in range(0, len(rest)):
        for combo in itertools.combinations(rest, r):
            out.append(make_cut(legs, (legs[0], *combo)))
    return out


def contiguous_cuts(legs: Sequence[str]) -> list[Cut]:
    """The ``n-1`` cuts of the chain ``legs[:i] | legs[i:]`` (MPS bonds)."""
    legs = tuple(legs)
    return [make_cut(legs, legs[:i]) for i in range(1, len(legs))]


def parse_cut(label: str, legs: Sequence[str]) -> Cut:
    """Parse a cut label (either side first) against ``legs``; canonicalise it.

    Raises InputError naming the label for malformed labels and unknown legs.
    """
    legs = tuple(legs)
    text = str(label).strip()
    if text.count("|") != 1:
        raise InputError(
            f"cut {label!r} is malformed: write the two sides separated by one '|', "
            f"e.g. {make_cut(legs, legs[:1]).label!r}"
        )
    a, b = (tuple(x.strip() for x in part.split(",") if x.strip()) for part in text.split("|"))
    named = a + b
    unknown = [leg for leg in named if leg not in legs]
    if unknown:
        raise InputError(
            f"cut {label!r} names unknown legs {unknown}; valid legs: {', '.join(legs)}"
        )
    if not a or not b:
        raise InputError(f"cut {label!r} is malformed: both sides need at least one leg")
    if len(set(named)) != len(named):
        raise InputError(f"cut {label!r} names a leg twice")
    missing = [leg for leg in legs if leg not in named]
    if missing:
        raise InputError(
            f"cut {label!r} leaves legs {missing} on neither side; "
            f"every leg of {', '.join(legs)} must be on one side"
        )
    return make_cut(legs, a)


def as_cuts(cuts: CutsSpec | None) -> str | list[str]:
    """A cuts option in its one typed form: ``"all"``, ``"contiguous"`` or a list of labels.

    Accepts a mode, a label, ``';'``-separated labels, or a list of any of those (as the CLI's
    repeatable ``--cuts`` gives them); None and an empty list mean ``"all"``.
    """
    if cuts is not None and not isinstance(cuts, (str, Sequence)):
        raise InputError(f"cuts {cuts!r} is not a cuts option; give 'all', 'contiguous' or cut "
                         "labels such as 'out,kh|in,kw'")
    items = [cuts] if isinstance(cuts, str) else list(cuts or [])
    labels = [c.strip() for item in items for c in str(item).split(";") if c.strip()]
    if not labels:
        return "all"
    if len(labels) == 1 and labels[0] in CUT_MODES:
        return labels[0]
    bad = [c for c in labels if "|" not in c]
    if bad:
        raise InputError(f"cuts={bad[0]!r} is unknown; valid: {', '.join(CUT_MODES)} or cut "
                         "labels such as 'out,kh|in,kw'")
    return labels


def select_cuts(legs: Sequence[str], cuts: CutsSpec = "all") -> list[Cut]:
    """Cuts of ``legs`` chosen by ``"all"``, ``"contiguous"`` or labels (see :func:`as_cuts`)."""
    spec = as_cuts(cuts)
    if spec == "all":
        return all_cuts(legs)
    if spec == "contiguous":
        return contiguous_cuts(legs)
    return [parse_cut(label, legs) for label in spec]


def _permute(x, perm: Sequence[int]):
    return x.permute(*perm) if hasattr(x, "permute") else x.transpose(perm)


def matricize(weight, layout_names: Sequence[str], layout_sizes: Sequence[int], cut: Cut):
    """Reshape ``weight`` (numpy or torch) to the matrix ``(dim A, dim B)`` of ``cut``.

    ``layout_names``/``layout_sizes`` are the (fine-grained) legs; the kernel's
    elements are taken row-major, so fine-graining is a plain reshape.
    """
    names = list(layout_names)
    perm = [names.index(leg) for leg in (*cut.left, *cut.right)]
    t = _permute(weight.reshape(tuple(layout_sizes)), perm)
    rows = 1
    for leg in cut.left:
        rows *= layout_sizes[names.index(leg)]
    return t.reshape(rows, -1)


def unmatricize(matrix, layout_names: Sequence[str], layout_sizes: Sequence[int], cut: Cut,
                shape: Sequence[int]):
    """Inverse of :func:`matricize`: the matrix of ``cut`` back to a kernel of ``shape``."""
    names = list(layout_names)
    order = [*cut.left, *cut.right]
    perm = [names.index(leg) for leg in order]
    inverse = [perm.index(i) for i in range(len(perm))]
    t = matrix.reshape(tuple(layout_sizes[i] for i in perm))
    return _permute(t, inverse).reshape(tuple(shape))
