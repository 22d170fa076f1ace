"""Run the notebooks on a finished study and publish them with their outputs.

``make demo`` calls this after the study: every notebook of ``notebooks/`` runs top to bottom
(nbclient, in the project's Jupyter kernel) on the study of ``--config`` (its run directory is
already complete, so nothing is re-computed but what a notebook computes itself) and is
written, with its outputs, to ``OUT/NAME.ipynb`` and ``OUT/NAME.html``, plus ``OUT/index.html``
listing them. The pages are self-contained (figures embedded, no network). The committed
notebooks stay without outputs; the tests run them without publishing anything.

    python scripts/publish_notebooks.py --config configs/fashion_cnn4.yaml --out reports/notebooks

Exit code 1 when a notebook failed (its page still shows the cells up to the error).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ROOT = Path(__file__).resolve().parents[1]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FORMATTER = HtmlFormatter(nowrap=False, cssclass="code")
_MARKDOWN = MarkdownIt("commonmark").enable("table")
_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; }
.cell { margin: 1em 0; }
.code { background: #f6f8fa; border-left: 3px solid #4c72b0; padding: .2em .8em;
        overflow-x: auto; }
.code pre { margin: .4em 0; }
.out { margin: .3em 0 0 0; padding: 0 .8em; overflow-x: auto; }
.out pre { margin: .3em 0; white-space: pre-wrap; }
.out pre.stderr { color: #555; background: #fafafa; }
.out pre.error { color: #a00; background: #fff4f4; }
.out img { max-width: 100%; }
.md h1 { border-bottom: 1px solid #ddd; }
.prompt { color: #888; font: 12px monospace; }
footer { margin-top: 3em; color: #777; font-size: 13px; }
"""


def _text(value: str | list[str]) -> str:
    return _ANSI.sub("", "".join(value) if isinstance(value, list) else value)


def _output_html(out: nbformat.NotebookNode) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return (f'<pre class="{html.escape(out.get("name", "stdout"))}">'
                f"{html.escape(_text(out.get('text', '')))}</pre>")
    if kind == "error":
        trace = "\n".join(_text(line) for line in out.get("traceback", [])) or (
            f"{out.get('ename')}: {out.get('evalue')}")
        return f'<pre class="error">{html.escape(trace)}</pre>'
    data = out.get("data", {})
    if "image/png" in data:
        return f'<img alt="figure" src="data:image/png;base64,{_text(data["image/png"])}">'
    if "image/svg+xml" in data:
        return _text(data["image/svg+xml"])
    if "text/html" in data:
        return _text(data["text/html"])
    if "text/markdown" in data:
        return _MARKDOWN.render(_text(data["text/markdown"]))
    if "text/plain" in data:
        return f"<pre>{html.escape(_text(data['text/plain']))}</pre>"
    return ""


def notebook_html(nb: nbformat.NotebookNode, title: str, note: str = "") -> str:
    """One self-contained HTML page of a notebook with its outputs: markdown rendered, code
    highlighted, figures embedded as PNG, rich (HTML) outputs as they are."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cells.append(f'<div class="cell md">{_MARKDOWN.render(_text(cell.source))}</div>')
        elif cell.cell_type == "code":
            count = cell.get("execution_count")
            prompt = f'<div class="prompt">In [{count if count is not None else " "}]:</div>'
            outs = "".join(_output_html(o) for o in cell.get("outputs", []))
            cells.append(f'<div class="cell">{prompt}'
                         f"{highlight(_text(cell.source), PythonLexer(), _FORMATTER)}"
                         + (f'<div class="out">{outs}</div>' if outs else "") + "</div>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}"
            f"{_FORMATTER.get_style_defs('.code')}</style></head><body>"
            + "\n".join(cells)
            + f"<footer>{html.escape(note)}</footer></body></html>\n")


def _index_html(rows: list[tuple[str, str, str]], note: str) -> str:
    items = "".join(f'<li><a href="{html.escape(name)}.html">{html.escape(title)}</a>'
                    f" — {html.escape(status)}</li>" for name, title, status in rows)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Notebooks</title><style>{_STYLE}</style></head><body>"
            f"<h1>Notebooks, run with their outputs</h1><ul>{items}</ul>"
            f"<footer>{html.escape(note)}</footer></body></html>\n")


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in _text(cell.source).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def _environment(config: Path, out: Path) -> dict[str, str]:
    """What the notebooks read: the study's configuration, and for the "your own model"
    notebook the study's own checkpoint and data set standing in for the user's."""
    from corranalysis.config import load_config

    study = load_config(config)
    return {"CORRANALYSIS_CONFIG": str(config),
            # Jupyter's own: figures become PNG outputs (Agg would leave them out)
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "CORRANALYSIS_MODEL_FILE": str(study.run_dir / "model.pt"),
            "CORRANALYSIS_MODEL": study.model, "CORRANALYSIS_DATASET": study.dataset,
            "CORRANALYSIS_OUT": str(out / "04_your_own_model")}


def publish(config: Path, out: Path, *, kernel: str = "corranalysis", timeout: int = 1200,
            notebooks: list[Path] | None = None) -> list[str]:
    """Run each notebook and write its executed copy and page under ``out``; the names of
    the notebooks that failed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from corranalysis.io import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(_environment(config, out))
    failed, rows = [], []
    for path in notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        status = "ran"
        try:
            NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                           resources={"metadata": {"path": str(ROOT)}}).execute()
        except CellExecutionError as exc:
            failed.append(path.name)
            status = f"FAILED: {str(exc).strip().splitlines()[-1][:200]}"
        seconds = time.perf_counter() - t0
        note = (f"{path.name} run on the study {config} in {seconds:.0f} s, "
                f"{time.strftime('%Y-%m-%d %H:%M')}; {status}")
        title = _title(nb, path.stem)
        with atomic_path(out / path.name) as tmp:
            nbformat.write(nb, tmp)
        with atomic_path(out / f"{path.stem}.html") as tmp:
            tmp.write_text(notebook_html(nb, title, note))
        rows.append((path.stem, title, f"{status} in {seconds:.0f} s"))
        print(f"notebook {path.name}: {status} in {seconds:.0f} s -> "
              f"{out / (path.stem + '.html')}", file=sys.stderr)
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(_index_html(rows, f"run on the study {config}"))
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fashion_cnn4.yaml",
                        help="the study the notebooks read (already run)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "notebooks",
                        help="folder of the executed notebooks and their pages")
    parser.add_argument("--kernel", default="corranalysis", help="Jupyter kernel name")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell at most")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: all)")
    args = parser.parse_args(argv)
    failed = publish(args.config.resolve(), args.out.resolve(), kernel=args.kernel,
                     timeout=args.timeout, notebooks=[p.resolve() for p in args.notebooks])
    if failed:
        print(f"notebooks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
