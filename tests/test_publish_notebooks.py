"""`make demo` publishes the notebooks with their outputs as self-contained pages."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("publish_notebooks",
                                               ROOT / "scripts" / "publish_notebooks.py")
publish = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(publish)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


def test_a_page_shows_markdown_code_figures_tables_and_errors_offline():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("x = 1 < 2\nx", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="sweep: done, 5 trial\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Fig>"}),
        nbformat.v4.new_output("execute_result", data={"text/html": "<table><tr><td>7</td>"
                                                                    "</tr></table>",
                                                       "text/plain": "7"}, execution_count=1),
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                               traceback=["\x1b[31mValueError\x1b[0m: bad <x>"]),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Spectra\n\nSome *text*."), code]
    page = publish.notebook_html(nb, publish._title(nb, "nb"), "ran in 3 s")
    assert "<title>Spectra</title>" in page and "<em>text</em>" in page
    assert f"data:image/png;base64,{PNG}" in page and "<td>7</td>" in page
    assert "sweep: done, 5 trial" in page and "ValueError: bad &lt;x&gt;" in page
    assert "\x1b" not in page and "http" not in page.replace("http-equiv", "")
    assert "x</span>" in page or "x =" in page  # the code is shown
