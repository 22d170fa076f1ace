"""The automatic plan compresses the whole network to a parameter budget; control and
re-truncation show whether re-training recovered a *compressed* model."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch
import xarray as xr
from test_retrain import PLAN, learnable
from test_sweep import tiny_cnn

from corranalysis.errors import InputError
from corranalysis.kernels import matricize
from corranalysis.retrain import auto_plan, budget_table, retrain
from corranalysis.runtime import Optim, evaluate
from corranalysis.sweep import sweep
from corranalysis.truncation import parse_cuts, resolve_plan, truncated


def fake_sweep(layers: dict[str, tuple[int, list[tuple[int, float]]]],
               baseline: float = 0.9) -> xr.Dataset:
    """A sweep of single-layer trials: ``{layer: (dense size, [(params, drop points), ..])}``;
    each trial's norm loss grows as its size shrinks."""
    rows = []
    for name, (dense, options) in layers.items():
        for k, (params, drop) in enumerate(options):
            rows.append({"layer": name, "cuts": "out|in", "keep": f"chi={k + 1}",
                         "accuracy": baseline - drop / 100, "params_factorized": params,
                         "params_dense": dense, "norm_loss": 1 - params / dense, "chi": k + 1,
                         "plan": json.dumps({name: {"cuts": ["out|in"], "keep": f"chi={k + 1}"}})})
    n = len(rows)
    coords = {"trial": np.arange(n), "scope": ("trial", ["layer"] * n),
              "truncation": ("trial", ["svd"] * n)}
    coords.update({c: ("trial", [r[c] for r in rows]) for c in ("layer", "cuts", "keep")})
    data = {v: ("trial", np.array([r[v] for r in rows]))
            for v in ("accuracy", "params_factorized", "params_dense", "norm_loss", "chi", "plan")}
    return xr.Dataset(data, coords=coords, attrs={"baseline_accuracy": baseline})


def test_the_tolerant_layer_is_compressed_most():
    sw = fake_sweep({"tolerant": (1000, [(100, 0.1), (500, 0.0)]),
                     "sensitive": (1000, [(100, 20.0), (500, 1.0)])})
    table = budget_table(sw, 0.4)  # 800 of 2000 parameters
    kept = dict(zip(table.layer.values, table.params_kept.values, strict=True))
    assert kept == {"tolerant": 100, "sensitive": 500}
    assert table.attrs["max_drop"] == pytest.approx(1.0)
    assert table.attrs["params_kept"] == 600 <= 0.4 * table.attrs["params_dense"]
    assert auto_plan(sw, 0.4) == {"tolerant": {"cuts": ["out|in"], "keep": "chi=1"},
                                  "sensitive": {"cuts": ["out|in"], "keep": "chi=2"}}


def test_a_layer_is_left_dense_when_the_budget_allows_and_marked_so():
    sw = fake_sweep({"a": (1000, [(200, 0.0)]), "b": (100, [(50, 5.0)])})
    table = budget_table(sw, 0.5)  # 550 allowed: a at 200 + b dense 100
    assert table.compressed.values.tolist() == [True, False]
    assert table.trial.values.tolist() == [0, -1]
    assert table.params_kept.values.tolist() == [200, 100]
    assert auto_plan(sw, 0.5) == {"a": {"cuts": ["out|in"], "keep": "chi=1"}}


@pytest.mark.parametrize("seed", range(6))
def test_the_rule_is_minimax_then_least_summed_drop_checked_by_enumeration(seed):
    rng = np.random.default_rng(seed)
    layers = {}
    for i in range(4):
        dense = int(rng.integers(50, 400))
        sizes = sorted({int(s) for s in rng.integers(5, dense, 4)})
        drops = np.round(rng.uniform(-0.5, 8, len(sizes)), 2)
        layers[f"l{i}"] = (dense, list(zip(sizes, drops.tolist(), strict=True)))
    sw = fake_sweep(layers)
    budget = float(rng.uniform(0.25, 0.6))
    total = sum(d for d, _ in layers.values())
    best = None
    for combo in itertools.product(*[[(d, 0.0)] + [(p, max(x, 0.0)) for p, x in opts]
                                     for d, opts in layers.values()]):
        if sum(p for p, _ in combo) <= budget * total:
            key = (max(x for _, x in combo), sum(x for _, x in combo))
            best = key if best is None or key < best else best
    if best is None:
        with pytest.raises(InputError, match="budget"):
            budget_table(sw, budget)
        return
    table = budget_table(sw, budget)
    assert table.attrs["max_drop"] == pytest.approx(best[0])
    assert table.attrs["sum_drop"] == pytest.approx(best[1])
    assert int(table.params_kept.sum()) <= budget * total


@pytest.mark.parametrize("budget, words", [(0.0, "between 0 and 1"), (1.0, "between 0 and 1"),
                                           (True, "between 0 and 1"), (0.01, "larger budget")])
def test_impossible_budgets_are_refused_naming_what_would_do(budget, words):
    sw = fake_sweep({"a": (1000, [(200, 0.0)]), "b": (100, [(50, 5.0)])})
    with pytest.raises(InputError, match=words):
        budget_table(sw, budget)


def test_a_real_sweep_gives_a_plan_over_every_layer_within_budget():
    model = tiny_cnn()
    sw = sweep(model, learnable(seed=1), keeps="frac=1,frac=0.5,frac=0.2,frac=0.1",
               truncations=["svd", "data-aware"])
    for budget in (0.3, 0.5):
        table = budget_table(sw, budget)
        assert table.attrs["params_kept"] <= budget * table.attrs["params_dense"]
        plan = resolve_plan(model, auto_plan(sw, budget))
        assert set(plan.entries) == set(table.layer.values[table.compressed.values])
    assert len(auto_plan(sw, 0.3)) >= 2  # more than one layer pays for a tight budget


