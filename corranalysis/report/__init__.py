"""The study report: HTML, a Markdown summary and every figure (PNG and vector PDF).

``build_report`` renders a run (as :func:`corranalysis.load_run` reads it) into a report
directory, with a section on tensorization at equal budgets when given comparisons
(``compare.nc``, read by ``read_comparisons``); ``build_tensorization_report`` renders
comparisons alone; ``build_figures`` writes the paper figures alone. Figures are pure
functions of datasets (one each, in ``figures``).
"""

from ._build import build_figures, build_report, findings
from ._tensorization import build_tensorization_report, comparison_files, read_comparisons

__all__ = ["build_figures", "build_report", "build_tensorization_report", "comparison_files",
           "findings", "read_comparisons"]
