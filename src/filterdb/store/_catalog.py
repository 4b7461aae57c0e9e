"""The catalog: one DuckDB file with the model and layer rows, and the user-facing views.

DuckDB lets one process open a file read-write, and refuses a read-only open while another process has
it read-write (and the reverse). So nobody keeps the catalog open: writers open it read-write for one
short transaction per model (under the writer lock), readers open it read-only for one query, and both
retry with backoff while the other side holds it (see docs/store.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import StoreBusyError, StoreError, StoreWriteError

__all__ = [
    "CATALOG_FILE",
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
"""

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
_READER_CONFIG: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False,
                                                                   "lock_configuration": True}


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
            con = duckdb.connect(str(path), read_only=read_only, config=_READER_CONFIG if read_only else {})
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
        raise catalog_error(root, e) from e
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
    """
    run(con, "ALTER TABLE t_shards ADD COLUMN IF NOT EXISTS sha256 VARCHAR")


def shard_records(root: Path) -> dict[str, Any]:
    """shard path -> ShardRecord (bytes, rows, owning model, sha256 when recorded), from one catalog query."""
    from ._shards import ShardRecord

    with connect(root, read_only=True) as con:
        has_sha = "sha256" in _columns(con, "t_shards")
        rows = run(con, "SELECT s.shard, s.bytes, s.n_rows, s.model_id, m.model, "
                   + ("s.sha256" if has_sha else "NULL") + " FROM t_shards s LEFT JOIN t_models m USING (model_id)")
    return {shard: ShardRecord(int(n_bytes), int(n_rows), f"model {name!r} (id {mid})", sha)
            for shard, n_bytes, n_rows, mid, name, sha in rows}


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
    run(con, "CREATE OR REPLACE VIEW models AS SELECT * EXCLUDE (path) FROM t_models")
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