# --------------------------------------------------------------------------- re-training


def test_control_trains_the_untruncated_model_with_the_same_optimiser():
    test = learnable(seed=1)
    base = evaluate(tiny_cnn(), test)
    model = tiny_cnn()
    with truncated(model, PLAN):
        cut_acc = evaluate(model, test).accuracy
    ctrl = retrain(tiny_cnn(), PLAN, learnable(), test, epochs=2, optim=Optim(lr=0.05),
                   mode="control")
    dense = retrain(tiny_cnn(), PLAN, learnable(), test, epochs=2, optim=Optim(lr=0.05))
    assert float(ctrl.accuracy[0]) == base.accuracy == ctrl.attrs["baseline_accuracy"]
    assert float(ctrl.retruncated_accuracy[0]) == cut_acc == ctrl.attrs["truncated_accuracy"]
    assert float(ctrl.start_norm_loss.min()) > 0 and float(ctrl.drift.isel(epoch=-1).min()) > 0
    assert json.loads(ctrl.attrs["optim"]) == json.loads(dense.attrs["optim"])
    assert float(dense.accuracy[0]) == cut_acc


def test_dense_recovery_is_measured_against_retruncation_projected_keeps_it():
    kw = {"epochs": 2, "optim": Optim(lr=0.05)}
    dense = retrain(tiny_cnn(), PLAN, learnable(), learnable(seed=1), **kw)
    proj = retrain(tiny_cnn(), PLAN, learnable(), learnable(seed=1), mode="projected", **kw)
    assert float(dense.network_norm_loss[0]) < 1e-10 < float(dense.network_norm_loss[-1])
    assert float(proj.network_norm_loss.max()) < 1e-10
    n = proj.attrs["n_test"]
    assert np.abs(proj.retruncated_accuracy - proj.accuracy).max() <= 1 / n
    for ds in (dense, proj):
        assert ds.retruncated_accuracy.attrs["units"] == "fraction"
        assert ds.network_norm_loss.attrs["units"] == "1"


def test_spectra_after_retraining_are_those_of_the_kernels_across_the_plans_cut():
    model = tiny_cnn()
    ds = retrain(model, PLAN, learnable(), learnable(seed=1), epochs=1, optim=Optim(lr=0.05))
    assert ds.singular_values.dims == ("epoch", "layer", "k")
    plan = resolve_plan(model, PLAN)
    for name, entry in plan.items():
        w = dict(model.named_modules())[name].weight.detach().double()
        layout = entry.layout(tuple(w.shape))
        cut = parse_cuts(entry.cuts[0], layout)[0]
        s = np.linalg.svd(matricize(w.numpy(), layout.names, layout.sizes, cut),
                          compute_uv=False)
        got = ds.singular_values.sel(layer=name).isel(epoch=-1).values
        np.testing.assert_allclose(got[:s.size], s, rtol=1e-6, atol=1e-9)
        assert np.isnan(got[s.size:]).all() and str(ds.cut.sel(layer=name).values) == cut.label
        start = ds.singular_values.sel(layer=name).isel(epoch=0).values
        chi = int(ds.chi.sel(layer=name))
        assert np.nansum(start[chi:] ** 2) < 1e-10 * np.nansum(start ** 2)  # truncated start


def test_compression_of_the_plan_is_recorded_in_parameters():
    model = tiny_cnn()
    ds = retrain(copy.deepcopy(model), PLAN, learnable(), learnable(seed=1), epochs=0)
    kernels = sum(m.weight.numel() for m in model if hasattr(m, "weight"))
    assert ds.attrs["params_kernels"] == kernels
    saved = int((ds.params_dense - ds.params_factorized).sum())
    assert ds.attrs["params_kernels_compressed"] == kernels - saved
    assert ds.attrs["compression"] == pytest.approx(kernels / (kernels - saved))
    assert ds.params_factorized.attrs["units"] == "parameters"


def test_modes_concatenate_into_the_recovery_dataset_the_report_reads():
    parts = [retrain(tiny_cnn(), PLAN, learnable(), learnable(seed=1), 1, mode=m,
                     optim=Optim(lr=0.05)) for m in ("control", "dense", "projected")]
    ds = xr.concat(parts, dim="mode", combine_attrs="drop_conflicts").assign_coords(
        mode=["control", "dense", "projected"])
    assert ds.accuracy.dims == ("mode", "epoch") and ds.drift.dims == ("mode", "epoch", "layer")
    assert "plan" in ds.attrs and "baseline_accuracy" in ds.attrs


def test_an_empty_plan_is_refused():
    with pytest.raises(InputError, match="no layer"):
        retrain(tiny_cnn(), {}, learnable(), learnable(), 1)


def test_data_aware_entries_are_retruncated_with_their_grams():
    plan = {"6": {"cuts": ["out|in"], "keep": "chi=3", "truncation": "data-aware"}}
    ds = retrain(tiny_cnn(), plan, learnable(), learnable(seed=1), 1, optim=Optim(lr=0.05),
                 mode="projected")
    assert float(ds.norm_loss.max()) < 1e-8 and int(ds.chi.sel(layer="6")) == 3
    torch.testing.assert_close(float(ds.retruncated_accuracy[-1]), float(ds.accuracy[-1]),
                               atol=1 / ds.attrs["n_test"], rtol=0)
