"""The catalog: one DuckDB file with the model and layer rows, and the user-facing views.

DuckDB lets one process open a file read-write, and refuses a read-only open while another process has
it read-write (and the reverse). So nobody keeps the catalog open: writers open it read-write for one
short transaction per model (under the writer lock), readers open it read-only for one query, and both
retry with backoff while the other side holds it (see docs/store.md).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import StoreBusyError, StoreError, StoreResourceError, StoreWriteError

__all__ = [
    "CATALOG_FILE",
    "Catalog",
    "METRIC_COLUMNS",
    "TAXONOMY",
    "column_sql",
    "connect",
    "create_schema",
    "model_columns",
    "normalise_column",
    "quote_ident",
    "refresh_views",
    "run",
    "shard_records",
    "upgrade_schema",
]

CATALOG_FILE = "catalog.duckdb"

# The paper's metadata taxonomy (docs/reference.md §8), as catalog column names.
TAXONOMY = (
    "task",
    "visual_category",
    "training_dataset",
    "pretraining_dataset",
    "architecture",
    "backbone",
    "framework",
    "precision",
    "optimizer",
    "conv_weight_initializer",
    "paper",
    "url",
    "license",
)

# Layer metrics computed at ingest (filterdb.metrics / filterdb.check), with their DuckDB types.
METRIC_COLUMNS = {
    "sparsity": "DOUBLE",
    "variance_entropy": "DOUBLE",
    "variance_entropy_norm": "DOUBLE",
    "variance_entropy_clean": "DOUBLE",
    "variance_entropy_clean_norm": "DOUBLE",
    "orthogonality": "DOUBLE",
    "norm_l1": "DOUBLE",
    "norm_l2": "DOUBLE",
    "norm_l1_std": "DOUBLE",
    "norm_l2_std": "DOUBLE",
    "neighbour_corr": "DOUBLE",
    "n_nonfinite": "BIGINT",
    "verdicts": "VARCHAR[]",
}

# Tables added after format version 1 was released: created by init, and by the first write to an older store.
_ADDED_TABLES = (
    # every name and source a model was ingested under (aliases: the same bytes under another name)
    "CREATE TABLE IF NOT EXISTS t_names (model_id BIGINT NOT NULL, name VARCHAR NOT NULL, source VARCHAR, "
    "added_at TIMESTAMP)",
    # per-model data files (data/<kind>/<sha256>.npz) and their checksums
    "CREATE TABLE IF NOT EXISTS t_model_data (sha256 VARCHAR NOT NULL, kind VARCHAR NOT NULL, file VARCHAR NOT NULL, "
    "bytes BIGINT NOT NULL, checksum VARCHAR NOT NULL, PRIMARY KEY (sha256, kind))",
)

_SCHEMA = f"""
CREATE TABLE t_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE t_models (
    model_id BIGINT PRIMARY KEY,
    model VARCHAR NOT NULL,          -- the model's name (manifest Name, else the file name)
    version INTEGER NOT NULL,        -- 1, 2, ... for changed files under the same name
    sha256 VARCHAR NOT NULL UNIQUE,  -- content address: the file's bytes (or the weights' for live models)
    source VARCHAR, path VARCHAR, format VARCHAR, producer VARCHAR, producer_version VARCHAR,
    opset INTEGER, n_parameters BIGINT, size_bytes BIGINT, n_layers INTEGER, n_filters BIGINT,
    op_counts VARCHAR, notes VARCHAR, ingested_at TIMESTAMP,
    {", ".join(f"{c} VARCHAR" for c in TAXONOMY)}
);
CREATE TABLE t_layers (
    layer_id BIGINT PRIMARY KEY, model_id BIGINT NOT NULL, layer_index INTEGER NOT NULL,
    layer VARCHAR, op_type VARCHAR, kind VARCHAR, shape BIGINT[], kernel VARCHAR, spatial_ndim INTEGER,
    groups INTEGER, stride INTEGER[], dilation INTEGER[], n_filters BIGINT,
    conv_depth INTEGER, conv_depth_norm DOUBLE, depth_source VARCHAR, storage_dtype VARCHAR,
    scale FLOAT, shard VARCHAR, row_offset BIGINT, notes VARCHAR,
    {", ".join(f"{c} {t}" for c, t in METRIC_COLUMNS.items())}
);
CREATE TABLE t_shards (shard VARCHAR PRIMARY KEY, model_id BIGINT NOT NULL, kernel VARCHAR NOT NULL,
    n_rows BIGINT NOT NULL, bytes BIGINT NOT NULL, sha256 VARCHAR);
