"""Style, colours and writing of every figure: journal widths, the seaborn style, one colour
per cut.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

ONE_COLUMN = 3.4
TWO_COLUMNS = 7.0
PALETTE = "colorblind"
ALL_COLOR = "#222222"
#: The line of a truncation of all cuts of a layer at once (beside one line per cut).
ALL_CUTS_STYLE = {"color": ALL_COLOR, "ls": "-", "marker": "o"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Re-training modes: ``control`` (the untruncated model re-trained, the reference) in grey.
MODE_STYLE = {"control": {"color": "0.3", "marker": "D", "ls": "-"},
              "dense": {"color": sns.color_palette(PALETTE)[0], "marker": "o", "ls": "-"},
              "projected": {"color": sns.color_palette(PALETTE)[3], "marker": "s", "ls": "--"},
              "local": {"color": sns.color_palette(PALETTE)[2], "marker": "^", "ls": ":"}}
_RC = {"axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
       "legend.fontsize": 7, "legend.title_fontsize": 7, "font.size": 8,
       "lines.linewidth": 1.2, "lines.markersize": 3.5, "pdf.fonttype": 42,
       "ps.fonttype": 42, "figure.dpi": 100}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The figures' seaborn style (whitegrid, paper context), applied only inside the block."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", rc=_RC), \
            plt.rc_context(_RC):
        yield


def styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator: build the figure inside :func:`style`."""
    def wrapper(*args, **kwargs) -> Figure:
        with style():
            return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------- colours


def cut_colors(cuts: Sequence[str]) -> dict[str, dict]:
    """Line style per cut label (colour, linestyle, marker), fixed by the order of ``cuts``.

    Colours come from seaborn's colour-blind palette; past its 10 colours the
    linestyle and marker change too, so every cut stays distinguishable (all cuts at
    once: :data:`ALL_CUTS_STYLE`, dark grey).
    """
    colors = sns.color_palette(PALETTE)
    out: dict[str, dict] = {}
    for i, cut in enumerate(dict.fromkeys(str(c) for c in cuts)):
        j = i // len(colors)
        out[cut] = {"color": colors[i % len(colors)], "ls": LINESTYLES[j % len(LINESTYLES)],
                    "marker": MARKERS[(i + j) % len(MARKERS)]}
    return out


#: Tensorization methods (:mod:`corranalysis.tensorize.compare`): their names and order.
METHOD_NAMES = {"svd": "truncation (svd, best cut)", "tucker": "Tucker-2", "cp": "CP",
                "mpo": "MPO / TT", "adtn": "ADTN"}
_MARKERS = {"svd": "o", "tucker": "s", "cp": "^", "mpo": "D", "adtn": "*"}


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per tensorization method (:data:`METHOD_NAMES` order), the same in every
    figure; other names get the palette's later colours."""
    pal = sns.color_palette(PALETTE)
    known = {m: pal[i] for i, m in enumerate(METHOD_NAMES)}
    rest = iter(pal[len(METHOD_NAMES):])
    return {m: known.get(m) or next(rest) for m in dict.fromkeys(methods)}


def layer_colors(layers: Sequence[str]) -> dict[str, tuple]:
    """One colour per layer from the colour-blind-safe sequential ``viridis`` map (by depth)."""
    layers = list(dict.fromkeys(str(n) for n in layers))
    cmap = plt.get_cmap("viridis")
    n = max(len(layers) - 1, 1)
    return {name: cmap(0.9 * i / n) for i, name in enumerate(layers)}


def _palette(palette: Mapping[str, dict] | None, cuts: Sequence[str]) -> Mapping[str, dict]:
    return palette if palette is not None else cut_colors(cuts)


def _cut_legend(fig: Figure, palette: Mapping[str, dict], cuts: Sequence[str],
                title: str = "cut", extra: Sequence[Line2D] = ()) -> None:
    """One legend above the panels: the cuts (then ``extra`` handles, e.g. the baseline)."""
    handles = [Line2D([], [], color=palette[c]["color"], ls=palette[c]["ls"],
                      marker=palette[c]["marker"], label=c) for c in cuts] + list(extra)
    if handles:
        ncol = max(1, min(len(handles), int(fig.get_figwidth() // 1.6)))
        fig.legend(handles=handles, title=title, loc="outside upper center", ncol=ncol,
                   frameon=False)


def save_figure(fig: Figure, stem: str | object, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[str]:
    """Write ``fig`` as ``stem.<fmt>`` for each format (PDF/SVG are vector) at its exact
    size (the width stays a journal column width); close it."""
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        with style():
            fig.savefig(path, dpi=dpi, bbox_inches=None,
                        metadata={"Creator": "corranalysis"} if fmt in ("pdf", "png") else None)
        paths.append(path)
    plt.close(fig)
    return paths
