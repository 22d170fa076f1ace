"""``across_seeds``: which findings of :func:`corranalysis.linkage.link` hold over
training seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import InputError
from ..provenance import provenance

# --------------------------------------------------------------------------- across seeds


def _union_reindex(links: list[xr.Dataset]) -> list[xr.Dataset]:
    """``links`` reindexed to the union of each dimension's labels (first-appearance
    order); missing entries NaN, False (bool) or "" (strings)."""
    dims = dict.fromkeys(d for ds in links for d in ds.dims if d in ds.coords)
    index = {d: list(dict.fromkeys(v for ds in links if d in ds.coords
                                   for v in ds[d].values.tolist())) for d in dims}
    if "all" in index.get("group", []):  # the all-layers group stays last
        index["group"] = [g for g in index["group"] if g != "all"] + ["all"]
    out = []
    for ds in links:
        fill = {name: (False if v.dtype == bool else "" if v.dtype.kind in "OUS" else np.nan)
                for name, v in ds.data_vars.items()}
        out.append(ds.reindex({d: index[d] for d in ds.dims if d in index}, fill_value=fill))
    return out


def across_seeds(links: Sequence[xr.Dataset], seeds: Sequence[int]) -> xr.Dataset:
    """Link datasets of several training seeds, stacked along a new dim ``seed``.

    ``links``: outputs of :func:`link`, one per training seed; ``seeds``: their seeds.
    Layers, cuts and the other labels are outer-joined (missing: NaN). Adds
    ``holds(measure, target)``: the Spearman correlation has the same sign and p < 0.05
    in every seed; ``partial_holds`` likewise for the partial correlation; and
    ``tolerated_norm_loss_mean``, ``_min``, ``_max`` ``(layer, cut)`` over seeds;
    ``baseline_accuracy(seed)``.
    """
    links, seeds = list(links), list(seeds)
    if not links or len(links) != len(seeds):
        raise InputError(f"links and seeds: give one seed per link dataset (got {len(links)} "
                         f"links and {len(seeds)} seeds)")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds={seeds!r}: give distinct integers")
    for s, ds in zip(seeds, links, strict=True):
        if not isinstance(ds, xr.Dataset) or not {"spearman_rho", "spearman_p",
                                                  "tolerated_norm_loss"} <= set(ds.data_vars):
            raise InputError(f"links (seed {s}): expected the output of corranalysis.link")
    stacked = xr.concat(_union_reindex(links), dim="seed", join="exact",
                        combine_attrs="drop_conflicts", data_vars="all", coords="minimal",
                        compat="override")
    stacked = stacked.assign_coords(seed=[int(s) for s in seeds])

    def holds(rho: xr.DataArray, p: xr.DataArray) -> xr.DataArray:
        sign = np.sign(rho)
        same = ((sign > 0).all("seed") | (sign < 0).all("seed"))
        return same & (p < 0.05).all("seed")

    tol = stacked["tolerated_norm_loss"]
    stacked["holds"] = holds(stacked["spearman_rho"], stacked["spearman_p"])
    stacked["holds"].attrs["long_name"] = ("same sign and p < 0.05 in every seed (Spearman)")
    if "partial_rho" in stacked:
        stacked["partial_holds"] = holds(stacked["partial_rho"], stacked["partial_p"])
        stacked["partial_holds"].attrs["long_name"] = ("same sign and p < 0.05 in every seed "
                                                       "(partial, given log chi_max)")
    finite = np.isfinite(tol).any("seed")
    stacked["tolerated_norm_loss_mean"] = tol.mean("seed", skipna=True).where(finite)
    stacked["tolerated_norm_loss_min"] = tol.min("seed", skipna=True).where(finite)
    stacked["tolerated_norm_loss_max"] = tol.max("seed", skipna=True).where(finite)
    stacked["baseline_accuracy"] = ("seed", [float(ds.attrs.get("baseline_accuracy", np.nan))
                                             for ds in links])
    stacked.attrs.update(provenance(seeds=[int(s) for s in seeds]))
    return stacked
