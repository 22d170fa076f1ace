"""Trial views and linking spectra to accuracy: tolerated norm loss and Spearman
correlations; sweeps written before the scope coordinate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from test_sweep import loader, tiny_cnn

from corranalysis.errors import InputError
from corranalysis.io import read_netcdf, write_netcdf
from corranalysis.kernels import extract_kernels
from corranalysis.linkage import (
    curves,
    kept_fraction,
    link,
    scope_trials,
    scoped_sweep,
    single_trials,
    tolerated_norm_loss,
    tolerated_trial,
    truncated_layers,
)
from corranalysis.spectra import compute_spectra
from corranalysis.sweep import sweep

FRACS = [1.0, 0.5, 0.25]


def fake_sweep(curves: dict[tuple[str, str], list[tuple[float, float, int]]],
               base: float = 0.9) -> xr.Dataset:
    """A sweep dataset from (layer, cut) -> [(norm_loss, accuracy, chi) per frac keep]."""
    rows = [(layer, cut, f"frac={f:g}", nl, acc, chi)
            for (layer, cut), pts in curves.items()
            for f, (nl, acc, chi) in zip(FRACS, pts, strict=True)]
    layer, cuts, keep, nl, acc, chi = map(list, zip(*rows, strict=True))
    ds = xr.Dataset({"accuracy": ("trial", acc), "norm_loss": ("trial", nl),
                     "chi": ("trial", chi), "n_layers": ("trial", [1] * len(rows)),
                     "plan": ("trial", [json.dumps({}) for _ in rows])},
                    coords={"trial": np.arange(len(rows)),
                            "scope": ("trial", ["layer"] * len(rows)),
                            "layer": ("trial", layer), "cuts": ("trial", cuts),
                            "keep": ("trial", keep)})
    ds.attrs["baseline_accuracy"] = base
    return ds


def fake_spectra(layers, cuts, entropy: dict) -> xr.Dataset:
    k = np.arange(1, 5)
    shape = (len(layers), len(cuts))
    nl = np.broadcast_to(np.array([0.5, 0.2, 0.05, 0.0]), (*shape, 4))
    return xr.Dataset(
        {"entropy": (("layer", "cut"), np.array([[entropy[a, b] for b in cuts] for a in layers])),
         "effective_rank": (("layer", "cut"), np.full(shape, 2.0)),
         "chi_max": (("layer", "cut"), np.full(shape, 4.0)),
         "norm_loss": (("layer", "cut", "k"), nl)},
        coords={"layer": layers, "cut": cuts, "k": k})


def test_tolerated_norm_loss_is_the_last_point_before_the_drop_exceeds_delta():
    curves = {
        ("a", "x|y"): [(0.0, 0.90, 4), (0.02, 0.895, 2), (0.3, 0.50, 1)],   # tolerates 0.02
        ("a", "x,z|y"): [(0.0, 0.90, 4), (0.05, 0.70, 2), (0.4, 0.20, 1)],  # tolerates 0
        ("b", "x|y"): [(0.0, 0.90, 4), (0.1, 0.899, 2), (0.2, 0.891, 1)],   # tolerates 0.2
    }
    ent = {("a", "x|y"): 1.0, ("a", "x,z|y"): 1.2, ("b", "x|y"): 0.3, ("b", "x,z|y"): 0.0}
    out = link(fake_sweep(curves), fake_spectra(["a", "b"], ["x|y", "x,z|y"], ent), delta=1.0)
    tol = out.tolerated_norm_loss
    assert float(tol.sel(layer="a", cut="x|y")) == 0.02
    assert float(out.tolerated_chi.sel(layer="a", cut="x|y")) == 2
    assert float(tol.sel(layer="a", cut="x,z|y")) == 0.0
    assert float(tol.sel(layer="b", cut="x|y")) == pytest.approx(0.2)
    assert np.isnan(float(tol.sel(layer="b", cut="x,z|y")))  # no trials there
    assert float(out.accuracy_drop_at_frac.sel(layer="a", cut="x,z|y")) == pytest.approx(20)
    # higher entropy, less tolerance: a negative rank correlation over the 3 pairs
    rho = float(out.spearman_rho.sel(measure="entropy", target="tolerated_norm_loss"))
    assert rho == pytest.approx(-1.0)
    assert int(out.n_pairs.sel(measure="entropy", target="tolerated_norm_loss")) == 3
    assert out.attrs["frac"] == 0.5


def test_link_on_a_real_sweep_and_spectra():
    model, data = tiny_cnn(), loader()
    sw = sweep(model, data, keeps="frac=1,frac=0.5,frac=0.25,frac=0.1,loss=0.1",
               plans="layer,all-layers")
    spectra = compute_spectra(extract_kernels(model), device="cpu")
    out = link(sw, spectra, delta=2.0)
    assert out.tolerated_norm_loss.dims == ("layer", "cut")
    assert list(out.layer.values) == ["0", "3", "6"]
    assert out.spearman_rho.dims == ("measure", "target")
    ok = np.isfinite(out.tolerated_norm_loss)
    assert int(ok.sum()) == 7 + 7 + 1
    assert ((out.tolerated_norm_loss >= 0) | ~ok).all()


def test_link_bad_input():
    with pytest.raises(InputError, match="delta"):
        link(fake_sweep({("a", "x|y"): [(0, 1, 1)] * 3}), xr.Dataset(), delta=-1)
    with pytest.raises(InputError, match="spectra dataset lacks"):
        link(fake_sweep({("a", "x|y"): [(0, 1, 1)] * 3}), xr.Dataset())


def test_the_tolerance_walk_stops_at_the_first_drop_beyond_delta():
    # by norm loss: 0 (ok), 0.1 (ok), 0.2 (2 points: stop), 0.3 (ok again, never reached)
    rows = xr.Dataset({"norm_loss": ("trial", [0.2, 0.0, 0.3, 0.1]),
                       "accuracy": ("trial", [0.88, 0.9, 0.9, 0.895])})
    assert tolerated_trial(rows, 0.9, 1.0) == 3
    assert tolerated_norm_loss(rows, 0.9, 1.0) == 0.1
    assert tolerated_norm_loss(rows, 0.9, 5.0) == 0.3
    assert tolerated_trial(rows, 0.95, 1.0) is None  # even the smallest truncation costs more
    assert tolerated_norm_loss(rows, 0.95, 1.0) == 0.0


def test_trial_views_select_by_scope_and_group_curves():
    model, data = tiny_cnn(), loader()
    sw = sweep(model, data, keeps="frac=1,frac=0.5", plans="layer,all-cuts,all-layers")
    for scope in ("layer", "all-cuts", "all-layers"):
        part = scope_trials(sw, scope)
        assert part.sizes["trial"] > 0 and set(part.scope.values.tolist()) == {scope}
    assert single_trials(sw).equals(scope_trials(sw, "layer"))
    groups = curves(single_trials(sw))
    assert len(groups) == 7 + 7 + 1 and all(g.sizes["trial"] == 2 for g in groups.values())
    assert truncated_layers(sw) == ["0", "3", "6"]
    with pytest.raises(InputError, match="valid: layer, all-cuts, all-layers"):
        scope_trials(sw, "all")


def test_kept_fraction_is_chi_over_chi_max_or_the_frac_of_the_keep_spec():
    model, data = tiny_cnn(), loader()
    sw = sweep(model, data, keeps="frac=0.5,chi=1", plans="layer,all-layers")
    spectra = compute_spectra(extract_kernels(model), device="cpu")
    single = single_trials(sw)
    kept = kept_fraction(single, spectra)
    chi_max = [float(spectra.chi_max.sel(layer=a, cut=b))
               for a, b in zip(single.layer.values, single.cuts.values, strict=True)]
    np.testing.assert_array_equal(kept, single.chi.values / np.array(chi_max))
    combined = scope_trials(sw, "all-layers")
    combined = combined.where(combined.layer == "0,3", drop=True)
    fracs = kept_fraction(combined, spectra)
    assert set(fracs[combined.keep.values == "frac=0.5"]) == {0.5}
    assert np.isnan(fracs[combined.keep.values == "chi=1"]).all()


def old_layout(sw: xr.Dataset) -> xr.Dataset:
    """``sw`` as the previous version wrote it: no scope, "all" in layer and cuts."""
    scope = sw.scope.values
    layer = np.where(scope == "all-layers", "all", sw.layer.values)
    cuts = np.where(scope == "all-cuts", "all", sw.cuts.values)
    return sw.drop_vars("scope").assign_coords(layer=("trial", layer), cuts=("trial", cuts))


def test_a_sweep_written_before_the_scope_coordinate_is_converted_on_reading(tmp_path):
    model, data = tiny_cnn(), loader()
    sw = sweep(model, data, keeps="frac=1,frac=0.5,frac=0.25", plans="layer,all-cuts,all-layers")
    write_netcdf(old_layout(sw), tmp_path / "sweep.nc")
    old = read_netcdf(tmp_path / "sweep.nc")
    assert "scope" not in old.coords and "all" in old.layer.values
    new = scoped_sweep(old)
    for coord in ("scope", "layer", "cuts"):
        assert new[coord].values.tolist() == sw[coord].values.tolist(), coord
    xr.testing.assert_equal(new.reset_coords(drop=True), sw.reset_coords(drop=True))
    spectra = compute_spectra(extract_kernels(model), device="cpu")
    xr.testing.assert_equal(link(old, spectra).drop_attrs(), link(sw, spectra).drop_attrs())


def test_an_old_sweep_without_plans_is_refused_with_how_to_redo_it():
    sw = sweep(tiny_cnn(), loader(), keeps="frac=0.5", plans="layer,all-layers")
    with pytest.raises(InputError, match=r"earlier version.*--force sweep"):
        scoped_sweep(old_layout(sw).drop_vars("plan"))
    with pytest.raises(InputError, match="expected dim 'trial'"):
        scoped_sweep(xr.Dataset())
