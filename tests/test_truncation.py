"""Truncation of kernels along cuts: keep specs, metrics, the quimb reference, plans."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import quimb.tensor as qtn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from corranalysis.errors import InputError
from corranalysis.kernels import all_cuts
from corranalysis.truncation import (
    KeepSpec,
    apply_plan,
    resolve_plan,
    truncate,
    truncated,
)

LEGS = ("out", "in", "kh", "kw")


def kernel(shape=(8, 4, 3, 3), seed=0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def quimb_truncation(w: np.ndarray, left: tuple[str, ...], chi: int) -> np.ndarray:
    t = qtn.Tensor(w, inds=LEGS[: w.ndim])
    tn = t.split(left_inds=left, max_bond=chi, cutoff=0.0, absorb="both")
    return tn.contract(all, output_inds=LEGS[: w.ndim]).data


# --------------------------------------------------------------------------- keep specs


@pytest.mark.parametrize("text, kind, value", [
    ("chi=40", "chi", 40), ("frac=0.5", "frac", 0.5), ("loss=0.1", "loss", 0.1),
    (" FRAC = 1 ", "frac", 1.0), ("loss=0", "loss", 0.0),
])
def test_keep_spec_parses_the_three_forms(text, kind, value):
    spec = KeepSpec.parse(text)
    assert (spec.kind, spec.value) == (kind, value)
    assert KeepSpec.parse(spec.label) == spec


@pytest.mark.parametrize("text, words", [
    ("frac=0", "(0, 1]"), ("frac=1.5", "(0, 1]"), ("chi=0", ">= 1"), ("chi=2.5", "integer"),
    ("loss=1", "[0, 1)"), ("loss=-0.1", "[0, 1)"), ("rank=3", "chi=N"), ("frac=abc", "number"),
])
def test_keep_spec_out_of_range_is_an_input_error(text, words):
    with pytest.raises(InputError, match=re.escape(words)):
        KeepSpec.parse(text)


def test_frac_rounds_up_and_loss_takes_the_largest_truncation_within_budget():
    w = kernel()
    # out|in,kh,kw: chi_max = min(8, 36) = 8; frac=0.3 -> ceil(2.4) = 3
    assert truncate(w, "out|in,kh,kw", "frac=0.3").metrics.chi == (3,)
    s = np.linalg.svd(w.reshape(8, -1), compute_uv=False)
    tail = [float((s[k:] ** 2).sum() / (s**2).sum()) for k in range(1, 9)]
    eps = 0.25
    chi = truncate(w, "out|in,kh,kw", f"loss={eps}").metrics.chi[0]
    assert tail[chi - 1] <= eps and (chi == 1 or tail[chi - 2] > eps)


def test_chi_above_chi_max_is_an_input_error_naming_the_cut():
    with pytest.raises(InputError, match=r"chi_max = 3"):
        truncate(kernel(), "out,in,kh|kw", "chi=4")


def test_unknown_cut_lists_the_valid_legs():
    with pytest.raises(InputError, match="valid legs: out, in, kh, kw"):
        truncate(kernel(), "out|depth", "chi=1")


# --------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("cut", [c.label for c in all_cuts(LEGS)])
@pytest.mark.parametrize("chi", [1, 2])
def test_agrees_with_a_quimb_split_at_every_cut(cut, chi):
    w = kernel()
    left = tuple(cut.split("|")[0].split(","))
    ours, metrics = truncate(w, cut, f"chi={chi}")
    assert metrics.chi == (chi,)
    np.testing.assert_allclose(ours, quimb_truncation(w, left, chi), atol=1e-12)


def test_torch_float32_keeps_dtype_and_device_and_matches_numpy():
    w = kernel()
    t = torch.tensor(w, dtype=torch.float32)
    out, m_t = truncate(t, "out,kh|in,kw", "chi=4")
    ref, m_n = truncate(w.astype(np.float32), "out,kh|in,kw", "chi=4")
    assert out.dtype == torch.float32 and out.device == t.device and ref.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    assert m_t.norm_loss == pytest.approx(m_n.norm_loss, abs=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu():
    w = torch.tensor(kernel(), dtype=torch.float32)
    cpu, m_cpu = truncate(w, "out|in,kh,kw", "loss=0.2")
    gpu, m_gpu = truncate(w.cuda(), "out|in,kh,kw", "loss=0.2")
    assert gpu.device.type == "cuda" and m_gpu.chi == m_cpu.chi
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


def test_several_cuts_apply_in_order_with_a_keep_per_cut():
    w = kernel()
    first, _ = truncate(w, "out|in,kh,kw", "chi=3")
    both, m = truncate(w, ["out|in,kh,kw", "out,in|kh,kw"], ["chi=3", "chi=2"])
    second, _ = truncate(first, "out,in|kh,kw", "chi=2")
    np.testing.assert_allclose(both, second, atol=1e-12)
    assert m.cuts == ("out|in,kh,kw", "out,in|kh,kw") and m.chi == (3, 2)
    assert m.norm_loss == pytest.approx(1 - (both**2).sum() / (w**2).sum(), abs=1e-12)
    assert m.rel_error == pytest.approx(np.linalg.norm(w - both) / np.linalg.norm(w))
    # the form W~ = A B across the second cut has chi (dim A + dim B) parameters at most
    assert m.params_factorized <= 2 * (32 + 9)


def test_fine_grained_legs_expose_more_cuts():
    w = kernel((8, 4, 3, 3))
    out, m = truncate(w, "out.0|out.1,in,kh,kw", "chi=1", legs={"out": [2, 4]})
    assert m.chi_max == (2,)
    u, s, vh = np.linalg.svd(w.reshape(2, -1), full_matrices=False)
    np.testing.assert_allclose(out.reshape(2, -1), s[0] * np.outer(u[:, 0], vh[0]), atol=1e-12)


def test_metrics_of_a_single_cut():
    w = kernel()
    out, m = truncate(w, "out,kw|in,kh", "chi=3")
    assert m.params_factorized == 3 * (24 + 12) and m.params_dense == w.size
    assert m.fidelity == pytest.approx(math.sqrt(1 - m.norm_loss))
    assert m.rel_error == pytest.approx(math.sqrt(m.norm_loss))


# --------------------------------------------------------------------------- properties

shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
cut_labels = st.sampled_from([c.label for c in all_cuts(LEGS)])


@settings(max_examples=40, deadline=None)
@given(shapes, cut_labels, st.integers(0, 10**6), st.floats(0.01, 1.0))
def test_norm_loss_is_one_minus_the_kept_squared_norm(shape, cut, seed, frac):
    w = kernel(shape, seed)
    out, m = truncate(w, cut, KeepSpec("frac", frac))
    assert m.norm_loss == pytest.approx(1 - (out**2).sum() / (w**2).sum(), abs=1e-10)
    assert 0 <= m.norm_loss <= 1 and 1 <= m.chi[0] <= m.chi_max[0]


@settings(max_examples=40, deadline=None)
@given(shapes, cut_labels, st.integers(0, 10**6))
def test_chi_max_is_the_identity(shape, cut, seed):
    w = kernel(shape, seed, np.float32)
    chi_max = truncate(w, cut, "frac=1").metrics.chi_max[0]
    out, m = truncate(w, cut, f"chi={chi_max}")
    assert np.array_equal(out, w) and m.norm_loss == 0 and m.fidelity == 1


@settings(max_examples=40, deadline=None)
@given(shapes, cut_labels, st.integers(0, 10**6), st.integers(1, 6))
def test_truncation_is_idempotent(shape, cut, seed, chi):
    w = kernel(shape, seed)
    chi = min(chi, truncate(w, cut, "frac=1").metrics.chi_max[0])
    once, _ = truncate(w, cut, f"chi={chi}")
    twice, m = truncate(once, cut, f"chi={chi}")
    np.testing.assert_allclose(twice, once, atol=1e-10 * max(1.0, np.abs(w).max()))
    assert m.norm_loss == pytest.approx(0, abs=1e-10)


# --------------------------------------------------------------------------- plans


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))


PLAN = {"0": {"cuts": ["out|in,kh,kw", "out,kh|in,kw"], "keep": "frac=0.5"},
        "3": {"cuts": ["out|in"], "keep": "chi=2"}}


def test_truncated_applies_the_plan_and_restores_exactly():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with truncated(model, PLAN) as metrics:
        assert set(metrics) == {"0", "3"} and metrics["3"].chi == (2,)
        assert torch.linalg.matrix_rank(model[3].weight.detach()) == 2
        assert not torch.equal(model[0].weight, before["0.weight"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_truncated_restores_even_when_the_body_raises():
    model = small_model()
    before = model[0].weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom"), truncated(model, PLAN):
        raise RuntimeError("boom")
    assert torch.equal(model[0].weight, before)


def test_plan_errors_name_the_input():
    model = small_model()
    with pytest.raises(InputError, match=r"unknown layer 'features.9'.*0, 3"):
        resolve_plan(model, {"features.9": {"cuts": ["out|in"], "keep": "frac=0.5"}})
    with pytest.raises(InputError, match="valid legs: out, in"):
        resolve_plan(model, {"3": {"cuts": ["out|kh"], "keep": "frac=0.5"}})
    with pytest.raises(InputError, match=r"chi_max = 5"):
        resolve_plan(model, {"3": {"cuts": ["out|in"], "keep": "chi=6"}})
    with pytest.raises(InputError, match="cuts"):
        resolve_plan(model, {"3": {"keep": "chi=1"}})


def test_plan_files_yaml_json_and_garbage(tmp_path):
    model = small_model()
    (tmp_path / "p.yaml").write_text("'3':\n  cuts: ['out|in']\n  keep: frac=0.2\n")
    (tmp_path / "p.json").write_text('{"0": {"cuts": "all", "keep": "loss=0.1"}}')
    (tmp_path / "bad.yaml").write_text("{3: [unclosed\n")
    assert resolve_plan(model, tmp_path / "p.yaml").entries["3"].keeps[0].label == "frac=0.2"
    assert len(resolve_plan(model, tmp_path / "p.json").entries["0"].cuts) == 7
    with pytest.raises(InputError, match="does not parse"):
        resolve_plan(model, tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="does not exist"):
        resolve_plan(model, tmp_path / "missing.yaml")


def test_apply_plan_is_in_place_and_reports_metrics():
    model = small_model()
    metrics = apply_plan(model, PLAN)
    assert metrics["0"].chi == (3, 3)  # ceil(0.5 * 6) and ceil(0.5 * min(18, 12))
    assert torch.linalg.matrix_rank(model[3].weight.detach()) == 2


def test_cuts_that_differ_only_by_size_one_legs_truncate_identically():
    """The sweep evaluates such trials once: their kernels must be equal bit for bit."""
    w = torch.randn(16, 8, 1, 1, generator=torch.Generator().manual_seed(3))
    labels = ["out|in,kh,kw", "out,kh|in,kw", "out,kw|in,kh", "out,kh,kw|in"]
    kernels = [truncate(w, label, "chi=3")[0] for label in labels]
    assert all(torch.equal(k, kernels[0]) for k in kernels)
