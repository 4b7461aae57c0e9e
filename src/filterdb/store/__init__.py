"""The filter store: filters per kernel shape in memory-mappable Arrow IPC shards, metadata in DuckDB.

See docs/store.md for the layout, the guarantees (atomic per model, content-addressed, safe with
concurrent readers and writers) and the views that SQL queries see.
"""

from __future__ import annotations

from ._errors import ManifestError, StoreBusyError, StoreError, StoreFormatError, StoreNotFoundError
from ._prepare import PreparedModel, kernel_key, prepare_model, record_sha256
from ._store import FORMAT_VERSION, IngestResult, Store, StoreStats, init_store, open_store

__all__ = [
    "FORMAT_VERSION",
    "IngestResult",
    "ManifestError",
    "PreparedModel",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreStats",
    "init_store",
    "kernel_key",
    "open_store",
    "prepare_model",
    "record_sha256",
]
