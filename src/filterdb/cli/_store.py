"""filterdb init / models / layers / sql / rm / stats: the filter store from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from .._format import count, size
from ._app import app, console
from ._options import PARAM_OPTION, parse_params, selection_options
from ._table import FORMAT_OPTION, print_frame

if TYPE_CHECKING:
    from ..analysis import Selection
    from ..store import Store

STORE = click.argument("store", type=click.Path(path_type=Path))


def _open(store: Path, mode: Literal["r", "a"] = "r") -> Store:
    from ..store import open_store

    return open_store(store, mode=mode)


@app.command("init")
@STORE
@click.option("--float32", "float32", is_flag=True, help="Keep exact float32 values (twice the size).")
def init_cmd(store: Path, float32: bool) -> None:
    """Create an empty filter store at STORE (a new directory)."""
    from ..store import init_store

    init_store(store, dtype="float32" if float32 else "float16").close()
    console.print(f"created filter store {store} ({'float32' if float32 else 'float16'})", markup=False)


@app.command("models")
@STORE
@FORMAT_OPTION
@click.option("--all-columns", is_flag=True, help="Show every column (default: the main ones).")
def models_cmd(store: Path, fmt: str, all_columns: bool) -> None:
    """List the models in STORE with their metadata."""
    frame = _open(store).models()
    if not all_columns and fmt == "table":
        keep = [c for c in ("model_id", "model", "version", "format", "task", "visual_category",
                            "training_dataset", "architecture", "n_layers", "n_filters", "aliases")
                if c in frame.columns]
        frame = frame[keep]
        if "aliases" in frame.columns:  # other names of the same bytes, shown only when some model has one
            if not frame["aliases"].map(len).any():
                frame = frame.drop(columns="aliases")
            else:
                frame = frame.assign(aliases=frame["aliases"].map(lambda names: ", ".join(map(str, names))))
    print_frame(frame, fmt, title=f"{len(frame)} model(s) in {store}", key=["model"])


@app.command("layers")
@STORE
@selection_options(shape=False)
@click.option("--columns", default=None, help="Comma-separated columns to show.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@FORMAT_OPTION
def layers_cmd(store: Path, selection: Selection, columns: str | None, limit: int | None, fmt: str) -> None:
    """List layers with their metrics and model metadata, optionally filtered with --where."""
    frame = _open(store).layers(selection.where, selection.bound_params)
    if columns:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in frame.columns]
        if unknown:
            from ..errors import UsageError, suggest

            raise UsageError(f"--columns: {suggest(unknown[0], frame.columns, 'column')}"
                             + (f" (also unknown: {', '.join(unknown[1:])})" if unknown[1:] else ""))
        frame = frame[wanted]
    elif fmt == "table":
        keep = ["model", "layer", "kind", "kernel", "n_filters", "conv_depth_norm", "sparsity",
                "variance_entropy_norm", "orthogonality", "verdicts"]
        frame = frame[[c for c in keep if c in frame.columns]]
    if limit is not None:
        frame = frame.head(limit)
    print_frame(frame, fmt, title=f"{len(frame)} layer(s)", key=["model", "layer"])


@app.command("sql")
@STORE
@click.argument("query")
@PARAM_OPTION
@FORMAT_OPTION
def sql_cmd(store: Path, query: str, params: tuple[str, ...], fmt: str) -> None:
    """Run a read-only SQL QUERY over the views: models, layers, filter_counts, shapes."""
    print_frame(_open(store).sql(query, parse_params(params)), fmt)


@app.command("rm")
@STORE
@click.argument("model")
@click.option("--wait", type=float, default=600.0, show_default=True, help="Seconds to wait for another writer.")
def rm_cmd(store: Path, model: str, wait: float) -> None:
    """Remove MODEL (a name: all its versions; a model id; or a sha256 prefix) from STORE."""
    from ..store import open_store, remove_models

    with open_store(store, mode="a", lock_timeout=wait) as handle:
        ids = remove_models(handle, model)
    console.print(f"removed {len(ids)} model(s): id {', '.join(map(str, ids))}")


@app.command("stats")
@STORE
@FORMAT_OPTION
def stats_cmd(store: Path, fmt: str) -> None:
    """Models, layers, filters per kernel shape, and bytes on disk."""
    handle = _open(store)
    stats = handle.stats()
    if fmt != "table":
        frame = stats.shapes.copy()
        print_frame(frame, fmt)
        return
    console.print(f"store {store}: format {handle.format_version}, {handle.dtype}", markup=False)
    console.print(f"  models {count(stats.n_models)}   layers {count(stats.n_layers)}   "
                  f"filters {count(stats.n_filters)}")
    console.print(f"  on disk {size(stats.total_bytes)} (shards {size(stats.shard_bytes)}, "
                  f"catalog {size(stats.catalog_bytes)})"
                  + (f", {stats.bytes_per_filter:.1f} bytes/filter" if stats.n_filters else ""))
    if len(stats.shapes):
        print_frame(stats.shapes, "table", title="filters per kernel shape")

