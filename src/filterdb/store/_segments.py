"""The read plan: where the filters of the selected layers lie (shard file, row range, scale, the shard's
recorded size and checksum). The one place that joins the ``layers`` view with the physical ``t_layers``
and ``t_shards`` tables: analyses, export and :meth:`Store.iter_filters` all read through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import StoreQueryError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["SEGMENT_COLUMNS", "segments"]

# The columns of a read plan, in order (``group_value`` follows when a group expression is given).
SEGMENT_COLUMNS = ("layer_id", "model_id", "model", "layer_index", "n_filters", "scale", "shard", "row_offset",
                   "shard_rows", "shard_bytes", "shard_sha256", "n_nonfinite")


def _physical_columns(con: Any) -> tuple[set[str], set[str]]:
    """Columns of t_layers and t_shards: stores written by older versions lack some (read-only opens do not
    upgrade the catalog)."""
    out = []
    for table in ("t_layers", "t_shards"):
        cursor = con.execute(f"SELECT * FROM {table} LIMIT 0")
        out.append({d[0] for d in cursor.description})
        cursor.fetchall()
    return out[0], out[1]


def segments(store: Store, shape: str, where: str | None = None, params: Sequence[Any] | None = None, *,
             group: str | None = None, layer_columns: bool = False) -> Any:
    """See :meth:`Store.segments`."""
    if isinstance(params, Mapping):
        raise StoreQueryError("use '?' placeholders with a list of params here (the shape is bound first)")
    with store._connect() as con:  # one connection for the schema and the plan: each costs ~10 ms
        return _segments(store, con, shape, where, params, group, layer_columns)


def _segments(store: Store, con: Any, shape: str, where: str | None, params: Sequence[Any] | None,
              group: str | None, layer_columns: bool) -> Any:
    layer_cols, shard_cols = _physical_columns(con)
    nonfinite = "coalesce(t.n_nonfinite, 0)" if "n_nonfinite" in layer_cols else "0"
    sha = "s.sha256" if "sha256" in shard_cols else "CAST(NULL AS VARCHAR)"
    extra = f" AND ({where})" if where else ""
    grouped = f", ({group}) AS group_value" if group is not None else ""
    if layer_columns:  # the view's columns (its own n_nonfinite among them) then where the rows lie
        first, last = "l.*, ", ""
    else:
        first = "l.layer_id, l.model_id, l.model, l.layer_index, l.n_filters, l.scale, "
        last = f", {nonfinite} AS n_nonfinite" + (", l.group_value" if group is not None else "")
    query = (f"SELECT {first}t.shard, t.row_offset, s.n_rows AS shard_rows, s.bytes AS shard_bytes, "
             f"{sha} AS shard_sha256{last} "
             f"FROM (SELECT *{grouped} FROM layers WHERE kernel = ?{extra}) l JOIN t_layers t USING (layer_id) "
             "LEFT JOIN t_shards s ON s.shard = t.shard ORDER BY l.model_id, l.layer_index")
    bound = [shape, *(params or [])]
    if group is None:
        return store._query(query, bound, where or "", "where predicate", con)
    # a group expression is SQL too: a mistake in it or in the predicate is explained as one query
    return store._query(query, bound, f"SELECT {group} FROM layers WHERE kernel = ?{extra}", "query", con)
