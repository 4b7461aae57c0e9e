"""The embedded filter store: Arrow IPC shards for the filters, a DuckDB catalog for everything else."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._kernel import KernelKey
from ..errors import UsageError
from ..types import ModelRecord
from ..selection import Selection
from . import _catalog as catalog
from ._errors import StoreError, StoreFormatError, StoreNotFoundError, StoreQueryError, write_error
from ._lock import WriterLock
from ._prepare import LayerMetrics, PreparedModel, prepare_model, record_sha256
from ._query import is_users_mistake, query_error
from ._reading import iter_segment_rows
from ._segments import axis_sql as plan_axis_sql
from ._segments import segments as plan_segments
from ._segments import selected_layers as plan_selected
from ._shards import collect_garbage, shard_path, write_shard

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ._verify import VerifyReport

__all__ = ["FORMAT_FILE", "FORMAT_VERSION", "IngestResult", "Store", "StoreStats", "as_store", "init_store",
           "open_store"]

FORMAT_VERSION = 1
FORMAT_NAME = "filterdb-store"
FORMAT_FILE = "filterdb-store.json"
LOCK_FILE = "write.lock"
MAX_MODEL_COLUMNS = 512  # columns of t_models: the taxonomy, the built-in ones and the extra metadata keys
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


_SHA_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


class Store:
    """A filter store on disk. Use :func:`open_store` / :func:`init_store` to get one."""

    def __init__(self, root: Path, mode: str, *, lock_timeout: float | None, busy_timeout: float) -> None:
        fmt = _read_format(root)
        self.root = root
        self.mode = mode
        self.dtype: Dtype = fmt["dtype"]
        self.format_version: int = fmt["version"]
        self.busy_timeout = busy_timeout
        self._lock = WriterLock(root / LOCK_FILE, timeout=lock_timeout) if mode == "a" else None
        self._gc_done = False
        self._schema_checked = False

    # -- properties ---------------------------------------------------------------------------------
    @property
    def read_only(self) -> bool:
        return self.mode == "r"

    @property
    def supports_writes(self) -> bool:
        return self.mode == "a"

    def __repr__(self) -> str:
        return f"<Store {str(self.root)!r} mode={self.mode!r} dtype={self.dtype}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            while self._lock.held:
                self._lock.release()

    def _connect(self, read_only: bool = True) -> AbstractContextManager[Any]:
        return catalog.connect(self.root, read_only=read_only, timeout=self.busy_timeout)

    def _writable(self) -> WriterLock:
        if self._lock is None:
            raise StoreError(f"{self.root}: opened read-only; open it with mode='a' to change it")
        return self._lock

    def writer(self) -> WriterLock:
        """The writer lock, for holding it across several writes: ``with store.writer(): ...``."""
        return self._writable()

    # -- queries ------------------------------------------------------------------------------------
    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read-only SQL query over the views (models, layers, filter_counts, shapes); a DataFrame.

        Values go in ``params`` (``?`` or ``$name`` placeholders), never into the query text. A query that
        DuckDB refuses (syntax, unknown view or column, missing values) raises :class:`StoreQueryError`.
        """
        return self._query(query, params, query, "query")

    def _query(self, query: str, params: Any, text: str, what: str, con: Any = None) -> pd.DataFrame:
        """Run ``query`` (on ``con``, else a connection of its own); a user's mistake in it is explained in
        terms of ``text`` (what the user wrote)."""
        if con is None:
            with self._connect() as own:
                return self._query(query, params, text, what, own)
        try:
            return con.execute(query, params).df() if params is not None else con.execute(query).df()
        except Exception as e:
            if is_users_mistake(e):
                raise query_error(e, text, what, con) from None
            raise

    def models(self) -> pd.DataFrame:
        """All models with their metadata, as a DataFrame (one row per model version)."""
        return self.sql("SELECT * FROM models ORDER BY model_id")

    def layers(self, where: str | None = None,
               params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Layers with their metrics and their model's metadata, optionally filtered.

        ``where`` is an SQL predicate over the ``layers`` view's columns with ``?`` placeholders, e.g.
        ``store.layers("task = ? AND kernel = ?", ["Classification", "3x3"])``.
        """
        query = "SELECT * FROM layers" + (f" WHERE ({where})" if where else "") + " ORDER BY model_id, layer_index"
        return self._query(query, params, where or "", "where predicate")

    def has(self, sha256: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT count(*) FROM t_models WHERE sha256 = ?", [sha256]).fetchall()[0][0] > 0

    def known_hashes(self) -> set[str]:
        """The sha256 of every model in the store (the content addresses ingest skips)."""
        with self._connect() as con:
            return {r[0] for r in con.execute("SELECT sha256 FROM t_models").fetchall()}

    def existing(self, sha256: str) -> IngestResult:
        """The :class:`IngestResult` (``skipped=True``) of a model already in the store, by its sha256."""
        with self._connect() as con:
            rows = con.execute("SELECT model_id, model, n_layers, n_filters FROM t_models WHERE sha256 = ?",
                               [sha256]).fetchall()
        if not rows:
            raise StoreError(f"{self.root}: no model with sha256 {sha256}")
        mid, name, n_layers, n_filters = rows[0]
        return IngestResult(int(mid), name, sha256, True, int(n_layers), int(n_filters))

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
        """
        return plan_segments(self, shape, where, params, group=group, layer_columns=layer_columns, axes=axes,
                             halves=halves)

    def selected_layers(self, selection: Selection, *, axes: Sequence[str] = (),
                        columns: Sequence[str] = ()) -> pd.DataFrame:
        """The ``layers`` rows of a selection (catalog only, no shard), ordered by model and layer.

        ``selection.shape`` None selects every layer with a 2-D kernel. ``columns``: the view's columns to
        return (default all); ``group_value`` (of ``selection.by``) and ``axis_0``, ... (of ``axes``) follow.
        """
        return plan_selected(self, selection, axes=axes, columns=columns)

    def axis_sql(self, by: str) -> tuple[str, bool]:
        """(the SQL expression of a grouping axis, whether it is the depth deciles); see
        :func:`filterdb.store._segments.axis_sql`. Raises :class:`filterdb.selection.SelectionError` for a bare
        name that is no column."""
        return plan_axis_sql(self, by)

    def layer_columns(self) -> list[str]:
        """The columns of the ``layers`` view, in order (the manifests' metadata columns included)."""
        return list(self.sql("SELECT * FROM layers LIMIT 0").columns)

    def column_sql(self, name: str) -> str | None:
        """The ``layers`` column that ``name`` names, as a quoted SQL identifier to build an expression on (a
        ``group`` of :meth:`segments`): the column itself, else the one a manifest header becomes
        ('Visual Category' -> ``"visual_category"``); None when the view has no such column."""
        return catalog.column_sql(self.layer_columns(), name)

    def iter_filters(
        self,
        shape: str = "3x3",
        where: str | None = None,
        params: Sequence[Any] | None = None,
        *,
        batch_rows: int = 1 << 20,
        scaled: bool = True,
        with_layer_ids: bool = False,
    ) -> Iterator[Any]:
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
        out = np.empty((batch_rows, width), dtype=np.float32)
        ids = np.empty(batch_rows, dtype=np.int64)
        fill = 0
        for layer_id, scale, rows in zip(table["layer_id"], table["scale"], iter_segment_rows(self.root, table)):
            pos = 0
            while pos < len(rows):
                take = min(batch_rows - fill, len(rows) - pos)
                block = out[fill : fill + take]
                np.copyto(block, rows[pos : pos + take], casting="unsafe")
                if scaled:
                    _scale_rows(block)
                elif scale != 1.0:
                    block *= np.float32(scale)
                ids[fill : fill + take] = layer_id
                fill += take
                pos += take
                if fill == batch_rows:
                    yield (out.copy(), ids.copy()) if with_layer_ids else out.copy()
                    fill = 0
        if fill:
            yield (out[:fill].copy(), ids[:fill].copy()) if with_layer_ids else out[:fill].copy()

    def stats(self) -> StoreStats:
        """Models, layers, filters per shape, and bytes on disk."""
        with self._connect() as con:
            n_models = con.execute("SELECT count(*) FROM t_models").fetchall()[0][0]
            n_layers, n_filters = con.execute("SELECT count(*), coalesce(sum(n_filters), 0) FROM t_layers").fetchall()[0]
            shapes = con.execute(
                "SELECT s.kernel, s.n_models, s.n_layers, s.n_filters, coalesce(b.bytes, 0) AS shard_bytes "
                "FROM shapes s LEFT JOIN (SELECT kernel, CAST(sum(bytes) AS BIGINT) AS bytes FROM t_shards GROUP BY kernel) b "
                "USING (kernel) ORDER BY s.n_filters DESC"
            ).df()
            shard_bytes = con.execute("SELECT coalesce(sum(bytes), 0) FROM t_shards").fetchall()[0][0]
        catalog_bytes = sum(p.stat().st_size for p in self.root.glob("catalog.duckdb*") if p.is_file())
        total = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return StoreStats(int(n_models), int(n_layers), int(n_filters), shapes, int(shard_bytes),
                          int(catalog_bytes), int(total))

    def verify(self, *, progress: Any = None) -> VerifyReport:
        """Check the whole store (catalog, every shard's size, structure and sha256); a :class:`VerifyReport`
        that says which models to re-ingest. ``progress(done, total)`` is called per shard."""
        from ._verify import verify_store

        return verify_store(self, progress=progress)

    # -- writes -------------------------------------------------------------------------------------
    def gc(self) -> list[str]:
        """Remove partial and unreferenced shard files (left by a killed writer). Returns what it removed."""
        with self._writable():
            with self._connect() as con:
                referenced = [r[0] for r in con.execute("SELECT shard FROM t_shards").fetchall()]
            try:
                removed = collect_garbage(self.root, referenced)
            except OSError as e:
                raise write_error(self.root, "removing unreferenced files", e) from e
            self._gc_done = True
            return removed

    def ingest(self, record: ModelRecord, metadata: Mapping[str, Any] | None = None, *,
               metrics: LayerMetrics | None) -> IngestResult:
        """Add one model (all its conv layers and their filters) in one atomic step; a no-op for known bytes.

        ``metadata``: the model's name and taxonomy (keys as in a manifest: "Name", "Task",
        "Visual Category", ... or already normalised: "name", "task", ...); extra keys become new columns.
        ``metrics``: the layer metrics table of ``filterdb.check.check_model(record).layers`` (or its rows), or
        None to store NULL metrics; required, since the store never runs the health check itself.
        :func:`filterdb.ingest_record` computes it (and the lineage fingerprint) and calls the store.
        """
        sha = record_sha256(record)
        if self.supports_writes and self.has(sha):
            return self.existing(sha)
        return self.ingest_prepared(prepare_model(record, metadata, dtype=self.dtype, metrics=metrics))

    def ingest_prepared(self, prepared: PreparedModel) -> IngestResult:
        """Write a :class:`PreparedModel`: shards first (invisible until referenced), then one transaction."""
        with self._writable():
            if not self._gc_done:
                self.gc()
            dtype = np.float16 if self.dtype == "float16" else np.float32
            for values in prepared.filters.values():
                if values.dtype != dtype:
                    raise StoreError(f"prepared filters are {values.dtype}, the store holds {self.dtype}")
            written: list[tuple[str, str, int, int, str]] = []  # (kernel, shard, rows, bytes, sha256)
            try:
                for key, values in prepared.filters.items():
                    rel, size, digest = write_shard(self.root, key, values)
                    written.append((key, rel, len(values), size, digest))
                existing = self._commit(prepared, written)
            except BaseException:
                self._discard(written)
                raise
            if isinstance(existing, IngestResult):  # the same bytes were committed meanwhile: a no-op
                self._discard(written)
                return existing
        return IngestResult(int(existing), prepared.model_row["model"], prepared.sha256, False,
                            len(prepared.layer_rows), prepared.n_filters)

    def _discard(self, written: list[tuple[str, str, int, int, str]]) -> None:
        """Remove shards no commit references (best effort: what stays is garbage for the next writer)."""
        for _, rel, _, _, _ in written:
            try:
                (self.root / rel).unlink(missing_ok=True)
            except OSError:
                pass

    def _commit(self, prepared: PreparedModel, written: list[tuple[str, str, int, int, str]]) -> int | IngestResult:
        import pyarrow as pa

        shard_of = {key: rel for key, rel, _, _, _ in written}
        offsets: dict[str, int] = {}
        with self._connect(read_only=False) as con:
            if not self._schema_checked:
                catalog.upgrade_schema(con)
                self._schema_checked = True
            catalog.run(con, "BEGIN TRANSACTION")
            try:
                known = con.execute("SELECT model_id, model, n_layers, n_filters FROM t_models WHERE sha256 = ?",
                                    [prepared.sha256]).fetchall()
                if known:
                    catalog.run(con, "ROLLBACK")
                    mid, name, n_layers, n_filters = known[0]
                    return IngestResult(int(mid), name, prepared.sha256, True, int(n_layers), int(n_filters))
                existing = set(catalog.model_columns(con))
                row = dict(prepared.model_row)
                added = [c for c in row if c not in existing]
                if len(existing) + len(added) > MAX_MODEL_COLUMNS:
                    raise StoreError(
                        f"{self.root}: model {row['model']!r} would bring the models view to "
                        f"{len(existing) + len(added):,} columns, more than {MAX_MODEL_COLUMNS:,}; extra metadata "
                        "keys become columns: keep the ones you query")
                for col in added:
                    catalog.run(con, f"ALTER TABLE t_models ADD COLUMN {catalog.quote_ident(col)} VARCHAR")
                if added:
                    catalog.refresh_views(con)
                model_id = con.execute("SELECT coalesce(max(model_id), 0) + 1 FROM t_models").fetchall()[0][0]
                version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM t_models WHERE model = ?",
                                      [row["model"]]).fetchall()[0][0]
                row.update(model_id=model_id, version=version, ingested_at=datetime.now(timezone.utc).replace(tzinfo=None))
                cols = list(row)
                catalog.run(
                    con,
                    f"INSERT INTO t_models ({', '.join(catalog.quote_ident(c) for c in cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)})",
                    [row[c] for c in cols],
                )
                first_layer = con.execute("SELECT coalesce(max(layer_id), 0) + 1 FROM t_layers").fetchall()[0][0]
                layer_rows = []
                for i, (lrow, key) in enumerate(zip(prepared.layer_rows, prepared.layer_kernel)):
                    lrow = dict(lrow, layer_id=first_layer + i, model_id=model_id, shard=shard_of.get(key),
                                row_offset=offsets.get(key, 0))
                    offsets[key] = offsets.get(key, 0) + int(lrow["n_filters"])
                    layer_rows.append(lrow)
                if layer_rows:
                    table = pa.Table.from_pylist(layer_rows, schema=_layer_schema(layer_rows[0]))
                    con.register("_new_layers", table)
                    catalog.run(con, "INSERT INTO t_layers BY NAME SELECT * FROM _new_layers")
                    con.unregister("_new_layers")
                for key, rel, n, size, digest in written:
                    catalog.run(con, "INSERT INTO t_shards (shard, model_id, kernel, n_rows, bytes, sha256) "
                                "VALUES (?, ?, ?, ?, ?, ?)", [rel, model_id, key, n, size, digest])
                catalog.run(con, "COMMIT")
            except BaseException:
                _rollback(con)
                raise
        return int(model_id)

    def resolve(self, model: str | int) -> list[int]:
        """Model ids named by an id, a sha256 prefix (>= 8 hex digits) or a name (all its versions)."""
        text = str(model).strip()
        with self._connect() as con:
            if text.isdigit():
                rows = con.execute("SELECT model_id FROM t_models WHERE model_id = ?", [int(text)]).fetchall()
                if rows:
                    return [int(r[0]) for r in rows]
            rows = con.execute("SELECT model_id FROM t_models WHERE model = ? ORDER BY model_id", [text]).fetchall()
            if not rows and _SHA_PREFIX.match(text):
                rows = con.execute("SELECT model_id FROM t_models WHERE starts_with(sha256, ?)", [text]).fetchall()
        if not rows:
            raise StoreError(f"{self.root}: no model {text!r} (give a name, a model id or a sha256 prefix; "
                             "`filterdb models` lists them)")
        return [int(r[0]) for r in rows]

    def remove(self, model: str | int) -> list[int]:
        """Remove a model (all versions of a name, or one id / sha256 prefix); returns the removed ids."""
        with self._writable():
            ids = self.resolve(model)
            with self._connect(read_only=False) as con:
                catalog.run(con, "BEGIN TRANSACTION")
                try:
                    paths = [shard_path(self.root, r[0]) for r in con.execute(  # checked before anything changes
                        "SELECT shard FROM t_shards WHERE list_contains(?, model_id)", [ids]).fetchall()]
                    for table in ("t_layers", "t_shards", "t_models"):
                        catalog.run(con, f"DELETE FROM {table} WHERE list_contains(?, model_id)", [ids])
                    catalog.run(con, "COMMIT")
                except BaseException:
                    _rollback(con)
                    raise
            for path in paths:  # after the commit: a crash here leaves garbage, never a dangling reference
                path.unlink(missing_ok=True)
        return ids


def _rollback(con: Any) -> None:
    """Roll back after a failed statement; a failed COMMIT has ended the transaction already ("cannot
    rollback - no transaction is active"), and that must not hide the error that caused it."""
    try:
        catalog.run(con, "ROLLBACK")
    except Exception:  # noqa: BLE001 - the original error is being raised
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


def _scale_rows(block: np.ndarray) -> None:
    """Divide each row by its max |value| in place; all-zero rows stay zero."""
    peak = np.abs(block).max(axis=1, keepdims=True)
    np.divide(block, peak, out=block, where=peak > 0)
