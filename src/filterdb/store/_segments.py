"""The read plan, and the one writer of selection SQL.

A :class:`filterdb.selection.Selection` becomes SQL here and nowhere else: ``kernel = ? AND (where)`` with
the shape bound first, a grouping axis as the quoted column it names, the depth deciles (``by="depth"``) as
one ``CASE`` over ``conv_depth_norm``, or the caller's expression in brackets; the fixed split of a group's
layers into two halves (the noise floors). :func:`segments` then joins the selected rows of the ``layers``
view with the physical ``t_layers`` and ``t_shards`` tables: where the filters of each layer lie (shard
file, row range, scale, the shard's recorded size and checksum). Analyses, export and
:meth:`Store.iter_filters` all read through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import suggest
from ..selection import DEPTH_AXIS, DEPTH_EDGES, DEPTH_LABELS, Selection, SelectionError
from ._errors import StoreQueryError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["HALF_SQL", "SEGMENT_COLUMNS", "axis_sql", "depth_decile_sql", "segments", "selected_layers"]

# The columns of a read plan, in order (``group_value``, ``axis_0``, ... and ``half`` follow when asked for).
SEGMENT_COLUMNS = ("layer_id", "model_id", "model", "layer_index", "n_filters", "scale", "shard", "row_offset",
                   "shard_rows", "shard_bytes", "shard_sha256", "n_nonfinite")
# A fixed pseudo-random half of the layers, 0 or 1: the top bit of a 32-bit multiplicative (Knuth) hash of the
# layer id, the same on every run (the split of the noise floors).
HALF_SQL = "CAST((((layer_id * 2654435761) % 4294967296) // 2147483648) AS INTEGER)"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_AXES = ("shape", "stride", "dilation", "verdicts")  # columns of the view that make no grouping


def depth_decile_sql(column: str = "conv_depth_norm") -> str:
    """The depth-decile label of ``column`` (:data:`filterdb.selection.DEPTH_LABELS`): [0, 0.1], (0.1, 0.2], ...;
    values below 0 or above 1 go to the end deciles; NULL stays NULL. The only definition of the rule."""
    cases = " ".join(f"WHEN {column} <= {edge!r}::DOUBLE THEN '{label}'"
                     for edge, label in zip(DEPTH_EDGES, DEPTH_LABELS))
    return f"(CASE WHEN {column} IS NULL THEN NULL {cases} ELSE '{DEPTH_LABELS[-1]}' END)"


def axis_sql(store: Store, by: str) -> tuple[str, bool]:
    """(SQL of a grouping axis, whether it is the depth-decile axis).

    ``by``: a column of the ``layers`` view (quoted here; a manifest header such as 'Visual Category' finds its
    column), "depth" (the deciles, unless the view has a column of that name) or an SQL expression over the
    view's columns. A bare name that is no column is a :class:`SelectionError` suggesting the closest.
    """
    if not isinstance(by, str) or not by.strip():
        raise SelectionError(f"by must be a column name, 'depth' or an SQL expression, got {by!r}")
    text = by.strip()
    column = store.column_sql(text)
    if column is not None:
        return column, False
    if text == DEPTH_AXIS:
        return depth_decile_sql(), True
    if _IDENT.match(text):
        groupable = [c for c in store.layer_columns() if c not in _NOT_AXES] + [DEPTH_AXIS]
        raise SelectionError(
            f"{suggest(text, groupable, 'column')} (group by a column of the layers view, by 'depth' for depth "
            "deciles, or by an SQL expression over these columns)")
    return f"({text})", False


def _physical_columns(con: Any) -> tuple[set[str], set[str]]:
    """Columns of t_layers and t_shards: stores written by older versions lack some (read-only opens do not
    upgrade the catalog)."""
    out = []
    for table in ("t_layers", "t_shards"):
        cursor = con.execute(f"SELECT * FROM {table} LIMIT 0")
        out.append({d[0] for d in cursor.description})
        cursor.fetchall()
    return out[0], out[1]


def _selected(store: Store, selection: Selection, axes: Sequence[str], half: bool,
              group: str | None) -> tuple[str, list[Any], str]:
    """(``SELECT *, <axes> FROM layers WHERE ...``, its bound values, the text to explain an error with)."""
    extra_cols = ""
    if group is not None:  # a raw expression (the older keyword API): passed through as written
        extra_cols += f", ({group}) AS group_value"
    elif selection.by is not None:
        extra_cols += f", {axis_sql(store, selection.by)[0]} AS group_value"
    for i, axis in enumerate(axes):
        extra_cols += f", {axis_sql(store, axis)[0]} AS axis_{i}"
    if half:
        extra_cols += f", {HALF_SQL} AS half"
    if selection.shape is None:
        conds, bound = ["spatial_ndim = 2"], []
    else:
        conds, bound = ["kernel = ?"], [selection.shape]
    if selection.where:
        conds.append(f"({selection.where})")
    bound.extend(selection.params)
    where = " AND ".join(conds)
    text = f"SELECT *{extra_cols} FROM layers WHERE {where}"
    explain = selection.where or "" if not extra_cols else text
    return text, bound, explain


def selected_layers(store: Store, selection: Selection, *, axes: Sequence[str] = (), columns: Sequence[str] = ()
                    ) -> Any:
    """See :meth:`Store.selected_layers`."""
    query, bound, explain = _selected(store, selection, axes, False, None)
    wanted = ", ".join([*columns, *(["group_value"] if selection.by is not None else []),
                        *(f"axis_{i}" for i in range(len(axes)))]) or "*"
    what = "where predicate" if explain == (selection.where or "") else "query"
    return store._query(f"SELECT {wanted} FROM ({query}) ORDER BY model_id, layer_index", bound, explain, what)


def segments(store: Store, shape: str | Selection, where: str | None = None, params: Sequence[Any] | None = None,
             *, group: str | None = None, layer_columns: bool = False, axes: Sequence[str] = (),
             halves: bool = False) -> Any:
    """See :meth:`Store.segments`."""
    if isinstance(params, Mapping):
        raise StoreQueryError("use '?' placeholders with a list of params here (the shape is bound first)")
    if isinstance(shape, Selection):
        if where is not None or params:
            raise StoreQueryError("give either a Selection or shape, where and params, not both")
        selection = shape
    else:
        selection = Selection(shape, where, tuple(params or ()))
    selection.shape_key  # noqa: B018 - the read plan needs a kernel shape (a UsageError otherwise)
    with store._connect() as con:  # one connection for the schema and the plan: each costs ~10 ms
        return _segments(store, con, selection, group, layer_columns, tuple(axes), halves)


def _segments(store: Store, con: Any, selection: Selection, group: str | None, layer_columns: bool,
              axes: tuple[str, ...], halves: bool) -> Any:
    layer_cols, shard_cols = _physical_columns(con)
    nonfinite = "coalesce(t.n_nonfinite, 0)" if "n_nonfinite" in layer_cols else "0"
    sha = "s.sha256" if "sha256" in shard_cols else "CAST(NULL AS VARCHAR)"
    inner, bound, explain = _selected(store, selection, axes, halves, group)
    extra = [*(["l.group_value"] if group is not None or selection.by is not None else []),
             *(f"l.axis_{i}" for i in range(len(axes))), *(["l.half"] if halves else [])]
    if layer_columns:  # the view's columns (its own n_nonfinite among them) then where the rows lie
        first, last = "l.*, ", ""
    else:
        first = "l.layer_id, l.model_id, l.model, l.layer_index, l.n_filters, l.scale, "
        last = f", {nonfinite} AS n_nonfinite" + "".join(f", {c}" for c in extra)
    query = (f"SELECT {first}t.shard, t.row_offset, s.n_rows AS shard_rows, s.bytes AS shard_bytes, "
             f"{sha} AS shard_sha256{last} "
             f"FROM ({inner}) l JOIN t_layers t USING (layer_id) "
             "LEFT JOIN t_shards s ON s.shard = t.shard ORDER BY l.model_id, l.layer_index")
    # a grouping expression is SQL too: a mistake in it or in the predicate is explained as one query
    what = "where predicate" if explain == (selection.where or "") else "query"
    return store._query(query, bound, explain, what, con)
