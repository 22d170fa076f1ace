"""Report and paper figures: one pure function per figure, xarray datasets in, Figure out.

Every figure uses the same seaborn style (:func:`style`), the colour-blind-safe
seaborn ``"colorblind"`` palette, and one mapping cut label → colour
(:func:`cut_colors`), so a cut has the same colour in every figure. Widths follow
journal columns: :data:`ONE_COLUMN` (3.4 in) and :data:`TWO_COLUMNS` (7.0 in).

Accuracy after truncation is plotted as the drop in points below the untruncated
baseline on a symlog axis (linear within ±δ), each panel with its own limits, over the
band of tolerated drops (≤ δ) and its sampling margin (δ + z·SE, the tolerance rule of
:mod:`corranalysis.linkage`). Cuts with the same matrix are drawn once and χ_max = 1
cuts left out (:func:`cut_classes`); norm losses and kept fractions are fractions.

The figures live in private modules by topic (``_spectra``, ``_accuracy``,
``_compression``, ``_central``, ``_linkage``, ``_recovery``, ``_seeds``, ``_tensorize``,
``_training``; style and shared panel helpers in ``_style`` and ``_axes``);
:func:`figure_makers` lists the report's figures in section order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

import matplotlib

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)  # headless by default; Jupyter keeps its inline backend

import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ...linkage import Z_95, curves, scope_trials  # noqa: E402
from ._accuracy import (  # noqa: E402
    accuracy_vs_kept_fraction,
    accuracy_vs_norm_loss,
    combined_truncations,
)
from ._axes import cut_classes, paired_drop  # noqa: E402
from ._central import central_figure  # noqa: E402
from ._comparison import comparison_figure, final_accuracy  # noqa: E402
from ._compression import (  # noqa: E402
    compression_figure,
    network_ratio,
    pareto_front,
    truncated_params,
)
from ._linkage import depth_figure, layer_role, tolerance_figure  # noqa: E402
from ._recovery import (  # noqa: E402
    recovery_figure,
    recovery_modes,
    recovery_spectra_figure,
)
from ._seeds import seeds_figure  # noqa: E402
from ._spectra import (  # noqa: E402
    entropy_heatmap,
    norm_loss_figure,
    normalized_entropy,
    spectra_figure,
)
from ._style import (  # noqa: E402
    ALL_CUTS_STYLE,
    METHOD_NAMES,
    ONE_COLUMN,
    PALETTE,
    TWO_COLUMNS,
    cut_colors,
    layer_colors,
    method_colors,
    save_figure,
    style,
    styled,
)
from ._tensorize import tensorize_figure  # noqa: E402
from ._training import training_figure  # noqa: E402


def figure_makers(datasets: Mapping[str, xr.Dataset], width: float | None = None,
                  layers: Sequence[str] | None = None, *,
                  total_params: float | None = None) -> dict[str, Callable[[], Figure]]:
    """A function drawing each figure the ``datasets`` allow, by file stem, in the order of
    the report's sections (``central``, on the report's first screen, leads the sweep's).

    ``datasets``: any of ``spectra``, ``sweep``, ``linkage``, ``recovery``,
    ``tensorize``, ``metrics``, ``seeds`` (:func:`corranalysis.linkage.across_seeds`), and
    ``comparison`` or ``compare`` (extra points of the compression figures, see
    :func:`compression_figure`). ``width``: force one width (default: each figure's own,
    two columns for the multi-panel ones, one column for the rest).
    ``total_params``: the whole network's parameters (default: the truncated kernels').
    """
    spectra, sw, lk = datasets.get("spectra"), datasets.get("sweep"), datasets.get("linkage")
    cuts: list[str] = []
    for ds in (spectra, lk):
        if ds is not None:
            cuts += [str(c) for c in ds["cut"].values]
    if sw is not None:  # the trials along one cut
        cuts += [cut for scope in ("layer", "all-layers")
                 for _, cut in curves(scope_trials(sw, scope))]
    pal = cut_colors(list(dict.fromkeys(cuts)))
    delta = float(lk.attrs.get("delta_points", 1.0)) if lk is not None else 1.0
    z = float(lk.attrs.get("z", Z_95)) if lk is not None else Z_95
    merge = lk if lk is not None else spectra
    extra = datasets.get("comparison", datasets.get("compare"))
    two = width or TWO_COLUMNS
    one = width or ONE_COLUMN
    makers: list[tuple[str, Callable[[], Figure]]] = []
    if "metrics" in datasets:
        makers.append(("training", lambda: training_figure(datasets["metrics"], width=one)))
    if spectra is not None:
        makers += [
            ("spectra", lambda: spectra_figure(spectra, layers, pal, width=two)),
            ("entropy", lambda: entropy_heatmap(spectra, layers, width=two)),
            ("norm_loss", lambda: norm_loss_figure(spectra, layers, pal, width=two)),
        ]
    sized = sw is not None and "params_dense" in sw and "params_factorized" in sw
    if sized and lk is not None:  # the first screen's figure leads the sweep's
        makers.append(("central", lambda: central_figure(sw, lk, width=two,
                                                         total_params=total_params,
                                                         extra=extra)))
    if sw is not None:
        makers += [
            ("accuracy_vs_norm_loss",
             lambda: accuracy_vs_norm_loss(sw, layers, pal, delta, width=two, cuts=merge, z=z)),
            ("accuracy_vs_kept_fraction",
             lambda: accuracy_vs_kept_fraction(sw, spectra, layers, pal, delta, width=two,
                                               z=z)),
            ("combined_truncations",
             lambda: combined_truncations(sw, pal, delta, width=two, z=z)),
        ]
    if sized:
        makers.append(("compression",
                       lambda: compression_figure(sw, layers, delta, width=two, extra=extra,
                                                  total_params=total_params, z=z)))
    if lk is not None:
        makers.append(("tolerance", lambda: tolerance_figure(lk, pal, width=two)))
        makers.append(("depth", lambda: depth_figure({"this model": lk},
                                                     width=one if width else ONE_COLUMN)))
    if "seeds" in datasets:
        makers.append(("seeds", lambda: seeds_figure(datasets["seeds"], width=two)))
    if "recovery" in datasets:
        rec = datasets["recovery"]
        makers.append(("recovery", lambda: recovery_figure(rec, width=two, delta=delta)))
        if "singular_values" in rec and "chi" in rec:
            makers.append(("recovery_spectra", lambda: recovery_spectra_figure(rec, width=two)))
    if "tensorize" in datasets and sw is not None:
        makers.append(("tensorize", lambda: tensorize_figure(datasets["tensorize"], sw, pal,
                                                             width=one)))
    return dict(makers)


__all__ = [
    "ALL_CUTS_STYLE", "METHOD_NAMES", "ONE_COLUMN", "PALETTE", "TWO_COLUMNS",
    "accuracy_vs_kept_fraction", "accuracy_vs_norm_loss", "central_figure",
    "combined_truncations", "comparison_figure", "compression_figure", "cut_classes",
    "cut_colors", "depth_figure", "entropy_heatmap", "figure_makers", "final_accuracy",
    "layer_colors", "layer_role", "method_colors", "network_ratio", "norm_loss_figure",
    "normalized_entropy", "paired_drop", "pareto_front", "recovery_figure", "recovery_modes",
    "recovery_spectra_figure", "save_figure", "seeds_figure", "spectra_figure", "style", "styled",
    "tensorize_figure", "tolerance_figure", "training_figure", "truncated_params",
]