""" + ";".join(("", *(_ADDED_TABLES)))

# Columns of t_models that the `layers` view leaves out (they clash with layer columns or are bulky).
_MODEL_COLUMNS_NOT_IN_LAYERS = ("model_id", "n_filters", "notes", "op_counts", "path", "sha256", "ingested_at",
                                "n_parameters", "size_bytes")


def run(con: Any, query: str, params: Any = None) -> list[Any]:
    """Execute a statement and fetch its result (DuckDB 2 refuses new work while a result is unread)."""
    cursor = con.execute(query) if params is None else con.execute(query, params)
    return cursor.fetchall()


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (column names from manifests are data, never spliced in raw)."""
    return '"' + name.replace('"', '""') + '"'


_HEADER = re.compile(r"[A-Za-z][\w\- ]*")  # a manifest header such as 'Visual Category' or 'Training-Dataset'


def column_sql(columns: Sequence[str], name: str) -> str | None:
    """``name`` as the quoted identifier of one of ``columns``: that column, else the column a manifest
    header becomes ('Visual Category' -> ``"visual_category"``); None when it names none of them."""
    if name in columns:
        return quote_ident(name)
    if _HEADER.fullmatch(name) and normalise_column(name) in columns:
        return quote_ident(normalise_column(name))
    return None


def normalise_column(name: str) -> str:
    """'Visual Category' -> 'visual_category', 'Training-Dataset' -> 'training_dataset'."""
    out = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).strip()).strip("_").lower()
    if not out:
        raise ValueError(f"column name {name!r} has no letters or digits")
    if out[0].isdigit():
        out = "c_" + out
    return out


# Readers run the user's SQL: it sees the catalog and nothing else (no read_text('/etc/passwd'), no COPY TO a
# file, no ATTACH, no extension), and it cannot switch that back on.
_READER_CONFIG: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}
# then, before the connection is handed out: no progress bar on the terminal (the library never prints), and
# the configuration locked
_READER_SETUP = ("SET enable_progress_bar = false", "SET lock_configuration = true")

# A reader's query runs under a memory limit, spilling to a temporary folder of bounded size (the process' own,
# under the system's temporary directory: a reader may not write into the store). A query over the limit is an
# expensive query, not a damaged catalog (see query_resource_error).
MEMORY_ENV, TEMP_ENV = "FILTERDB_SQL_MEMORY", "FILTERDB_SQL_TEMP"
_DEFAULT_MEMORY, _DEFAULT_TEMP = "2GB", "8GB"
_temp_dir: str | None = None


def _reader_temp_dir() -> str:
    global _temp_dir
    if _temp_dir is None or not os.path.isdir(_temp_dir):
        import atexit
        import shutil
        import tempfile

        _temp_dir = tempfile.mkdtemp(prefix="filterdb-sql-")
        atexit.register(shutil.rmtree, _temp_dir, True)
    return _temp_dir


def reader_config() -> dict[str, str | bool | int | float | list[str]]:
    """The configuration of a read-only connection: sandboxed, memory-limited, with a bounded spill folder."""
    return {**_READER_CONFIG, "memory_limit": os.environ.get(MEMORY_ENV) or _DEFAULT_MEMORY,
            "max_temp_directory_size": os.environ.get(TEMP_ENV) or _DEFAULT_TEMP, "temp_directory": _reader_temp_dir()}


