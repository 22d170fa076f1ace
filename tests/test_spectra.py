"""Spectra: singular values on every cut, the fast path agreeing with quimb's reference."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group

from corranalysis import (
    InputError,
    all_cuts,
    bond_spectra,
    compute_spectra,
    extract_kernels,
    fine_grain,
    kernel_mps,
    load,
    save,
)
from corranalysis.spectra import _compute as spectra
from corranalysis.spectra import _lapack, reference_spectrum, spectral_measures

CONV = ["out", "in", "kh", "kw"]


def _tree(**arrays_by_name) -> xr.DataTree:
    return extract_kernels({f"{k}.weight": torch.as_tensor(v) for k, v in arrays_by_name.items()})


def _assert_fast_matches_reference(fast: xr.Dataset, ref: xr.Dataset) -> None:
    s_ref, s_fast = ref["singular_values"].values, fast["singular_values"].values
    s_max = np.fmax.reduce(np.nan_to_num(s_ref, nan=0.0), axis=-1, keepdims=True)
    mask = np.isfinite(s_ref) & (s_ref > 1e-8 * s_max)
    rel = np.abs(s_fast[mask] - s_ref[mask]) / s_ref[mask]
    assert rel.max() <= 1e-6
    for name in ("entropy", "renyi2"):
        np.testing.assert_allclose(fast[name], ref[name], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast["chi_max"], ref["chi_max"])


def _structured_kernels(rng) -> dict[str, np.ndarray]:
    u, v = rng.standard_normal((16, 3)), rng.standard_normal((3, 8 * 9))
    decaying = rng.standard_normal((24, 16, 3, 3)) * np.logspace(0, -7, 24)[:, None, None, None]
    return {
        "random": rng.standard_normal((32, 16, 3, 3)),
        "square": rng.standard_normal((24, 24, 3, 3)),  # square cuts: tiny s_min
        "low_rank": (u @ v).reshape(16, 8, 3, 3),
        "product": np.einsum("oi,hw->oihw", rng.standard_normal((8, 6)),
                             rng.standard_normal((3, 3))),
        "decaying": decaying,
        "one_by_one": rng.standard_normal((64, 32, 1, 1)),
        "linear": rng.standard_normal((10, 40)),
        "zero": np.zeros((4, 4, 3, 3)),
    }


@pytest.mark.parametrize("legs,cuts", [("natural", "all"), ("prime", "contiguous"),
                                       ("binary", "contiguous")])
def test_fast_path_agrees_with_quimb_on_random_and_structured_kernels(legs, cuts):
    kernels = _tree(**_structured_kernels(np.random.default_rng(1)))
    fast = compute_spectra(kernels, legs=legs, cuts=cuts, method="fast", device="cpu")
    ref = compute_spectra(kernels, legs=legs, cuts=cuts, method="quimb")
    _assert_fast_matches_reference(fast, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fast_path_agrees_with_quimb():
    kernels = _tree(**_structured_kernels(np.random.default_rng(2)))
    fast = compute_spectra(kernels, device="cuda")
    _assert_fast_matches_reference(fast, compute_spectra(kernels, method="quimb"))


def test_dataset_layout_follows_the_design(small_cnn):
    ds = compute_spectra(extract_kernels(small_cnn))
    assert ds["singular_values"].dims == ("layer", "cut", "k")
    assert list(ds["layer"].values) == ["0", "2", "3", "6"]
    assert ds["k"].values[0] == 1
    assert list(ds["kind"].values) == ["conv2d", "conv2d", "conv2d", "linear"]
    assert ds["shape"].sel(layer="2").item() == "8x4x3x3"
    assert list(ds["cut"].values) == [c.label for c in all_cuts(CONV)] + ["out|in"]
    for name in ("entropy", "renyi2", "effective_rank", "rank", "chi_max"):
        assert ds[name].dims == ("layer", "cut")
    # spatial cuts of a Linear do not exist: NaN
    assert np.isnan(ds["entropy"].sel(layer="6", cut="out,kh|in,kw"))
    assert np.isnan(ds["entropy"].sel(layer="0", cut="out|in"))
    # NaN padding beyond chi_max
    row = ds["singular_values"].sel(layer="0", cut="out,in,kh|kw")
    assert np.isfinite(row[:3]).all() and np.isnan(row[3:]).all()
    assert ds["chi_max"].sel(layer="0", cut="out,in,kh|kw") == 3
    for key in ("version_torch", "version_quimb", "git_commit", "config", "device",
                "kernels_sha256"):
        assert key in ds.attrs


def test_norm_loss_curve_is_the_discarded_weight(small_cnn):
    ds = compute_spectra(extract_kernels(small_cnn))
    s = ds["singular_values"].sel(layer="0", cut="out|in,kh,kw").values
    s = s[np.isfinite(s)]
    loss = ds["norm_loss"].sel(layer="0", cut="out|in,kh,kw").values[: len(s)]
    expected = [np.sum(s[k:] ** 2) / np.sum(s**2) for k in range(1, len(s) + 1)]
    np.testing.assert_allclose(loss, expected, atol=1e-15)
    assert loss[-1] == 0 and np.all(np.diff(loss) <= 0)


def test_netcdf_round_trip_is_exact(tmp_path, small_cnn):
    ds = compute_spectra(extract_kernels(small_cnn))
    save(ds, tmp_path / "spectra.nc")
    back = load(tmp_path / "spectra.nc")
    xr.testing.assert_identical(back, ds)
    assert not list(tmp_path.glob(".*tmp"))


def test_contiguous_cuts_are_the_bonds_of_the_kernel_mps():
    w = np.random.default_rng(3).standard_normal((8, 4, 3, 3))
    layout = fine_grain(CONV, w.shape, "binary")
    mps = kernel_mps(w, layout)
    ds = compute_spectra(_tree(w=w), legs="binary", cuts="contiguous")
    for j, s in enumerate(bond_spectra(mps)):
        expected = ds["singular_values"].isel(layer=0, cut=j).values
        expected = expected[np.isfinite(expected)]
        np.testing.assert_allclose(s[: len(expected)], expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------- properties
kernel_shapes = st.tuples(*[st.integers(1, 5)] * 4)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, kernel_shapes, elements=st.floats(-10, 10, width=64)))
def test_sum_of_squared_singular_values_is_the_squared_norm_on_every_cut(w):
    ds = compute_spectra(_tree(w=w))
    total = (ds["singular_values"] ** 2).sum("k").isel(layer=0)
    np.testing.assert_allclose(total, np.sum(w**2), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_product_tensor_has_zero_entropy_across_the_product_cut(a, b, seed):
    rng = np.random.default_rng(seed)
    w = np.einsum("oi,hw->oihw", rng.standard_normal((a, b)), rng.standard_normal((3, 2)))
    ds = compute_spectra(_tree(w=w))
    assert abs(float(ds["entropy"].sel(cut="out,in|kh,kw").item())) < 1e-9


@given(st.integers(2, 12))
def test_maximally_correlated_tensor_has_entropy_ln_d(d):
    w = np.eye(d).reshape(d, d, 1, 1)  # out and in maximally correlated
    ds = compute_spectra(_tree(w=w))
    entropy = float(ds["entropy"].sel(cut="out|in,kh,kw").item())
    assert entropy == pytest.approx(np.log(d), abs=1e-12)
    assert float(ds["effective_rank"].sel(cut="out|in,kh,kw").item()) == pytest.approx(d)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_entropy_is_invariant_under_orthogonal_transforms_of_one_side(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, 4, 3, 3))
    q = ortho_group.rvs(6, random_state=seed)
    rotated = np.einsum("po,oihw->pihw", q, w)
    a = compute_spectra(_tree(w=w))["entropy"].sel(cut="out|in,kh,kw")
    b = compute_spectra(_tree(w=rotated))["entropy"].sel(cut="out|in,kh,kw")
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_zero_kernels_give_entropy_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = compute_spectra(_tree(z=np.zeros((4, 3, 3, 3))))
    assert (ds["entropy"] == 0).all() and (ds["renyi2"] == 0).all()
    assert (ds["rank"] == 0).all() and (ds["norm_loss"].fillna(0) == 0).all()
    assert spectral_measures(np.zeros(3))["effective_rank"] == 1.0


def test_reference_spectrum_is_quimbs_split():
    w = np.random.default_rng(4).standard_normal((5, 4, 3, 2))
    layout = fine_grain(CONV, w.shape)
    cut = all_cuts(CONV)[2]
    m = w.transpose(0, 2, 1, 3).reshape(15, 8)
    np.testing.assert_allclose(reference_spectrum(w, layout, cut),
                               np.linalg.svd(m, compute_uv=False), rtol=1e-12)


# --------------------------------------------------------------------- fast path
def _with_spectrum(s: np.ndarray, seed: int = 0) -> np.ndarray:
    """A square matrix with singular values ``s``."""
    n = len(s)
    u, v = ortho_group.rvs(n, size=2, random_state=seed)
    return (u * s) @ v.T


def _ritz_outcomes(monkeypatch) -> list:
    outcomes = []
    original = spectra._ritz_tail

    def spy(*args):
        outcomes.append(original(*args))
        return outcomes[-1]

    monkeypatch.setattr(spectra, "_ritz_tail", spy)
    return outcomes


def test_small_values_that_squaring_would_lose_are_refined_on_the_matrix(monkeypatch):
    s = np.concatenate([np.linspace(2.0, 1.0, 190), np.logspace(-4, -7.5, 10)])
    outcomes = _ritz_outcomes(monkeypatch)
    ds = compute_spectra(_tree(fc=_with_spectrum(s)))
    got = ds["singular_values"].isel(layer=0, cut=0).values
    np.testing.assert_allclose(got, s, rtol=1e-7)  # from the Gram alone: no digit at 3e-8
    assert len(outcomes) == 1 and outcomes[0] is not None  # refined, no SVD needed


def test_a_degenerate_tail_is_refined_as_a_block(monkeypatch):
    s = np.concatenate([np.linspace(2.0, 1.0, 195), np.full(5, 1e-6)])
    outcomes = _ritz_outcomes(monkeypatch)
    ds = compute_spectra(_tree(fc=_with_spectrum(s, seed=1)))
    np.testing.assert_allclose(ds["singular_values"].isel(layer=0, cut=0).values, s, rtol=1e-7)
    assert len(outcomes) == 1 and outcomes[0] is not None


def test_a_tail_too_wide_to_refine_is_recomputed_by_svd(monkeypatch):
    s = np.logspace(0, -7, 40)  # most of the values are uncertain from the Gram matrix
    outcomes = _ritz_outcomes(monkeypatch)
    ds = compute_spectra(_tree(fc=_with_spectrum(s, seed=2)))
    np.testing.assert_allclose(ds["singular_values"].isel(layer=0, cut=0).values, s, rtol=1e-7)
    assert outcomes == []


def test_smaller_gram_matrices_come_from_partial_traces_of_larger_ones():
    w = np.random.default_rng(5).standard_normal((8, 8, 3, 3))
    layout = fine_grain(CONV, w.shape)
    jobs = [spectra._Job((0, j), w, layout, cut) for j, cut in enumerate(all_cuts(CONV))]
    plan = spectra._plan(layout, jobs)
    derived = {item.side: item.source for item in plan if item.source}
    assert {("out",), ("in",), ("kh",)} <= set(derived)  # from the two square cuts
    for (item, gram), _ in zip(spectra._grams(plan), plan, strict=True):
        a = spectra._side_matrix(item.jobs[0], item.side)
        np.testing.assert_allclose(gram, a @ a.T, rtol=1e-12, atol=1e-12)


def test_hundreds_of_cuts_of_fine_grained_legs_agree_with_quimb(monkeypatch):
    """511 cuts of 10 binary legs: the plan's large-kernel search; with a tiny memory
    budget no Gram matrix is kept as a source and each is formed directly."""
    kernels = _tree(conv=np.random.default_rng(8).standard_normal((16, 16, 2, 2)))
    ref = compute_spectra(kernels, legs="binary", cuts="all", method="quimb")
    assert ref.sizes["cut"] == 511
    _assert_fast_matches_reference(compute_spectra(kernels, legs="binary", cuts="all"), ref)
    monkeypatch.setattr(spectra, "MAX_BATCH_ELEMENTS", 16)
    _assert_fast_matches_reference(compute_spectra(kernels, legs="binary", cuts="all"), ref)


def test_the_batched_torch_path_agrees_with_the_numpy_path():
    """The CUDA code path, run on CPU tensors: same spectra as the NumPy path."""
    kernels = _structured_kernels(np.random.default_rng(7))
    kernels["tail"] = _with_spectrum(np.r_[np.linspace(2, 1, 60), np.logspace(-5, -7, 4)])
    jobs = {"numpy": [], "torch": []}
    for i, w in enumerate(kernels.values()):
        legs = CONV[: w.ndim] if w.ndim == 4 else ["out", "in"]
        layout = fine_grain(legs, w.shape)
        tw = torch.as_tensor(w)
        for j, cut in enumerate(all_cuts(legs)):
            jobs["numpy"].append(spectra._Job((i, j), w, layout, cut))
            jobs["torch"].append(spectra._Job((i, j), tw, layout, cut))
    a = spectra._fast_spectra(jobs["numpy"], lambda n: None)
    b = spectra._fast_spectra(jobs["torch"], lambda n: None)
    assert a.keys() == b.keys()
    for key in a:
        promised = a[key] > 1e-8 * a[key][0]
        np.testing.assert_allclose(b[key][promised], a[key][promised], rtol=1e-7)


def test_the_fast_path_is_deterministic_across_threads():
    kernels = _tree(**_structured_kernels(np.random.default_rng(6)))
    a, b = compute_spectra(kernels), compute_spectra(kernels)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_tridiagonal_reduction_gives_the_eigenvalues():
    g = _with_spectrum(np.linspace(1.0, 3.0, 50), seed=2)
    g = g @ g.T
    c, d, e, tau = _lapack.dsytrd(g)
    np.testing.assert_allclose(_lapack.dsterf(d, e), np.linalg.eigvalsh(g), rtol=1e-12)
    assert c.shape == g.shape and tau.shape == e.shape == (49,)


# --------------------------------------------------------------------- bad input
def test_explicit_cuts_give_nan_where_they_do_not_fit_and_errors_where_nowhere(small_cnn):
    kernels = extract_kernels(small_cnn)
    ds = compute_spectra(kernels, cuts=["out,kh|in,kw"])
    assert list(ds["cut"].values) == ["out,kh|in,kw"]
    assert np.isnan(ds["entropy"].sel(layer="6")).all()
    with pytest.raises(InputError, match="unknown legs"):
        compute_spectra(kernels, cuts=["out,zz|in"])
    with pytest.raises(InputError, match="cuts='some'"):
        compute_spectra(kernels, cuts="some")


def test_a_fine_graining_that_does_not_fit_is_an_error(small_cnn):
    with pytest.raises(InputError, match="multiply to"):
        compute_spectra(extract_kernels(small_cnn), legs={"out": [3, 3]})


def test_result_files_get_ordinary_permissions(tmp_path, small_cnn):
    old = os.umask(0o022)
    try:
        save(compute_spectra(extract_kernels(small_cnn)), tmp_path / "s.nc")
    finally:
        os.umask(old)
    assert (tmp_path / "s.nc").stat().st_mode & 0o777 == 0o644  # as open() would make it
