"""The training curves of the original training."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from ._style import (
    ONE_COLUMN,
    PALETTE,
    styled,
)


@styled
def training_figure(metrics: xr.Dataset, width: float = ONE_COLUMN) -> Figure:
    """Training and test accuracy per epoch of the original training."""
    fig, ax = plt.subplots(figsize=(width, 2.3), layout="constrained")
    colors = sns.color_palette(PALETTE)
    for i, var in enumerate(("train_accuracy", "test_accuracy")):
        if var in metrics:
            ax.plot(metrics["epoch"].values, 100 * metrics[var].values, marker="o",
                    color=colors[i + 1], label=var.split("_")[0])
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0.5, max(float(metrics["epoch"].max()), 1.0) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="lower right")
    ax.set_title("training")
    return fig