def query_resource_error(root: Path, error: Exception) -> StoreError | None:
    """The message for a query that ran out of memory (or spill space) or was interrupted; None otherwise."""
    import duckdb

    text = (str(error).splitlines() or [""])[0]
    if isinstance(error, duckdb.OutOfMemoryException) or "out of memory" in text.lower():
        return StoreResourceError(
            f"{root}: the query needs more memory than the reader's limit ({text}); the store is fine: narrow the "
            f"query (fewer rows or columns, no cross join), or raise the limits with {MEMORY_ENV}=4GB and "
            f"{TEMP_ENV}=32GB (spill space)")
    if isinstance(error, duckdb.InterruptException) or "interrupted" in text.lower():
        return StoreResourceError(f"{root}: the query was interrupted ({text}); the store is unchanged")
    return None


def _set_up_reader(con: Any) -> None:
    """Run the reader setup, unless this process' shared database instance is already locked: a reader
    connection open at the same time ran it (DuckDB shares one instance per file within a process)."""
    import duckdb

    for statement in _READER_SETUP:
        try:
            run(con, statement)
        except duckdb.InvalidInputException as e:
            if "configuration has been locked" not in str(e):
                raise
            return


def _is_lock_conflict(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


@contextmanager
def connect(root: Path, *, read_only: bool, timeout: float = 60.0) -> Iterator[Any]:
    """A short-lived DuckDB connection to the catalog, retried while another process holds the file."""
    import duckdb

    path = root / CATALOG_FILE
    if read_only and not path.exists():
        raise StoreError(f"{root}: the catalog {CATALOG_FILE} is missing; the store is damaged")
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=reader_config() if read_only else {})
            if read_only:
                _set_up_reader(con)
            break
        except duckdb.IOException as e:
            if not _is_lock_conflict(e):
                raise catalog_error(root, e) from e
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"{root}: the catalog stayed locked by another process for {timeout:g} s; "
                    "a long-running query or a stuck process holds it"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        except duckdb.ConnectionException as e:
            # DuckDB shares one database instance per file within a process, and a closed connection's
            # instance lives on until its last result is garbage-collected: reader and writer connections
            # differ in configuration, so collect it and try again
            if "different configuration" not in str(e) or time.monotonic() >= deadline:
                raise catalog_error(root, e) from e
            import gc

            gc.collect()
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        except duckdb.Error as e:
            raise catalog_error(root, e) from e
    try:
        yield con
    except duckdb.Error as e:  # not a user's query (Store.sql turns those into StoreQueryError first)
        raise (query_resource_error(root, e) or catalog_error(root, e)) from e
    finally:
        try:
            con.close()
        except duckdb.Error:  # closing checkpoints; a full disk fails it, and the error above says why
            pass


