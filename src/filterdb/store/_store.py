"""The embedded filter store: Arrow IPC shards for the filters, a DuckDB catalog for everything else."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._kernel import KernelKey
from ..errors import UsageError
from ..types import ModelRecord
from ..selection import Selection
from . import _catalog as catalog
from ._catalog import Catalog
from ._errors import StoreError, StoreFormatError, StoreNotFoundError, write_error
from ._lock import READ_LOCK_FILE, ReaderLease, WriterLock
from ._maintenance import gc_store
from ._prepare import LayerMetrics, PreparedModel, check_prepared, model_name, prepare_model, record_sha256
from ._reading import iter_batches
from ._segments import segments as plan_segments
from ._shards import remove_files, write_shard

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


__all__ = ["FORMAT_FILE", "FORMAT_VERSION", "IngestResult", "Store", "StoreStats", "as_store", "init_store",
           "open_store"]

FORMAT_VERSION = 1
FORMAT_NAME = "filterdb-store"
FORMAT_FILE = "filterdb-store.json"
LOCK_FILE = "write.lock"
Dtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class IngestResult:
    """What :meth:`Store.ingest` did with one model."""

    model_id: int  # the model's id (the existing one when skipped)
    model: str  # its name
    sha256: str
    skipped: bool  # True: the same bytes were already in the store
    n_layers: int
    n_filters: int
    alias: str | None = None  # skipped under another name: the name recorded as an alias of ``model``


@dataclass(frozen=True)
class StoreStats:
    """Size of a store: counts from the catalog, bytes from the file system."""

    n_models: int
    n_layers: int
    n_filters: int
    shapes: Any  # pandas DataFrame: kernel, n_models, n_layers, n_filters, shard_bytes
    shard_bytes: int  # bytes of the shard files
    catalog_bytes: int  # bytes of the DuckDB catalog (and its WAL)
    total_bytes: int  # everything under the store directory

    @property
    def bytes_per_filter(self) -> float:
        return self.total_bytes / self.n_filters if self.n_filters else float("nan")


def init_store(path: str | os.PathLike[str], *, dtype: Dtype = "float16", exist_ok: bool = False) -> Store:
    """Create an empty store at ``path`` (a new or empty directory) and open it for appending.

    Parameters
    ----------
    dtype : {"float16", "float32"}
        float16 (default): each layer divided by its max |w|, ~18 bytes per 3x3 filter, values within
        2**-11 of the layer's max |w|. float32: exact values, twice the size.

    Examples
    --------
    >>> store = init_store("zoo.fdb")  # doctest: +SKIP
    """
    root = Path(os.fspath(path))
    if dtype not in ("float16", "float32"):
        raise UsageError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if (root / FORMAT_FILE).exists():
        if exist_ok:
            return open_store(root, mode="a")
        raise StoreError(f"{root}: is already a filter store")
    if root.exists() and (not root.is_dir() or not _only_init_leftovers(root)):
        raise StoreError(f"{root}: exists and is not an empty directory; choose a new path for the store")
    created = not root.exists()
    meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "dtype": dtype,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_init_files(root)  # an init that failed before (disk full) is finished, not refused
        with catalog.connect(root, read_only=False) as con:
            catalog.create_schema(con, meta)
        tmp = root / (FORMAT_FILE + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "dtype": dtype}, indent=2) + "\n")
        os.replace(tmp, root / FORMAT_FILE)  # the format file is written last: its presence marks a complete store
    except (OSError, StoreError) as e:
        _undo_init(root, created)  # nothing half-made stays behind
        if isinstance(e, StoreError):
            raise
        raise write_error(root, "creating the store", e) from e
    return open_store(root, mode="a")


# What init writes before the format file: a folder holding only these is an interrupted init.
_INIT_FILES = ("catalog.duckdb", "catalog.duckdb.wal", FORMAT_FILE + ".tmp")


def _only_init_leftovers(root: Path) -> bool:
    return all(p.name in _INIT_FILES for p in root.iterdir())


def _remove_init_files(root: Path) -> None:
    for name in _INIT_FILES:
        (root / name).unlink(missing_ok=True)


def _undo_init(root: Path, created: bool) -> None:
    try:
        _remove_init_files(root)
        if created:
            root.rmdir()
    except OSError:  # a read-only folder: `filterdb init` finishes an interrupted init later
        pass


def open_store(path: str | os.PathLike[str], mode: Literal["r", "a"] = "r", *, lock_timeout: float | None = 600.0,
               busy_timeout: float = 60.0) -> Store:
    """Open an existing store for reading (``"r"``) or reading and writing (``"a"``).

    Opening checks the store's format version. Nothing stays open between calls: many processes may
    read while one writes.

    Examples
    --------
    >>> store = open_store("zoo.fdb")  # doctest: +SKIP
    >>> store.sql("SELECT task, sum(n_filters) AS n FROM layers WHERE kernel = ? GROUP BY task", ["3x3"])  # doctest: +SKIP
    """
    if mode not in ("r", "a"):
        raise UsageError(f"mode must be 'r' or 'a', got {mode!r}")
    return Store(Path(os.fspath(path)), mode, lock_timeout=lock_timeout, busy_timeout=busy_timeout)


def _read_format(root: Path) -> dict[str, Any]:
    fmt_path = root / FORMAT_FILE
    if not root.exists():
        raise StoreNotFoundError(f"{root}: no such store; create one with `filterdb init {root}`")
    if not fmt_path.is_file():
        raise StoreNotFoundError(f"{root}: not a filter store (no {FORMAT_FILE}); create one with `filterdb init`")
    try:
        if fmt_path.stat().st_size > 1 << 16:  # a few dozen bytes when filterdb wrote it
            raise StoreFormatError(f"{fmt_path}: {fmt_path.stat().st_size:,} bytes, not a filterdb store format file")
        fmt = json.loads(fmt_path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise StoreFormatError(f"{fmt_path}: unreadable format file ({type(e).__name__}: {e})") from None
    if not isinstance(fmt, dict) or fmt.get("format") != FORMAT_NAME:
        raise StoreFormatError(f"{fmt_path}: not a filterdb store format file")
    version = fmt.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise StoreFormatError(
            f"{root}: store format version {version!r}, this filterdb reads version {FORMAT_VERSION}; "
            + ("upgrade filterdb to open it" if newer else "re-create the store with this filterdb")
        )
    if fmt.get("dtype") not in ("float16", "float32"):
        raise StoreFormatError(f"{fmt_path}: unknown dtype {fmt.get('dtype')!r}")
    return fmt


class Store:
    """A filter store on disk. Use :func:`open_store` / :func:`init_store` to get one.

    The store owns every file in its folder: the catalog (all its SQL in :class:`Catalog`, ``store.catalog``),
    the shards, the per-model data, the locks. The class opens, queries, plans reads and ingests; maintenance
    is done by functions of the store package that take it (:func:`remove_models`, :func:`gc_store`,
    :func:`verify_store`, :func:`put_model_data` / :func:`model_data`, :func:`add_aliases`,
    :func:`resolve_models`). A read plan taken through it (:meth:`segments`) holds a reader lease until
    :meth:`close`: models removed meanwhile keep their files until then.
    """

    def __init__(self, root: Path, mode: str, *, lock_timeout: float | None, busy_timeout: float) -> None:
        fmt = _read_format(root)
        self.root = root
        self.mode = mode
        self.dtype: Dtype = fmt["dtype"]
        self.format_version: int = fmt["version"]
        self.busy_timeout = busy_timeout
        self.catalog = Catalog(root, busy_timeout)
        self._lock_timeout = lock_timeout
        self._lock_path = root / LOCK_FILE
        self._lock = WriterLock(self._lock_path, timeout=lock_timeout) if mode == "a" else None
        self._lease = ReaderLease(root / READ_LOCK_FILE)
        self._gc_done = False

    def __repr__(self) -> str:
        return f"<Store {str(self.root)!r} mode={self.mode!r} dtype={self.dtype}>"

    @property
    def read_only(self) -> bool:
        return self.mode == "r"

    @property
    def supports_writes(self) -> bool:
        return self.mode == "a"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the writer lock and the reader lease (files of models removed meanwhile may then go)."""
        self._lease.release()
        if self._lock is not None:
            while self._lock.held:
                self._lock.release()

    def writer(self) -> WriterLock:
        """The writer lock, for holding it across several writes: ``with store.writer(): ...``."""
        if self._lock is None:
            raise StoreError(f"{self.root}: opened read-only; open it with mode='a' to change it")
        return self._lock

    # -- queries ------------------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read-only SQL query over the views (models, layers, filter_counts, shapes); a DataFrame.

        Values go in ``params`` (``?`` or ``$name`` placeholders), never into the query text. A query that
        DuckDB refuses (syntax, unknown view or column, missing values) raises :class:`StoreQueryError`; one
        that needs more memory than the reader's limit (``FILTERDB_SQL_MEMORY``, default 2GB, spilling up to
        ``FILTERDB_SQL_TEMP``, default 8GB) or is interrupted raises :class:`StoreResourceError`.
        """
        return self.catalog.query(query, params, query, "query")

    def models(self) -> pd.DataFrame:
        """All models with their metadata, as a DataFrame (one row per model version; ``aliases``: the other
        names the same bytes were ingested under, on stores written by this version)."""
        return self.catalog.models()

    def layers(self, where: str | None = None,
               params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Layers with their metrics and their model's metadata, optionally filtered.

        ``where`` is an SQL predicate over the ``layers`` view's columns with ``?`` placeholders, e.g.
        ``store.layers("task = ? AND kernel = ?", ["Classification", "3x3"])``.
        """
        return self.catalog.layers(where, params)

    def existing(self, sha256: str, *, name: str | None = None, source: str | None = None) -> IngestResult:
        """The :class:`IngestResult` (``skipped=True``) of a model already in the store, by its sha256; its
        ``model`` is the name the store knows it by. With ``name`` (and ``source``) on a writable store: also
        record them as an alias of the model (see :func:`add_aliases`)."""
        if name is not None and self.supports_writes:
            with self.writer():
                self.catalog.add_names([(sha256, str(name), source)])
        known = self.catalog.known(sha256)
        if known is None:
            raise StoreError(f"{self.root}: no model with sha256 {sha256}")
        model_id, model, n_layers, n_filters = known
        alias = str(name) if name is not None and str(name) != model else None
        return IngestResult(model_id, model, sha256, True, n_layers, n_filters, alias)

    def segments(self, shape: str | Selection = "3x3", where: str | None = None, params: Sequence[Any] | None = None,
                 *, group: str | None = None, layer_columns: bool = False, axes: Sequence[str] = (),
                 halves: bool = False) -> pd.DataFrame:
        """The read plan of a selection: where the filters of each selected layer lie, as a DataFrame.

        ``shape``: a :class:`filterdb.selection.Selection` (what the analyses pass: its shape, ``where`` and
        ``params``, and its ``by`` as a ``group_value`` column), or the kernel shape with ``where`` (a
        predicate over the ``layers`` view, ``?`` placeholders bound to ``params``). One row per selected
        layer, ordered by model and layer, with the columns ``layer_id, model_id, model, layer_index,
        n_filters, scale`` (stored value x scale = weight), ``shard`` (the file, relative to the store root),
        ``row_offset`` (the layer's rows are ``[row_offset, row_offset + n_filters)`` of that file),
        ``shard_rows, shard_bytes, shard_sha256`` (what the catalog recorded of the file; every open checks
        rows and size, ``filterdb verify`` the checksum) and ``n_nonfinite`` (filters holding NaN or inf, 0
        where not counted).

        ``axes``: grouping axes (columns, "depth" or SQL expressions, as ``Selection.by``), evaluated per
        layer into columns ``axis_0``, ``axis_1``, ... (NULL: no value). ``halves``: a ``half`` column,
        0 or 1, a fixed pseudo-random split of the layers (a hash of the layer id). ``group``: a raw SQL
        expression into ``group_value`` (the older keyword API). ``layer_columns=True``: every column of the
        ``layers`` view instead of the first six. Read the rows with :meth:`iter_filters`, or with
        :class:`filterdb.store.ShardRows` (a row range of one shard, memory-mapped).

        ``frame.attrs["depth"]``: the names of the added columns (``group_value``, ``axis_i``) that hold depth
        deciles (:data:`filterdb.selection.DEPTH_LABELS`), for ordering them. The whole plan is one catalog
        connection.

        Taking a plan takes a reader lease (kept until :meth:`close`): the files it names stay readable
        even if their models are removed meanwhile (docs/store.md, Concurrency).
        """
        self._lease.acquire()  # before the catalog is read: a model removed after this keeps its files
        return plan_segments(self.catalog, shape, where, params, group=group, layer_columns=layer_columns, axes=axes,
                             halves=halves)

    def iter_filters(self, shape: str = "3x3", where: str | None = None, params: Sequence[Any] | None = None, *,
                     batch_rows: int = 1 << 20, scaled: bool = True, with_layer_ids: bool = False) -> Iterator[Any]:
        """Stream the filters of one kernel shape as float32 ``(n, k)`` batches, memory-mapped.

        Parameters
        ----------
        shape : str
            Kernel shape key, "3x3" (default), "5x5", "1x3", ...
        where, params : optional
            Predicate over the ``layers`` view and its bound parameters.
        batch_rows : int
            Rows per batch (the last one is shorter); memory use is about 40 bytes x batch_rows.
        scaled : bool
            True: each filter divided by its own max |w| (docs/reference.md §3; all-zero filters stay zero).
            False: raw weights (stored values x layer scale).
        with_layer_ids : bool
            Yield ``(filters, layer_ids)`` pairs, layer_ids an int64 array with each row's layer.

        Examples
        --------
        >>> for batch in store.iter_filters("3x3", "task = ?", ["Classification"]):  # doctest: +SKIP
        ...     gram += batch.T @ batch
        """
        if batch_rows < 1:
            raise UsageError(f"batch_rows must be >= 1, got {batch_rows}")
        table = self.segments(shape, where, params)
        width = KernelKey.parse(shape).width if table.shape[0] else 0
        return iter_batches(self.root, table, width, batch_rows, scaled, with_layer_ids)

    def stats(self) -> StoreStats:
        """Models, layers, filters per shape, and bytes on disk."""
        n_models, n_layers, n_filters, shapes, shard_bytes = self.catalog.sizes()
        catalog_bytes = sum(p.stat().st_size for p in self.root.glob("catalog.duckdb*") if p.is_file())
        total = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return StoreStats(n_models, n_layers, n_filters, shapes, shard_bytes, int(catalog_bytes), int(total))

    # -- writes -------------------------------------------------------------------------------------
    def ingest(self, record: ModelRecord, metadata: Mapping[str, Any] | None = None, *,
               metrics: LayerMetrics | Any | None) -> IngestResult:
        """Add one model (all its conv layers and their filters) in one atomic step; a no-op for known bytes
        (which records the name as an alias when it differs).

        ``metadata``: the model's name and taxonomy (keys as in a manifest: "Name", "Task",
        "Visual Category", ... or already normalised: "name", "task", ...); extra keys become new columns.
        ``metrics``: the layer metrics of the record (a :class:`LayerMetrics`, or
        ``filterdb.check.check_model(record).layers``), or None to store NULL metrics; required, since the
        store never runs the health check itself. :func:`filterdb.ingest_record` computes it (and the
        lineage fingerprint) and calls the store.
        """
        sha = record_sha256(record)
        if self.supports_writes and self.catalog.known(sha) is not None:
            name, source = model_name(record, metadata)
            return self.existing(sha, name=name, source=source)
        return self.ingest_prepared(prepare_model(record, metadata, dtype=self.dtype, metrics=metrics))

    def ingest_prepared(self, prepared: PreparedModel) -> IngestResult:
        """Write a :class:`PreparedModel`: shards first (invisible until referenced), then one transaction.
        Its rows are checked first (shapes, groups, filter counts and the arrays agree; else StoreError)."""
        check_prepared(prepared, self.dtype)
        with self.writer():
            if not self._gc_done:
                gc_store(self)
            written: list[tuple[str, str, int, int, str]] = []  # (kernel, shard, rows, bytes, sha256)
            try:
                for key, values in prepared.filters.items():
                    rel, size, digest = write_shard(self.root, key, values)
                    written.append((key, rel, len(values), size, digest))
                added = self.catalog.add_model(prepared.model_row, prepared.layer_rows, prepared.layer_kernel,
                                               written, _layer_schema)
            except BaseException:
                _discard(self.root, [w[1] for w in written])
                raise
            if not isinstance(added, int):  # the same bytes were committed meanwhile: a no-op (and an alias)
                _discard(self.root, [w[1] for w in written])
                return self.existing(prepared.sha256, name=prepared.model_row["model"],
                                     source=prepared.model_row.get("source"))
        return IngestResult(added, prepared.model_row["model"], prepared.sha256, False, len(prepared.layer_rows),
                            prepared.n_filters)


