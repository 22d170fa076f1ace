"""Spectra: what a request costs is estimated before any work, and a request above the
memory budget is refused with the estimate and how to raise the budget."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from corranalysis import InputError, compute_spectra, extract_kernels, fine_grain, select_cuts
from corranalysis.spectra import _budget, available_memory, estimate_spectra, parse_memory


def _tree(**arrays) -> xr.DataTree:
    return extract_kernels({f"{k}.weight": torch.as_tensor(v) for k, v in arrays.items()})


@pytest.mark.parametrize("text,expected", [
    ("8GB", 8 * 10**9), ("500MB", 500 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("2 kB", 2000),
    ("64mib", 64 * 2**20), ("1024", 1024), (4096, 4096), (1e9, 10**9), ("3T", 3 * 10**12),
])
def test_memory_sizes_are_read_with_their_units(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["abc", "12XB", "-1GB", "0", "GB", "1e400", "", True,
                                 float("nan"), float("inf"), 0.5])
def test_what_is_not_a_memory_size_is_refused_naming_the_option(bad):
    with pytest.raises(InputError, match=r"^--max-memory=.* is not a memory size; .*8GB"):
        parse_memory(bad, "--max-memory")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=7))
def test_cuts_are_counted_by_size_exactly_as_enumerated(sizes):
    layout = fine_grain([f"l{i}" for i in range(len(sizes))], sizes)
    for mode in ("all", "contiguous"):
        enumerated = Counter((layout.size_of(c.left), layout.size_of(c.right))
                             for c in select_cuts(layout.names, mode))
        assert _budget.cut_profile(layout, mode) == enumerated


def test_the_estimate_matches_the_computed_dataset_and_bounds_its_size(small_cnn):
    kernels = extract_kernels(small_cnn)
    for legs, cuts in [("natural", "all"), ("prime", "contiguous"), ("binary", "all")]:
        est = estimate_spectra(kernels, legs=legs, cuts=cuts, device="cpu")
        ds = compute_spectra(kernels, legs=legs, cuts=cuts, device="cpu")
        assert est.n_layers == ds.sizes["layer"] and est.k_max == ds.sizes["k"]
        assert est.n_labels == ds.sizes["cut"]
        assert est.n_cuts == int(np.isfinite(ds["entropy"]).sum())
        assert est.result_bytes >= ds["singular_values"].nbytes + ds["norm_loss"].nbytes
        assert est.seconds > 0 and "cuts" in str(est) and "memory" in str(est)


def test_the_estimate_of_explicit_labels_counts_only_the_layers_they_fit(small_cnn):
    est = estimate_spectra(extract_kernels(small_cnn), cuts="out,kh|in,kw", device="cpu")
    assert est.n_cuts == 3 and est.n_labels == 1  # three conv layers, not the linear one


def test_the_issue_example_is_refused_fast_before_any_work():
    kernels = _tree(big=np.random.default_rng(0).standard_normal((1024, 1024)))
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        compute_spectra(kernels, legs="binary", cuts="all", device="cpu", max_memory="4GB")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "524,287 cuts" in message and "GB of memory" in message
    assert "memory budget of 4 GB" in message
    assert "max_memory='" in message and "--max-memory" in message
    assert "\n" not in message


def test_the_default_budget_is_half_of_the_available_memory(monkeypatch):
    kernels = _tree(w=np.ones((64, 64)))
    monkeypatch.setattr(_budget, "available_memory", lambda: 10_000)
    with pytest.raises(InputError, match=r"budget of 5 kB \(the default, 50% of the 10 kB"):
        compute_spectra(kernels, legs="binary", cuts="all", device="cpu")
    compute_spectra(kernels, legs="binary", cuts="all", device="cpu", max_memory="1GB")
    monkeypatch.setattr(_budget, "available_memory", lambda: None)  # unknown: no limit
    compute_spectra(kernels, legs="binary", cuts="contiguous", device="cpu")


def test_available_memory_is_read_without_psutil(monkeypatch):
    with_psutil = available_memory()
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil fails
    without = available_memory()
    if sys.platform.startswith("linux"):
        assert with_psutil and without and math.isclose(with_psutil, without, rel_tol=0.5)


def test_bad_arguments_are_refused_before_the_estimate(small_cnn):
    kernels = extract_kernels(small_cnn)
    with pytest.raises(InputError, match="method='svd' is unknown"):
        estimate_spectra(kernels, method="svd")
    with pytest.raises(InputError, match="cuts='every' is unknown"):
        compute_spectra(kernels, cuts="every")
    with pytest.raises(InputError, match="max_memory='lots' is not a memory size"):
        compute_spectra(kernels, device="cpu", max_memory="lots")


def test_more_legs_than_all_cuts_allows_is_still_refused_by_name():
    kernels = _tree(w=np.ones((2**11, 2**11)))
    with pytest.raises(InputError, match="limit 20 legs.*contiguous"):
        estimate_spectra(kernels, legs="binary", cuts="all")


def test_the_progress_bar_shows_the_estimate_the_total_and_the_time_left(capsys):
    kernels = _tree(a=np.random.default_rng(1).standard_normal((8, 4, 3, 3)))
    compute_spectra(kernels, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "spectra: 1 layer, 7 cuts (up to 12 singular values each): about" in err
    # not a terminal (captured): plain lines, the last with the total and the time taken
    assert "spectra: done, 7 cut in 00:00" in err


@pytest.mark.parametrize("weight,message", [
    (np.zeros((0, 3)), "no elements along a leg"),
    (np.ones((3, 3)) * 1j, "is complex"),
    (np.ones((3, 3), dtype=np.int32), "must be floating point"),
    (np.full((3, 3), np.nan), "9 NaN/Inf weights"),
])
def test_kernels_trees_made_by_hand_are_checked_too(weight, message):
    tree = xr.DataTree.from_dict(
        {"bad": xr.Dataset({"weight": xr.DataArray(weight, dims=("out", "in"))})})
    with pytest.raises(InputError, match=f"layer 'bad'.*{message}"):
        compute_spectra(tree, device="cpu")