def catalog_error(root: Path, error: Exception) -> StoreError:
    """The one message for a catalog that cannot be opened, read or written, with the cause and the fix."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = text.lower()
    if any(s in lowered for s in ("no space left", "read-only file system", "permission denied", "file too large")):
        return StoreWriteError(f"{root}: cannot write to the store (the catalog: {text}); the store is unchanged "
                               "(free some space, or make the store writable, and run the command again)")
    return StoreError(
        f"{root / CATALOG_FILE}: the catalog cannot be read ({text}); it is damaged (truncated or overwritten): "
        f"restore it from a backup, or re-create the store and ingest the models again (`filterdb verify {root}` "
        "checks the whole store)")


def upgrade_schema(con: Any) -> None:
    """Bring a catalog made by an older filterdb up to date (additive changes only; under the writer lock).

    - ``t_shards.sha256`` (the shard's checksum): older stores have none; their shards get checksums when
      ``filterdb verify --record-checksums`` has checked them.
    - ``t_names`` (aliases, filled with each model's own name and source) and ``t_model_data``.
    """
    run(con, "ALTER TABLE t_shards ADD COLUMN IF NOT EXISTS sha256 VARCHAR")
    if "t_names" not in tables(con):
        for statement in _ADDED_TABLES:
            run(con, statement)
        run(con, "INSERT INTO t_names SELECT model_id, model, source, ingested_at FROM t_models")
        refresh_views(con)


def shard_records(root: Path) -> dict[str, Any]:
    """shard path -> ShardRecord (bytes, rows, owning model, sha256 when recorded), from one catalog query."""
    from ._shards import ShardRecord

    with connect(root, read_only=True) as con:
        has_sha = "sha256" in _columns(con, "t_shards")
        rows = run(con, "SELECT s.shard, s.bytes, s.n_rows, s.model_id, m.model, "
                   + ("s.sha256" if has_sha else "NULL") + " FROM t_shards s LEFT JOIN t_models m USING (model_id)")
    return {shard: ShardRecord(int(n_bytes), int(n_rows), f"model {name!r} (id {mid})", sha)
            for shard, n_bytes, n_rows, mid, name, sha in rows}


def run_read(root: Path, query: str, params: Any = None) -> list[Any]:
    """One read-only query on a connection of its own."""
    with connect(root, read_only=True) as con:
        return run(con, query, params)


def tables(con: Any) -> set[str]:
    return {r[0] for r in run(con, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")}


def _columns(con: Any, table: str) -> list[str]:
    cursor = con.execute(f"SELECT * FROM {table} LIMIT 0")
    names = [d[0] for d in cursor.description]
    cursor.fetchall()
    return names


def create_schema(con: Any, meta: dict[str, str]) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            run(con, statement)
    for item in sorted(meta.items()):
        run(con, "INSERT INTO t_meta VALUES (?, ?)", list(item))
    refresh_views(con)


def model_columns(con: Any) -> list[str]:
    return _columns(con, "t_models")  # cheaper than information_schema


def refresh_views(con: Any) -> None:
    """(Re)create the documented views; called again whenever a manifest adds a metadata column."""
    excluded = ", ".join(_MODEL_COLUMNS_NOT_IN_LAYERS)
    run(con, "CREATE OR REPLACE VIEW models AS SELECT m.* EXCLUDE (path), "
        "coalesce(a.aliases, []::VARCHAR[]) AS aliases "
        "FROM t_models m LEFT JOIN (SELECT n.model_id, list_sort(list_distinct(list(n.name))) AS aliases "
        "FROM t_names n JOIN t_models o ON o.model_id = n.model_id AND n.name <> o.model GROUP BY n.model_id) a "
        "USING (model_id) ORDER BY m.model_id")
    run(con, "CREATE OR REPLACE VIEW model_names AS SELECT n.model_id, n.name, n.source, n.added_at FROM t_names n "
        "ORDER BY n.model_id, n.added_at")
    run(con, "CREATE OR REPLACE VIEW layers AS SELECT l.* EXCLUDE (shard, row_offset), "
        f"m.* EXCLUDE ({excluded}) FROM t_layers l JOIN t_models m USING (model_id)"
    )
    run(con, "CREATE OR REPLACE VIEW filter_counts AS SELECT m.model_id, m.model, m.version, l.kernel, "
        "count(*) AS n_layers, CAST(sum(l.n_filters) AS BIGINT) AS n_filters FROM t_layers l JOIN t_models m USING (model_id) "
        "GROUP BY ALL ORDER BY m.model_id, l.kernel"
    )
    run(con, "CREATE OR REPLACE VIEW shapes AS SELECT kernel, count(DISTINCT model_id) AS n_models, "
        "count(*) AS n_layers, CAST(sum(n_filters) AS BIGINT) AS n_filters FROM t_layers GROUP BY kernel "
        "ORDER BY n_filters DESC"
    )


def rollback(con: Any) -> None:
    """Roll back after a failed statement; a failed COMMIT has ended the transaction already ("cannot
    rollback - no transaction is active"), and that must not hide the error that caused it."""
    try:
        run(con, "ROLLBACK")
    except Exception:  # noqa: BLE001 - the original error is being raised
        pass


@contextmanager
def transaction(con: Any) -> Iterator[None]:
    run(con, "BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        rollback(con)
        raise
    run(con, "COMMIT")


Known = tuple[int, str, int, int]  # (model_id, name, n_layers, n_filters) of a model in the store
MAX_MODEL_COLUMNS = 512  # columns of t_models: the taxonomy, the built-in ones and the extra metadata keys
_SHA_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


class Catalog:
    """Every SQL statement the store runs: against the internal tables (``t_models``, ``t_layers``,
    ``t_shards``, ``t_names``, ``t_model_data``) and the views (the user's queries, the read plan). The store
    and its maintenance functions ask it questions and hand it rows; :mod:`._segments` writes the selection
    SQL (a query over the ``layers`` view) that :meth:`where_rows_lie` joins with the tables."""

    def __init__(self, root: Path, busy_timeout: float = 60.0) -> None:
        self.root = root
        self.busy_timeout = busy_timeout
        self._schema_checked = False

    def connect(self, read_only: bool = True) -> Any:
        return connect(self.root, read_only=read_only, timeout=self.busy_timeout)

    def _writer(self) -> Any:
        """A read-write connection, the schema brought up to date once per store object (under the lock)."""
        return _UpgradingConnection(self)

    # -- the views: the user's SQL and the read plan ----------------------------------------------------
    def query(self, query: str, params: Any, text: str, what: str, con: Any = None) -> Any:
        """Run ``query`` (on ``con``, else a read-only connection of its own) into a DataFrame; a user's mistake
        in it is explained in terms of ``text`` (what the user wrote, a query or a ``where`` predicate)."""
        from ._query import is_users_mistake, query_error

        if con is None:
            with self.connect() as own:
                return self.query(query, params, text, what, own)
        try:
            return con.execute(query, params).df() if params is not None else con.execute(query).df()
        except Exception as e:
            if is_users_mistake(e):
                raise query_error(e, text, what, con) from None
            resource = query_resource_error(self.root, e)
            if resource is not None:
                raise resource from None
            raise

    def models(self) -> Any:
        """The ``models`` view, ordered by model id (:meth:`Store.models`)."""
        return self.query("SELECT * FROM models ORDER BY model_id", None, "", "query")

    def layers(self, where: str | None, params: Any) -> Any:
        """The ``layers`` view, optionally filtered by the user's ``where`` predicate (:meth:`Store.layers`)."""
        query = "SELECT * FROM layers" + (f" WHERE ({where})" if where else "") + " ORDER BY model_id, layer_index"
        return self.query(query, params, where or "", "where predicate")

    def layer_columns(self, con: Any = None) -> list[str]:
        """The columns of the ``layers`` view, in order (the manifests' metadata columns included)."""
        if con is None:
            with self.connect() as own:
                return self.layer_columns(own)
        return _columns(con, "layers")

    def column_sql(self, name: str) -> str | None:
        """The ``layers`` column that ``name`` names, as a quoted SQL identifier to build an expression on: the
        column itself, else the one a manifest header becomes ('Visual Category' -> ``"visual_category"``);
        None when the view has no such column."""
        return column_sql(self.layer_columns(), name)

    def axis_sql(self, by: str) -> tuple[str, bool]:
        """(the SQL expression of a grouping axis, whether it is the depth deciles); see
        :func:`filterdb.store._segments.axis_sql`. Raises :class:`filterdb.selection.SelectionError` for a bare
        name that is no column."""
        from ._segments import axis_sql

        return axis_sql(self.layer_columns(), by)

    def selected_layers(self, selection: Any, *, axes: Sequence[str] = (), columns: Sequence[str] = ()) -> Any:
        """The ``layers`` rows of a :class:`filterdb.selection.Selection` (no shard is read), ordered by model
        and layer. ``selection.shape`` None selects every layer with a 2-D kernel. ``columns``: the view's
        columns to return (default all); ``group_value`` (of ``selection.by``) and ``axis_0``, ... (of ``axes``)
        follow. ``frame.attrs["depth"]``: the added columns that hold depth deciles."""
        from ._segments import selected_layers

        return selected_layers(self, selection, axes=axes, columns=columns)

    def where_rows_lie(self, con: Any, selected: str, bound: list[Any], explain: str, what: str,
                       extra: Sequence[str], layer_columns: bool) -> Any:
        """The read plan's query: the rows of ``selected`` (a query over the ``layers`` view, from
        :mod:`._segments`) joined with ``t_layers`` and ``t_shards``: each layer's shard, row offset and the
        shard's recorded rows, bytes and checksum; then its ``n_nonfinite`` and the ``extra`` columns of
        ``selected`` (or every column of it, ``layer_columns=True``)."""
        layer_cols, shard_cols = set(_columns(con, "t_layers")), set(_columns(con, "t_shards"))
        # stores written by older versions lack some columns (read-only opens do not upgrade the catalog)
        nonfinite = "coalesce(t.n_nonfinite, 0)" if "n_nonfinite" in layer_cols else "0"
        sha = "s.sha256" if "sha256" in shard_cols else "CAST(NULL AS VARCHAR)"
        if layer_columns:  # the view's columns (its own n_nonfinite among them) then where the rows lie
            first, last = "l.*, ", ""
        else:
            first = "l.layer_id, l.model_id, l.model, l.layer_index, l.n_filters, l.scale, "
            last = f", {nonfinite} AS n_nonfinite" + "".join(f", l.{c}" for c in extra)
        query = (f"SELECT {first}t.shard, t.row_offset, s.n_rows AS shard_rows, s.bytes AS shard_bytes, "
                 f"{sha} AS shard_sha256{last} "
                 f"FROM ({selected}) l JOIN t_layers t USING (layer_id) "
                 "LEFT JOIN t_shards s ON s.shard = t.shard ORDER BY l.model_id, l.layer_index")
        return self.query(query, bound, explain, what, con)

    # -- reads -------------------------------------------------------------------------------------
    def known(self, sha256: str, con: Any = None) -> Known | None:
        if con is None:
            with self.connect() as own:
                return self.known(sha256, own)
        rows = run(con, "SELECT model_id, model, n_layers, n_filters FROM t_models WHERE sha256 = ?", [sha256])
        return (int(rows[0][0]), str(rows[0][1]), int(rows[0][2]), int(rows[0][3])) if rows else None

    def hashes(self) -> set[str]:
        with self.connect() as con:
            return {r[0] for r in run(con, "SELECT sha256 FROM t_models")}

    def resolve(self, text: str) -> list[int]:
        """Model ids named by an id, a name (all its versions) or a sha256 prefix; [] when none."""
        with self.connect() as con:
            if text.isdigit():
                rows = run(con, "SELECT model_id FROM t_models WHERE model_id = ?", [int(text)])
                if rows:
                    return [int(r[0]) for r in rows]
            rows = run(con, "SELECT model_id FROM t_models WHERE model = ? ORDER BY model_id", [text])
            if not rows and _SHA_PREFIX.match(text):
                rows = run(con, "SELECT model_id FROM t_models WHERE starts_with(sha256, ?) ORDER BY model_id", [text])
        return [int(r[0]) for r in rows]

    def shard_files(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in run(con, "SELECT shard FROM t_shards")]

    def model_hashes_with_data(self) -> tuple[set[str], dict[tuple[str, str], tuple[str, int, str]]]:
        """(every model's sha256, (sha256, kind) -> (file, bytes, checksum) of the recorded per-model data)."""
        with self.connect() as con:
            shas = {r[0] for r in run(con, "SELECT sha256 FROM t_models")}
            if "t_model_data" not in tables(con):
                return shas, {}
            rows = run(con, "SELECT sha256, kind, file, bytes, checksum FROM t_model_data")
        return shas, {(s, k): (f, int(b), c) for s, k, f, b, c in rows}

    def sizes(self) -> tuple[int, int, int, Any, int]:
        """(models, layers, filters, filters per shape (a DataFrame), shard bytes)."""
        with self.connect() as con:
            n_models = run(con, "SELECT count(*) FROM t_models")[0][0]
            n_layers, n_filters = run(con, "SELECT count(*), coalesce(sum(n_filters), 0) FROM t_layers")[0]
            shapes = con.execute(
                "SELECT s.kernel, s.n_models, s.n_layers, s.n_filters, coalesce(b.bytes, 0) AS shard_bytes "
                "FROM shapes s LEFT JOIN (SELECT kernel, CAST(sum(bytes) AS BIGINT) AS bytes FROM t_shards "
                "GROUP BY kernel) b USING (kernel) ORDER BY s.n_filters DESC").df()
            shard_bytes = run(con, "SELECT coalesce(sum(bytes), 0) FROM t_shards")[0][0]
        return int(n_models), int(n_layers), int(n_filters), shapes, int(shard_bytes)

    def model_ids(self) -> dict[str, int]:
        """sha256 -> model id of every model."""
        with self.connect() as con:
            return {sha: int(mid) for mid, sha in run(con, "SELECT model_id, sha256 FROM t_models")}

    def verify_rows(self) -> tuple[dict[int, tuple[str, str | None]], list[Any], list[Any]]:
        """What ``verify`` checks, read with every block's checksum checked: (model id -> (name, source or
        path), the shards (shard, model_id, n_rows, bytes, sha256 or None) by name, the layers whose rows lie
        outside their shard (model_id, layer, shard, row_offset, n_filters, the shard's n_rows or None))."""
        with self.connect() as con:
            for table in ("t_meta", "t_models", "t_layers", "t_shards"):
                # reading every column of every row makes DuckDB check each block's checksum
                run(con, f"SELECT count(*) FROM {table} WHERE hash(COLUMNS(*)) IS NOT NULL")
            has_sha = "sha256" in _columns(con, "t_shards")
            models = {int(mid): (name, source or path) for mid, name, source, path in run(
                con, "SELECT model_id, model, source, path FROM t_models")}
            shards = run(con, "SELECT shard, model_id, n_rows, bytes, " + ("sha256" if has_sha else "NULL")
                         + " FROM t_shards ORDER BY shard")
            outside = run(con, (
                "SELECT l.model_id, l.layer, l.shard, l.row_offset, l.n_filters, s.n_rows FROM t_layers l "
                "LEFT JOIN t_shards s ON s.shard = l.shard "
                "WHERE l.n_filters > 0 AND (s.shard IS NULL OR l.row_offset < 0 OR l.row_offset + l.n_filters > s.n_rows)"))
        return models, shards, outside

    # -- writes (under the writer lock) ------------------------------------------------------------
    def shards_without_checksum(self) -> list[Any]:
        """(shard, model_id, n_rows, bytes, model) of the shards an older filterdb recorded no sha256 for (the
        schema brought up to date first)."""
        with self._writer() as con:
            return run(con, "SELECT s.shard, s.model_id, s.n_rows, s.bytes, m.model FROM t_shards s "
                       "LEFT JOIN t_models m USING (model_id) WHERE s.sha256 IS NULL ORDER BY s.shard")

    def set_checksums(self, digests: list[tuple[str, str]]) -> None:
        """Record each (sha256, shard)."""
        with self._writer() as con:
            con.executemany("UPDATE t_shards SET sha256 = ? WHERE shard = ?", digests)

    def add_model(self, model_row: dict[str, Any], layer_rows: list[dict[str, Any]], layer_kernel: list[str],
                  written: list[tuple[str, str, int, int, str]], schema: Any) -> int | Known:
        """Insert one model, its layers (each pointed at its rows of its kernel's shard) and its shards, in one
        transaction; the known model instead when the same bytes were committed meanwhile."""
        import pyarrow as pa

        shard_of = {key: rel for key, rel, _, _, _ in written}
        offsets: dict[str, int] = {}
        with self._writer() as con, transaction(con):
            known = self.known(model_row["sha256"], con)
            if known:
                return known
            row = dict(model_row)
            self._add_columns(con, row)
            model_id = run(con, "SELECT coalesce(max(model_id), 0) + 1 FROM t_models")[0][0]
            version = run(con, "SELECT coalesce(max(version), 0) + 1 FROM t_models WHERE model = ?",
                          [row["model"]])[0][0]
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            row.update(model_id=model_id, version=version, ingested_at=now)
            cols = list(row)
            run(con, f"INSERT INTO t_models ({', '.join(quote_ident(c) for c in cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})", [row[c] for c in cols])
            run(con, "INSERT INTO t_names VALUES (?, ?, ?, ?)", [model_id, row["model"], row.get("source"), now])
            first_layer = run(con, "SELECT coalesce(max(layer_id), 0) + 1 FROM t_layers")[0][0]
            rows = []
            for i, (lrow, key) in enumerate(zip(layer_rows, layer_kernel)):
                rows.append(dict(lrow, layer_id=first_layer + i, model_id=model_id, shard=shard_of.get(key),
                                 row_offset=offsets.get(key, 0)))
                offsets[key] = offsets.get(key, 0) + int(lrow["n_filters"])
            if rows:
                con.register("_new_layers", pa.Table.from_pylist(rows, schema=schema(rows[0])))
                run(con, "INSERT INTO t_layers BY NAME SELECT * FROM _new_layers")
                con.unregister("_new_layers")
            for key, rel, n, size, digest in written:
                run(con, "INSERT INTO t_shards (shard, model_id, kernel, n_rows, bytes, sha256) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [rel, model_id, key, n, size, digest])
        return int(model_id)

    def _add_columns(self, con: Any, row: dict[str, Any]) -> None:
        existing = set(model_columns(con))
        added = [c for c in row if c not in existing]
        if len(existing) + len(added) > MAX_MODEL_COLUMNS:
            raise StoreError(
                f"{self.root}: model {row['model']!r} would bring the models view to {len(existing) + len(added):,} "
                f"columns, more than {MAX_MODEL_COLUMNS:,}; extra metadata keys become columns: keep the ones you "
                "query")
        for col in added:
            run(con, f"ALTER TABLE t_models ADD COLUMN {quote_ident(col)} VARCHAR")
        if added:
            refresh_views(con)

    def add_names(self, entries: list[tuple[str, str, str | None]]) -> None:
        """Record each (sha256, name, source) as a name of the model with that sha256 (once; models not in the
        store are ignored), in one transaction."""
        if not entries:
            return
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with self._writer() as con, transaction(con):
            for sha, name, source in entries:
                run(con, "INSERT INTO t_names SELECT model_id, ?, ?, ? FROM t_models m WHERE sha256 = ? AND NOT EXISTS "
                    "(SELECT 1 FROM t_names n WHERE n.model_id = m.model_id AND n.name = ? AND "
                    "n.source IS NOT DISTINCT FROM ?)", [name, source, now, sha, name, source])

    def remove(self, ids: list[int], check: Any) -> tuple[list[str], list[str]]:
        """Delete models ``ids`` and everything of theirs from the catalog, in one transaction; (their shard
        files, their sha256s), each checked by ``check(kind, value)`` before anything changes."""
        with self._writer() as con, transaction(con):
            shards = [check("shard", r[0]) for r in run(
                con, "SELECT shard FROM t_shards WHERE list_contains(?, model_id)", [ids])]
            shas = [check("sha256", r[0]) for r in run(
                con, "SELECT sha256 FROM t_models WHERE list_contains(?, model_id)", [ids])]
            run(con, "DELETE FROM t_model_data WHERE list_contains(?, sha256)", [shas])
            for table in ("t_names", "t_layers", "t_shards", "t_models"):
                run(con, f"DELETE FROM {table} WHERE list_contains(?, model_id)", [ids])
        return shards, shas

    def record_model_data(self, sha256: str, kind: str, file: str, n_bytes: int, checksum: str) -> bool:
        """Record a per-model data file; False (nothing recorded) when no model has that sha256."""
        with self._writer() as con, transaction(con):
            if self.known(sha256, con) is None:
                return False
            run(con, "INSERT OR REPLACE INTO t_model_data VALUES (?, ?, ?, ?, ?)",
                [sha256, kind, file, n_bytes, checksum])
        return True


class _UpgradingConnection:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._cm: Any = None

    def __enter__(self) -> Any:
        self._cm = self._catalog.connect(read_only=False)
        con = self._cm.__enter__()
        if not self._catalog._schema_checked:
            try:
                upgrade_schema(con)
            except BaseException as e:
                self._cm.__exit__(type(e), e, e.__traceback__)
                raise
            self._catalog._schema_checked = True
        return con

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)
