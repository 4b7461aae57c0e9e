"""filterdb export / import-hdf5: exchange formats (CNN Filter DB HDF5 layout, Parquet)."""

from __future__ import annotations

from pathlib import Path

import click

from ._app import app, console
from ._store import PARAM, _params


@app.command("export")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--to", "fmt", type=click.Choice(["hdf5", "parquet"]), default=None,
              help="Output format [from OUTPUT: *.h5 -> hdf5, else a parquet directory].")
@click.option("--shape", default="3x3", show_default=True, help="Kernel shape to export.")
@click.option("--where", default=None, help="SQL predicate over the layers view.")
@PARAM
def export_cmd(store: Path, output: Path, fmt: str | None, shape: str, where: str | None,
               params: tuple[str, ...]) -> None:
    """Export STORE (or a --where selection) to the CNN Filter DB HDF5 layout or to Parquet."""
    from ..store import open_store
    from ..store._exchange import export_hdf5, export_parquet

    handle = open_store(store)
    fmt = fmt or ("hdf5" if output.suffix.lower() in (".h5", ".hdf5") else "parquet")
    if fmt == "hdf5":
        n = export_hdf5(handle, output, shape=shape, where=where, params=_params(params))
    else:
        n = export_parquet(handle, output, shape=shape, where=where, params=_params(params))
    console.print(f"exported {n:,} {shape} filters to {output}")


@app.command("import-hdf5")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--init", "create", is_flag=True, help="Create STORE if it does not exist.")
def import_cmd(store: Path, dataset: Path, create: bool) -> None:
    """Import a published CNN Filter DB dataset.h5 (filters N x 9 + meta) into STORE."""
    from ..store import init_store, open_store
    from ..store._exchange import import_hdf5

    handle = init_store(store, exist_ok=True) if create else open_store(store, mode="a")
    with handle:
        results = import_hdf5(handle, dataset)
    new = [r for r in results if not r.skipped]
    console.print(f"imported {len(new)} model(s), {sum(r.n_filters for r in new):,} filters "
                  f"({len(results) - len(new)} already in the store)")