def _discard(root: Path, shards: list[str]) -> None:
    """Remove shards no commit references (best effort: what stays is garbage for the next writer)."""
    try:
        remove_files(root, shards)
    except OSError:
        pass


def as_store(store: Store | str | os.PathLike[str], mode: Literal["r", "a"] = "r", **options: Any) -> Store:
    """``store`` itself if it is a :class:`Store` (opened with a mode that allows ``mode``), else
    ``open_store(store, mode, **options)``: for functions that take a store or its path."""
    if isinstance(store, Store):
        if mode == "a" and not store.supports_writes:
            raise StoreError(f"{store.root}: opened read-only; open it with mode='a' to change it")
        return store
    return open_store(store, mode, **options)


def _layer_schema(example: Mapping[str, Any]) -> pa.Schema:
    import pyarrow as pa

    types = {
        "layer_id": pa.int64(), "model_id": pa.int64(), "layer_index": pa.int32(), "layer": pa.string(),
        "op_type": pa.string(), "kind": pa.string(), "shape": pa.list_(pa.int64()), "kernel": pa.string(),
        "spatial_ndim": pa.int32(), "groups": pa.int32(), "stride": pa.list_(pa.int32()),
        "dilation": pa.list_(pa.int32()), "n_filters": pa.int64(), "conv_depth": pa.int32(),
        "conv_depth_norm": pa.float64(), "depth_source": pa.string(), "storage_dtype": pa.string(),
        "scale": pa.float32(), "shard": pa.string(), "row_offset": pa.int64(), "notes": pa.string(),
    }
    for col, sql_type in catalog.METRIC_COLUMNS.items():
        types[col] = {"DOUBLE": pa.float64(), "BIGINT": pa.int64(), "VARCHAR[]": pa.list_(pa.string())}[sql_type]
    return pa.schema([(c, types[c]) for c in example if c in types])
