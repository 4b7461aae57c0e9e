"""The filter store: filters per kernel shape in memory-mappable Arrow IPC shards, metadata in DuckDB.

``Store`` opens, queries, plans reads and ingests; the maintenance operations are the functions
``remove_models``, ``gc_store``, ``verify_store``, ``put_model_data`` / ``model_data``, ``add_aliases`` and
``resolve_models``, and ``Store.catalog`` (a :class:`Catalog`) runs every SQL statement.
See docs/store.md for the layout, the guarantees (atomic per model, content-addressed, safe with
concurrent readers and writers) and the views that SQL queries see.
"""

from __future__ import annotations

from ._catalog import TAXONOMY, normalise_column
from ._errors import (
    ShardCorruptError,
    StoreBusyError,
    StoreError,
    StoreFormatError,
    StoreNotFoundError,
    StoreQueryError,
    StoreResourceError,
    StoreWriteError,
)
from ._catalog import Catalog
from ._model_data import ModelDataError
from ._paths import check_sha256, own_dir
from ._maintenance import add_aliases, gc_store, model_data, put_model_data, remove_models, resolve_models
from ._exchange import export_hdf5, export_parquet, iter_hdf5_models
from ._prepare import LayerMetrics, PreparedModel, kernel_key, name_for, prepare_model, record_sha256
from ._reading import ShardRows, read_ahead, readahead_budget
from ._segments import SEGMENT_COLUMNS
from ._shards import ShardRecord
from ._store import FORMAT_VERSION, IngestResult, Store, StoreStats, as_store, init_store, open_store
from ._verify import Damage, VerifyReport, record_checksums, verify_store

__all__ = [
    "FORMAT_VERSION",
    "Damage",
    "IngestResult",
    "LayerMetrics",
    "PreparedModel",
    "SEGMENT_COLUMNS",
    "TAXONOMY",
    "ShardCorruptError",
    "ShardRecord",
    "ShardRows",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreQueryError",
    "StoreResourceError",
    "Catalog",
    "ModelDataError",
    "StoreStats",
    "StoreWriteError",
    "VerifyReport",
    "add_aliases",
    "as_store",
    "gc_store",
    "model_data",
    "put_model_data",
    "remove_models",
    "resolve_models",
    "verify_store",
    "check_sha256",
    "own_dir",
    "export_hdf5",
    "export_parquet",
    "init_store",
    "iter_hdf5_models",
    "kernel_key",
    "normalise_column",
    "open_store",
    "prepare_model",
    "read_ahead",
    "readahead_budget",
    "record_checksums",
    "record_sha256",
    "name_for",
]
