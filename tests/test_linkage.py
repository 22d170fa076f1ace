"""Linking spectra to accuracy: tolerated norm loss and Spearman correlations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from test_sweep import loader, tiny_cnn

from corranalysis.errors import InputError
from corranalysis.kernels import extract_kernels
from corranalysis.linkage import link
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
                    coords={"trial": np.arange(len(rows)), "layer": ("trial", layer),
                            "cuts": ("trial", cuts), "keep": ("trial", keep)})
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
