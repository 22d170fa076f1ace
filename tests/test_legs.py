"""Legs and fine-graining: natural, prime, binary or explicit factors, never padding."""

from __future__ import annotations

import pytest

from corranalysis import InputError, fine_grain, natural_legs


def test_natural_legs_follow_the_layer_type():
    assert natural_legs(2) == ("out", "in")
    assert natural_legs(3) == ("out", "in", "k")
    assert natural_legs(4) == ("out", "in", "kh", "kw")
    assert natural_legs(5) == ("out", "in", "kd", "kh", "kw")


def test_prime_fine_graining_splits_each_leg_into_its_prime_factors():
    layout = fine_grain(natural_legs(4), (12, 7, 3, 3), "prime")
    assert layout.names == ("out.0", "out.1", "out.2", "in", "kh", "kw")
    assert layout.sizes == (2, 2, 3, 7, 3, 3)
    assert layout.names[:3] == ("out.0", "out.1", "out.2")


def test_binary_fine_graining_splits_only_powers_of_two():
    layout = fine_grain(natural_legs(4), (64, 12, 3, 3), "binary")
    assert layout.sizes == (2,) * 6 + (12, 3, 3)


def test_explicit_factors_must_multiply_to_the_leg_size():
    layout = fine_grain(natural_legs(2), (64, 10), {"out": [4, 4, 4]})
    assert layout.names == ("out.0", "out.1", "out.2", "in")
    with pytest.raises(InputError, match=r"multiply to 32.*size 64"):
        fine_grain(natural_legs(2), (64, 10), {"out": [4, 4, 2]})
    with pytest.raises(InputError, match="unknown legs"):
        fine_grain(natural_legs(2), (64, 10), {"kh": [2, 2]})


def test_unknown_fine_graining_mode_is_rejected():
    with pytest.raises(InputError, match="natural, prime, binary"):
        fine_grain(natural_legs(2), (4, 4), "ternary")
