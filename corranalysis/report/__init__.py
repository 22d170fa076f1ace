"""The study report: HTML, a Markdown summary and every figure (PNG and vector PDF).

``build_report`` renders datasets into a report directory; ``build_figures`` writes the
paper figures alone. Figures are pure functions of datasets (one each, in ``_figures``).
"""

from ._build import build_figures, build_report, findings, load_run

__all__ = ["build_figures", "build_report", "findings", "load_run"]
