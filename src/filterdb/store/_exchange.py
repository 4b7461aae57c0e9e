"""Exchange formats: the published CNN Filter DB HDF5 layout (import and export) and Parquet (export).

HDF5 layout (docs/reference.md §8): ``/filters`` an N x k float32 array (row = filter id; ``/filter`` is accepted
on import, as the data set's README spells it), and ``/meta`` a pandas (PyTables) DataFrame with one row
per conv layer, indexed by [model_id, conv_depth, conv_depth_norm, layer_id], whose ``filter_ids`` column
holds "start:end", inclusive at both ends, plus the model metadata columns. The import half, which treats
the file as hostile, is :mod:`._hdf5_import`.

Parquet: a directory with ``filters.parquet`` (``layer_id`` and k plain float16 columns f0..f{k-1}, not a
FixedSizeList, so that every engine reads it), ``layers.parquet`` and ``models.parquet``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernel import KernelKey
from ._errors import StoreError
from ._hdf5_import import HDF5_COLUMNS, iter_hdf5_models, need_tables
from ._reading import iter_segment_rows
from ._store import Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HDF5_COLUMNS", "export_hdf5", "export_parquet", "iter_hdf5_models"]


def _selection(store: Store, shape: str, where: str | None, params: Sequence[Any] | None) -> pd.DataFrame:
    return store.segments(shape, where, params, layer_columns=True)


def _stream_layers(store: Store, table: Any, scaled: bool = False) -> Iterator[np.ndarray]:
    """float32 rows of each layer of ``table`` (a read plan): raw weights, or the stored values (``scaled``)."""
    for scale, rows in zip(table["scale"], iter_segment_rows(store.root, table)):
        out = rows.astype(np.float32)
        if not scaled and scale != 1.0:
            out *= np.float32(scale)
        yield out


def export_hdf5(store: Store, path: str | os.PathLike[str], *, shape: str = "3x3", where: str | None = None,
                params: Sequence[Any] | None = None) -> int:
    """Write the selected layers of one kernel shape in the CNN Filter DB layout; returns the filter count.

    Filters are the raw weights (stored value x layer scale) as float32, in (model, layer, out, in) order.
    """
    need_tables()
    import h5py
    import pandas as pd

    table = _selection(store, shape, where, params)
    width = KernelKey.parse(shape).width
    target = Path(os.fspath(path))
    tmp = target.with_name(target.name + ".tmp")
    starts = np.concatenate([[0], np.cumsum(table["n_filters"].to_numpy(dtype=np.int64))])
    meta = pd.DataFrame({
        "model_id": table["model_id"].astype("int64"),
        "conv_depth": table["conv_depth"].astype("float64"),
        "conv_depth_norm": table["conv_depth_norm"].astype("float64"),
        "layer_id": table["layer_id"].astype("int64"),
        "filter_ids": [f"{s}:{e - 1}" for s, e in pairwise(starts)],
        "model": [Path(str(s).split("#")[-1]).name if s else "" for s in table.get("source", [""] * len(table))],
        "producer": _strings(table["producer"]),
        "op_set": table["opset"].astype("float64"),
        "layer": _strings(table["layer"]),
        "kernel": _strings(table["kernel"]),
    })
    counts = table.groupby("model_id")["n_filters"].sum()
    meta["total_filters"] = meta["model_id"].map(counts).astype("int64")
    if len(table):
        depth = table.groupby("model_id")["conv_depth"].max()
        meta["depth"] = meta["model_id"].map(depth).astype("float64")
    for column, published in HDF5_COLUMNS.items():
        if column in table.columns:
            meta[published] = _strings(table[column])
    known = set(HDF5_COLUMNS) | set(meta.columns)
    model_cols = set(store.models().columns)  # one row per model: cheap, and no SQL outside the catalog
    for column in table.columns:  # user columns from manifests travel along
        if column in model_cols and column not in known and column not in _NOT_EXPORTED and (
                pd.api.types.is_string_dtype(table[column]) or table[column].dtype == object):
            meta[column] = _strings(table[column])
    meta = meta.set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"])
    tmp.unlink(missing_ok=True)
    meta.to_hdf(tmp, key="meta", mode="w")
    with h5py.File(tmp, "a") as h5:
        dset = h5.create_dataset("filters", shape=(int(starts[-1]), width), dtype="float32",
                                 chunks=(min(max(int(starts[-1]), 1), 1 << 16), width) if starts[-1] else None)
        pos = 0
        for rows in _stream_layers(store, table):
            dset[pos : pos + len(rows)] = rows
            pos += len(rows)
    os.replace(tmp, target)
    return int(starts[-1])


_NOT_EXPORTED = {"sha256", "source", "format", "producer_version", "op_counts", "notes", "ingested_at", "model",
                 "original_model_id"}


def _strings(column: Any) -> Any:
    """Text columns as plain strings ('' for missing): PyTables stores them natively, without pickling."""
    return column.astype("object").where(column.notna(), "").astype(str).to_numpy()


def export_parquet(store: Store, directory: str | os.PathLike[str], *, shape: str = "3x3", where: str | None = None,
                   params: Sequence[Any] | None = None, scaled: bool = False, batch_rows: int = 1 << 20) -> int:
    """Write filters.parquet (layer_id + k float16 columns), layers.parquet and models.parquet.

    ``scaled=False`` (default) writes raw weights; ``scaled=True`` the stored, layer-scaled values (use the
    ``scale`` column of layers.parquet to get raw weights back with float16's full relative precision).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(os.fspath(directory))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StoreError(f"{out}: exists and is not an empty directory")
    table = _selection(store, shape, where, params)
    width = KernelKey.parse(shape).width
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("layer_id", pa.int64())] + [(f"f{i}", pa.float16()) for i in range(width)])
    total = 0
    with pq.ParquetWriter(tmp / "filters.parquet", schema, compression="zstd") as writer:
        for layer_id, rows in zip(table["layer_id"], _stream_layers(store, table, scaled=scaled)):
            half = rows.astype(np.float16)
            for start in range(0, len(half), batch_rows):
                part = half[start : start + batch_rows]
                columns = [pa.array(np.full(len(part), layer_id, dtype=np.int64))]
                columns += [pa.array(np.ascontiguousarray(part[:, i]), type=pa.float16()) for i in range(width)]
                writer.write_batch(pa.record_batch(columns, schema=schema))
            total += len(rows)
    layers = table.drop(columns=["shard", "row_offset", "shard_rows", "shard_bytes", "shard_sha256"])
    layers.to_parquet(tmp / "layers.parquet", index=False)
    ids = sorted({int(i) for i in table["model_id"]})
    models = store.models()
    models[models["model_id"].isin(ids)].to_parquet(tmp / "models.parquet", index=False)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return total
