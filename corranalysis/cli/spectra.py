"""``corranalysis spectra``: singular-value spectra of a model's kernels on every cut."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console


def summary_table(spectra):
    """Per layer: shape, number of cuts, entropy range, lowest effective rank / chi_max."""
    import numpy as np
    from rich.table import Table

    table = Table(title="spectra", show_lines=False)
    for col in ("layer", "kind", "shape", "cuts", "entropy min", "entropy max",
                "min eff.rank/chi_max"):
        table.add_column(col, justify="left" if col in ("layer", "kind", "shape") else "right")
    for name in spectra["layer"].values:
        row = spectra.sel(layer=name)
        ent = row["entropy"].values
        ok = np.isfinite(ent)
        ratio = (row["effective_rank"] / row["chi_max"]).values[ok]
        table.add_row(
            str(name), str(row["kind"].values), str(row["shape"].values), str(int(ok.sum())),
            f"{np.min(ent[ok]):.3f}", f"{np.max(ent[ok]):.3f}", f"{np.min(ratio):.3f}",
        )
    return table


@app.command()
def spectra(
    source: Path = typer.Argument(..., help="checkpoint (.pt), .safetensors or .npz"),
    out: Path = typer.Option(..., "--out", "-o", help="netCDF file to write"),
    model: str | None = typer.Option(None, help="registry name or package.module:factory"),
    layers: str | None = typer.Option(None, help="glob(s) on layer names, comma-separated"),
    kinds: str | None = typer.Option(None, help="layer kinds, e.g. conv2d,linear"),
    legs: str = typer.Option("natural", help="natural | prime | binary"),
    cuts: list[str] = typer.Option(["all"], help="all | contiguous | a cut label (repeat "
                                   "or separate with ';'), e.g. 'out,kh|in,kw'"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    method: str = typer.Option("fast", help="fast | quimb (reference)"),
) -> None:
    """Singular-value spectra of every kernel across every cut, saved as netCDF."""
    from ..errors import InputError
    from ..io import check_output_path, write_netcdf
    from ..kernels import as_cuts, extract_kernels
    from ..runtime import load_trained
    from ..spectra import compute_spectra

    check_output_path(out)
    if not source.exists():
        raise InputError(f"source {str(source)!r} does not exist")
    module = load_trained(source, model, device="cpu", with_data=False).model if model else None
    kernels = extract_kernels(source, model=module, layers=layers, kinds=kinds)
    ds = compute_spectra(kernels, legs=legs, cuts=as_cuts(cuts), device=device,
                         method=method, progress=True)
    write_netcdf(ds, out)
    console.print(summary_table(ds))
    console.print(f"wrote {out}")
