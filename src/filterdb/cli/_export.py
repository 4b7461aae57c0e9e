"""filterdb export / import-hdf5: exchange formats (CNN Filter DB HDF5 layout, Parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._format import count
from ._app import app, console
from ._common import max_memory_option
from ._options import selection_options

if TYPE_CHECKING:
    from ..analysis import Selection


@app.command("export")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--to", "fmt", type=click.Choice(["hdf5", "parquet"]), default=None,
              help="Output format [from OUTPUT: *.h5 -> hdf5, else a parquet directory].")
@selection_options(shape="3x3", shape_help="Kernel shape to export.")
def export_cmd(store: Path, output: Path, fmt: str | None, selection: Selection) -> None:
    """Export STORE (or a --where selection) to the CNN Filter DB HDF5 layout or to Parquet."""
    from ..store import export_hdf5, export_parquet, open_store

    handle = open_store(store)
    fmt = fmt or ("hdf5" if output.suffix.lower() in (".h5", ".hdf5") else "parquet")
    export = export_hdf5 if fmt == "hdf5" else export_parquet
    n = export(handle, output, shape=selection.shape_key, where=selection.where, params=selection.bound_params)
    console.print(f"exported {count(n)} {selection.shape_key} filters to {output}")


@app.command("import-hdf5")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--init", "create", is_flag=True, help="Create STORE if it does not exist.")
@max_memory_option
def import_cmd(store: Path, dataset: Path, create: bool) -> None:
    """Import a published CNN Filter DB dataset.h5 (filters N x 9 + meta) into STORE.

    The file is untrusted: nothing pickled in it runs (/meta is decoded with numpy's array globals only),
    its layout is checked before the first model is read, and --max-memory bounds each model.
    """
    from ..ingest import import_hdf5
    from ..store import init_store, open_store

    handle = init_store(store, exist_ok=True) if create else open_store(store, mode="a")
    with handle:
        results = import_hdf5(handle, dataset)
    new = [r for r in results if not r.skipped]
    console.print(f"imported {len(new)} model(s), {count(sum(r.n_filters for r in new))} filters "
                  f"({len(results) - len(new)} already in the store)")
