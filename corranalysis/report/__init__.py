"""The study report: HTML, a Markdown summary and every figure (PNG and vector PDF).

``build_report`` renders a run (as :func:`corranalysis.load_run` reads it) into a report
directory; ``build_figures`` writes the paper figures alone. Figures are pure functions of
datasets (one each, in ``figures``).
"""

from ._build import build_figures, build_report, findings

__all__ = ["build_figures", "build_report", "findings"]
