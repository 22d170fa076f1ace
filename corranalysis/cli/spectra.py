"""``corranalysis spectra``: singular-value spectra of a model's kernels on every cut."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console

_NONE = "–"  # a layer without any cut of the request


def summary_table(spectra):
    """Per layer: kind, shape, number of cuts computed, entropy range, lowest effective
    rank / chi_max; '–' where a layer has no cut of the request (explicit labels that do not
    fit its legs)."""
    import numpy as np
    from rich.table import Table

    table = Table(title="spectra", show_lines=False)
    # full layer names, never cut short: folded in a narrow terminal, and printed at the
    # width they need into a pipe or file (see _print_table)
    table.add_column("layer", no_wrap=True, overflow="fold")
    for col in ("kind", "shape", "cuts", "entropy min", "entropy max",
                "min eff.rank/chi_max"):
        table.add_column(col, justify="left" if col in ("kind", "shape") else "right")
    for name in spectra["layer"].values:
        row = spectra.sel(layer=name)
        ent = row["entropy"].values
        ok = np.isfinite(ent)
        ratio = (row["effective_rank"] / row["chi_max"]).values[ok]
        stats = ([f"{np.min(ent[ok]):.3f}", f"{np.max(ent[ok]):.3f}", f"{np.min(ratio):.3f}"]
                 if ok.any() else [_NONE] * 3)
        table.add_row(str(name), str(row["kind"].values), str(row["shape"].values),
                      str(int(ok.sum())), *stats)
    return table


def _print_table(table) -> None:
    """Print ``table``; into a pipe or file at the width it needs, so no name is cut."""
    from rich.console import Console
    from rich.measure import Measurement

    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update_width(10**4), table).maximum
    Console(file=console.file, width=max(console.width, needed), color_system=None,
            highlight=False).print(table)


@app.command()
def spectra(
    source: Path = typer.Argument(..., help="weight file: checkpoint (.pt), "
                                ".safetensors, .npz or .onnx"),
    out: Path = typer.Option(..., "--out", "-o", help="netCDF file to write"),
    model: str | None = typer.Option(None, help="registry name or package.module:factory"),
    layers: str | None = typer.Option(None, help="glob(s) on layer names, comma-separated"),
    kinds: str | None = typer.Option(None, help="layer kinds, e.g. conv2d,linear "
                                         "(also embedding, conv_transpose2d, ...)"),
    legs: str = typer.Option("natural", help="natural | prime | binary"),
    cuts: list[str] = typer.Option(["all"], help="all | contiguous | a cut label (repeat "
                                   "or separate with ';'), e.g. 'out,kh|in,kw'"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    method: str = typer.Option("fast", help="fast | quimb (reference)"),
    max_memory: str | None = typer.Option(
        None, "--max-memory", help="memory budget, e.g. 8GB or 500MB (default: half of the "
        "memory available); a larger request is refused before it starts"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out "
                                   "file that corranalysis did not write"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="show the estimate and a progress bar"),
) -> None:
    """Singular-value spectra of every kernel across every cut, saved as netCDF."""
    from ..errors import InputError
    from ..io import check_output_path, write_netcdf
    from ..kernels import as_cuts, extract_kernels
    from ..runtime import load_trained
    from ..spectra import compute_spectra, parse_memory

    # everything that can be refused is refused before any work and before any output
    check_output_path(out, inputs=[source], overwrite=overwrite)
    budget = None if max_memory is None else parse_memory(max_memory, "--max-memory")
    cut_spec = as_cuts(cuts)
    if not source.exists():
        raise InputError(f"source {str(source)!r} does not exist")
    module = load_trained(source, model, device="cpu", with_data=False).model if model else None
    kernels = extract_kernels(source, model=module, layers=layers, kinds=kinds)
    ds = compute_spectra(kernels, legs=legs, cuts=cut_spec, device=device, method=method,
                         progress=progress, max_memory=budget)
    table = summary_table(ds)
    write_netcdf(ds, out)
    _print_table(table)
    console.print(f"wrote {out}")
