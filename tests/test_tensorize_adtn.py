"""ADTN as the paper describes it: the free-parameter count, generation against an explicit
construction, the cheap default initialisation, the opt-in fit and the depth-1 fast paths."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from corranalysis.errors import InputError
from corranalysis.tensorize import ADTN, apply, load_spec, plan, validate_spec
from corranalysis.tensorize.adtn import (
    FAST_RTOL,
    ADTNLinear,
    adtn_params,
    adtn_params_all,
    brick_sites,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _norm(a: torch.Tensor) -> float:
    """In float64: a float32 norm of 2^24 entries is off by ~1e-3."""
    return float(torch.linalg.vector_norm(a.detach(), dtype=torch.float64))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return _norm(a - b) / _norm(b)


# ------------------------------------------------------------------------- counting rule


def test_one_period_has_200_free_parameters_at_q21_and_224_at_q24() -> None:
    assert adtn_params(1, 21) == 4 * 10 + 16 * 10 == 200
    assert adtn_params(1, 24) == 4 * 12 + 16 * 11 == 224
    assert adtn_params(1, 21) + adtn_params(1, 24) == 424  # the paper's VGG-16 head number
    assert adtn_params_all(1, 21) + adtn_params_all(1, 24) == 688
    assert adtn_params(3, 24) == 224 + 2 * 16 * 23  # each further period: 16·(Q − 1)


@pytest.mark.parametrize(("q", "depth"), [(2, 1), (5, 1), (6, 2), (9, 3)])
def test_module_parameters_are_exactly_the_free_count(q: int, depth: int) -> None:
    a = ADTN(1 << q, depth, q)
    assert sum(p.numel() for p in a.parameters()) == adtn_params(depth, q)


def test_vgg16_config_is_the_424_parameter_configuration() -> None:
    from corranalysis.models import create

    spec = load_spec(CONFIGS / "tensorize_vgg16_adtn.yaml")
    plans = {p.name: p for p in plan(create("vgg16", 1, 10), spec)}
    assert set(plans) == {"classifier.0", "classifier.3"}
    for name, q, free, every in (("classifier.0", 21, 200, 320), ("classifier.3", 24, 224, 368)):
        p = plans[name]
        assert p.extra["qubits"] == q and p.settings["depth"] == 1 and p.group == name
        assert p.params_after == free + 4096  # the dense bias
        assert p.extra["params_all_entries"] == every + 4096


def test_fc2_config_reaches_100x_on_both_linear_layers() -> None:
    from corranalysis.models import create

    spec = load_spec(CONFIGS / "tensorize_fc2_adtn.yaml")
    plans = plan(create("fc2", 1, 10), spec)
    assert [p.name for p in plans] == ["classifier.1", "classifier.3"]
    before, after = sum(p.params_before for p in plans), sum(p.params_after for p in plans)
    assert before / after >= 100
    assert all(p.params_before / p.params_after >= 100 for p in plans)


# ------------------------------------------------------------------------------ generation


def _explicit(q: int, depth: int, gates: np.ndarray) -> np.ndarray:
    """Kron of ``[1, 0]`` boundary vectors, then every 4×4 gate as ``I ⊗ G ⊗ I``, with
    ``tanh`` of the RMS-normalised vector between periods (numpy, float64)."""
    v = np.array([1.0])
    for _ in range(q):
        v = np.kron(v, [1.0, 0.0])
    for m in range(depth):
        if m:
            v = np.tanh(v / np.sqrt(np.mean(v**2)))
        for gate, site in zip(gates[m], brick_sites(q), strict=True):
            v = np.kron(np.kron(np.eye(2**site), gate), np.eye(2 ** (q - site - 2))) @ v
    return v


@pytest.mark.parametrize(("q", "depth"), [(2, 1), (5, 1), (6, 1), (5, 2), (6, 3)])
def test_generation_equals_the_explicit_kron_then_gates_construction(q: int, depth: int) -> None:
    rng = np.random.default_rng(q + depth)
    gates = rng.normal(0.0, 0.5, (depth, q - 1, 4, 4))  # every entry, the inert ones too
    a = ADTN(1 << q, depth, q).double()
    n_even = q // 2
    with torch.no_grad():
        a.first.copy_(torch.from_numpy(gates[0, :n_even, :, 0]))  # only column 0 is stored
        a.odd.copy_(torch.from_numpy(gates[0, n_even:]))
        a.gates.copy_(torch.from_numpy(gates[1:]))
        want = torch.from_numpy(_explicit(q, depth, gates))
        for reference in (True, False):
            torch.testing.assert_close(a.generate(reference=reference), want,
                                       rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- initialisation


def test_default_init_of_the_vgg16_head_runs_no_fit_and_takes_seconds(monkeypatch) -> None:
    from corranalysis.models import create

    def no_fit(*args, **kwargs):
        raise AssertionError("the default initialisation must not run the dense fit")

    monkeypatch.setattr(ADTN, "fit", no_fit)
    torch.manual_seed(0)
    model = create("vgg16", 1, 10).eval()
    spec = load_spec(CONFIGS / "tensorize_vgg16_adtn.yaml")
    t0 = time.perf_counter()
    new, table = apply(model, spec)
    seconds = time.perf_counter() - t0
    assert seconds < 20, seconds
    assert list(table["params_after"]) == [200 + 4096, 224 + 4096]
    assert list(table["params_all_entries"]) == [320 + 4096, 368 + 4096]
    # rms init: generated weights of the trained norm, unrelated direction (error ≈ √2)
    for name in ("classifier.0", "classifier.3"):
        w_new = new.get_submodule(name).weight()
        w_old = model.get_submodule(name).weight
        assert _norm(w_new) == pytest.approx(_norm(w_old), rel=1e-5)
    assert ((table["init_rel_error"] > 1.3) & (table["init_rel_error"] < 1.5)).all()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.isfinite(new(x)).all()


def test_lstsq_init_scale_never_exceeds_relative_error_one() -> None:
    target = torch.randn(3000, generator=torch.Generator().manual_seed(0))
    a = ADTN(3000, 2, seed=1)
    assert a.rescale(target, "lstsq") <= 1.0
    b = ADTN(3000, 2, seed=1)
    b.rescale(target, "rms")
    with torch.no_grad():
        assert _norm(b.weights()) == pytest.approx(_norm(target), rel=1e-5)


def test_opt_in_fit_reduces_the_error_and_shows_a_bar(capsys) -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    torch.manual_seed(0)
    with torch.no_grad():  # a smooth, low-rank target the network can approach
        model[0].weight.copy_(torch.outer(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 64)))
    entry = {"method": "adtn", "depth": 1, "init_scale": "lstsq"}
    _, cheap = apply(model, {"0": entry})
    _, fitted = apply(model, {"0": {**entry, "fit_steps": 40, "fit_lr": 0.05}}, progress=True)
    assert fitted.init_rel_error[0] < 0.5 * cheap.init_rel_error[0]
    assert "fit ADTN 0" in capsys.readouterr().err


def test_adtn_spec_errors_name_the_entry_and_what_is_valid() -> None:
    with pytest.raises(InputError, match=r"entry 'fc'.*init_scale='x'.*rms.*lstsq"):
        validate_spec({"fc": {"method": "adtn", "init_scale": "x"}})
    with pytest.raises(InputError, match=r"entry 'fc'.*fit_steps=-1.*integer ≥ 0"):
        validate_spec({"fc": {"method": "adtn", "fit_steps": -1}})
    with pytest.raises(InputError, match=r"entry 'fc'.*unknown setting.*init_scale"):
        validate_spec({"fc": {"method": "adtn", "scale": 1}})
    assert validate_spec({"fc": {"method": "adtn"}})["fc"]["fit_steps"] == 0


def test_a_state_of_the_earlier_layout_is_refused_clearly() -> None:
    a = ADTN(100, 1)
    old = {"gates": torch.zeros(1, a.qubits - 1, 4, 4), "scale": torch.tensor(1.0)}
    with pytest.raises(InputError, match="earlier layout"):
        a.load_state_dict(old)


# ------------------------------------------------------------------------------ fast path


@pytest.mark.parametrize("q", [9, 10, 20])
def test_fast_vector_equals_the_gate_by_gate_vector_within_float32_tolerance(q: int) -> None:
    a = ADTN(1 << q, 1, q, seed=q)
    a.rescale(torch.randn(1 << q, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        assert _rel(a.generate(), a.generate(reference=True)) <= FAST_RTOL[torch.float32]
    ad = ADTN(1 << q, 1, q, seed=q).double()
    with torch.no_grad():
        assert _rel(ad.generate(), ad.generate(reference=True)) <= FAST_RTOL[torch.float64]


@pytest.mark.parametrize(
    ("q", "shapes"),
    [
        (12, [(64, 64)]),  # cut at 6: even, bond 4
        (11, [(16, 128)]),  # cut at 4 (Q = 11 odd): even cut, last block closed by [1, 0]
        (12, [(32, 128)]),  # cut at 5: odd, bond 2
        (13, [(48, 128), (20, 64)]),  # shared: the second layer at offset 6144 = 96·64
    ],
)
def test_low_rank_linear_equals_the_materialised_weight_within_float32_tolerance(
    q: int, shapes: list[tuple[int, int]]
) -> None:
    n = sum(o * i for o, i in shapes)
    a = ADTN(n, 1, q, seed=3)
    a.rescale(torch.randn(n, generator=torch.Generator().manual_seed(2)))
    layers, offset = [], 0
    for out_f, in_f in shapes:
        layers.append(ADTNLinear(a, offset, in_f, out_f))
        assert a.linear_factors(offset, out_f, in_f) is not None
        offset += out_f * in_f
    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(7, in_f, generator=g) for _, in_f in shapes]

    def run(fast: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        a.fast = fast
        a.zero_grad(set_to_none=True)
        ys = [layer(x) for layer, x in zip(layers, xs, strict=True)]
        sum(y.pow(2).sum() for y in ys).backward()
        return [y.detach() for y in ys], [p.grad.clone() for p in (a.first, a.odd)]

    ys_fast, grads_fast = run(True)
    ys_ref, grads_ref = run(False)
    for y, r in zip(ys_fast + grads_fast, ys_ref + grads_ref, strict=True):
        assert _rel(y, r) <= FAST_RTOL[torch.float32]


def test_layouts_without_a_low_rank_form_use_the_materialised_weight() -> None:
    a = ADTN(784 * 1024 + 1024 * 10, 1)
    assert a.linear_factors(0, 1024, 784) is None  # in not a power of two
    assert a.linear_factors(1000, 10, 64) is None  # offset not a multiple of in
    assert ADTN(4096, 2).linear_factors(0, 64, 64) is None  # nonlinearity: no MPS


def test_shared_depth1_adtn_trains_with_one_fast_and_one_materialised_layer() -> None:
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    spec = {"*": {"method": "adtn", "depth": 1, "share": "all"}}
    new, table = apply(model, spec)
    a = new[0].adtn
    assert a is new[2].adtn and table["params_after"].sum() == adtn_params(1, a.qubits) + 58
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(new.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(new(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
