"""Tolerated norm loss and output error against depth for several runs, side by side.

    python scripts/depth_figure.py runs/fashion_cnn4 runs/fashion_resnet20 --out docs/figures/depth

Writes OUT.png and OUT.pdf (corranalysis.report.figures.depth_figure on each run's
linkage.nc, one column per run).
"""

from __future__ import annotations

import argparse

from corranalysis.pipeline import load_run
from corranalysis.report.figures import TWO_COLUMNS, depth_figure, save_figure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories written by `corranalysis run`")
    p.add_argument("--out", required=True, help="output path without suffix")
    args = p.parse_args()
    links = {}
    for path in args.runs:
        run = load_run(path, required=("linkage",))
        links[f"{run.config.get('model', run.name)}"] = run.datasets["linkage"]
    for written in save_figure(depth_figure(links, width=TWO_COLUMNS), args.out):
        print(written)


if __name__ == "__main__":
    main()
