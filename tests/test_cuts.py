"""Cuts: every bipartition of a kernel's legs, canonical labels, parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corranalysis import InputError, all_cuts, contiguous_cuts, parse_cut, select_cuts
from corranalysis.kernels import MAX_ALL_LEGS, fine_grain, matricize, n_cuts, unmatricize

CONV = ["out", "in", "kh", "kw"]


def test_a_conv_kernel_has_seven_cuts_labelled_from_the_first_leg():
    labels = [c.label for c in all_cuts(CONV)]
    assert labels == [
        "out|in,kh,kw", "out,in|kh,kw", "out,kh|in,kw", "out,kw|in,kh",
        "out,in,kh|kw", "out,in,kw|kh", "out,kh,kw|in",
    ]


@given(st.integers(min_value=2, max_value=10))
def test_n_legs_have_2_to_the_n_minus_1_minus_1_distinct_cuts(n):
    legs = [f"l{i}" for i in range(n)]
    cuts = all_cuts(legs)
    assert len(cuts) == n_cuts(n) == 2 ** (n - 1) - 1
    assert len({c.label for c in cuts}) == len(cuts)
    assert all(c.left[0] == "l0" for c in cuts)


@given(st.data())
def test_complementary_labels_denote_the_same_cut(data):
    cut = data.draw(st.sampled_from(all_cuts(CONV)))
    flipped = f"{','.join(cut.right)}|{','.join(cut.left)}"
    shuffled = ",".join(reversed(cut.left)) + "|" + ",".join(cut.right)
    assert parse_cut(flipped, CONV) == cut
    assert parse_cut(shuffled, CONV) == cut
    assert parse_cut(cut.label, CONV).label == cut.label


def test_unknown_legs_are_rejected_with_the_valid_ones_listed():
    with pytest.raises(InputError, match=r"unknown legs \['kz'\].*out, in, kh, kw"):
        parse_cut("out,kz|in,kw", CONV)


@pytest.mark.parametrize("label", ["out,in,kh,kw", "out|in|kh,kw", "|out,in,kh,kw",
                                   "out,out|in,kh,kw", "out|in"])
def test_malformed_labels_are_rejected(label):
    with pytest.raises(InputError, match="cut"):
        parse_cut(label, CONV)


def test_contiguous_cuts_are_the_bonds_of_a_chain():
    assert [c.label for c in contiguous_cuts(CONV)] == [
        "out|in,kh,kw", "out,in|kh,kw", "out,in,kh|kw"]


def test_enumerating_all_cuts_above_20_legs_is_refused_with_alternatives():
    legs = [f"l{i}" for i in range(MAX_ALL_LEGS + 1)]
    with pytest.raises(InputError, match="contiguous"):
        select_cuts(legs, "all")
    assert len(select_cuts(legs, "contiguous")) == MAX_ALL_LEGS


def test_matricize_round_trips_on_numpy_and_torch():
    w = np.random.default_rng(0).standard_normal((8, 4, 3, 3))
    layout = fine_grain(CONV, w.shape, "binary")
    for cut in all_cuts(layout.names):
        m = matricize(w, layout.names, layout.sizes, cut)
        assert m.shape == (layout.size_of(cut.left), layout.size_of(cut.right))
        np.testing.assert_array_equal(unmatricize(m, layout.names, layout.sizes, cut, w.shape), w)
        np.testing.assert_array_equal(
            matricize(torch.from_numpy(w), layout.names, layout.sizes, cut).numpy(), m)
