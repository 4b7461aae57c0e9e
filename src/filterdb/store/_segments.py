"""The read plan, and the one writer of selection SQL.

A :class:`filterdb.selection.Selection` becomes SQL here and nowhere else: ``kernel = ? AND (where)`` with
the shape bound first, a grouping axis as the quoted column it names, the depth deciles (``by="depth"``) as
one ``CASE`` over ``conv_depth_norm``, or the caller's expression in brackets; the fixed split of a group's
layers into two halves (the noise floors). :func:`segments` then asks the catalog where the filters of each
selected layer lie (:meth:`Catalog.where_rows_lie`: shard file, row range, scale, the shard's recorded size and
checksum). Analyses, export and :meth:`Store.iter_filters` all read through it. Each plan reads the catalog
through one connection (an open costs ~10-30 ms: drift paid for five of them per call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import suggest
from ..selection import DEPTH_AXIS, DEPTH_EDGES, DEPTH_LABELS, Selection, SelectionError
from ._errors import StoreQueryError

if TYPE_CHECKING:
    from ._catalog import Catalog

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


def axis_sql(columns: Sequence[str], by: str) -> tuple[str, bool]:
    """(SQL of a grouping axis, whether it is the depth-decile axis), given the ``layers`` view's ``columns``.

    ``by``: a column of the ``layers`` view (quoted here; a manifest header such as 'Visual Category' finds its
    column), "depth" (the deciles, unless the view has a column of that name) or an SQL expression over the
    view's columns. A bare name that is no column is a :class:`SelectionError` suggesting the closest.
    """
    from ._catalog import column_sql

    if not isinstance(by, str) or not by.strip():
        raise SelectionError(f"by must be a column name, 'depth' or an SQL expression, got {by!r}")
    text = by.strip()
    column = column_sql(columns, text)
    if column is not None:
        return column, False
    if text == DEPTH_AXIS:
        return depth_decile_sql(), True
    if _IDENT.match(text):
        groupable = [c for c in columns if c not in _NOT_AXES] + [DEPTH_AXIS]
        raise SelectionError(
            f"{suggest(text, groupable, 'column')} (group by a column of the layers view, by 'depth' for depth "
            "deciles, or by an SQL expression over these columns)")
    return f"({text})", False


def _selected(columns: Sequence[str], selection: Selection, axes: Sequence[str], half: bool,
              group: str | None) -> tuple[str, list[Any], str, tuple[str, ...]]:
    """(``SELECT *, <axes> FROM layers WHERE ...``, its bound values, the text to explain an error with, the
    added columns that hold depth deciles)."""
    extra_cols = ""
    depth: list[str] = []
    if group is not None:  # a raw expression (the older keyword API): passed through as written
        extra_cols += f", ({group}) AS group_value"
    elif selection.by is not None:
        sql, is_depth = axis_sql(columns, selection.by)
        extra_cols += f", {sql} AS group_value"
        depth += ["group_value"] if is_depth else []
    for i, axis in enumerate(axes):
        sql, is_depth = axis_sql(columns, axis)
        extra_cols += f", {sql} AS axis_{i}"
        depth += [f"axis_{i}"] if is_depth else []
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
    return text, bound, explain, tuple(depth)


def selected_layers(catalog: Catalog, selection: Selection, *, axes: Sequence[str] = (),
                    columns: Sequence[str] = ()) -> Any:
    """See :meth:`Catalog.selected_layers`."""
    with catalog.connect() as con:
        query, bound, explain, depth = _selected(catalog.layer_columns(con), selection, axes, False, None)
        wanted = ", ".join([*columns, *(["group_value"] if selection.by is not None else []),
                            *(f"axis_{i}" for i in range(len(axes)))]) or "*"
        what = "where predicate" if explain == (selection.where or "") else "query"
        frame = catalog.query(f"SELECT {wanted} FROM ({query}) ORDER BY model_id, layer_index", bound, explain,
                              what, con)
    frame.attrs["depth"] = depth
    return frame


def segments(catalog: Catalog, shape: str | Selection, where: str | None = None,
             params: Sequence[Any] | None = None, *, group: str | None = None, layer_columns: bool = False,
             axes: Sequence[str] = (), halves: bool = False) -> Any:
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
    with catalog.connect() as con:  # one connection for the columns, the schema and the plan
        inner, bound, explain, depth = _selected(catalog.layer_columns(con), selection, tuple(axes), halves, group)
        extra = [*(["group_value"] if group is not None or selection.by is not None else []),
                 *(f"axis_{i}" for i in range(len(axes))), *(["half"] if halves else [])]
        # a grouping expression is SQL too: a mistake in it or in the predicate is explained as one query
        what = "where predicate" if explain == (selection.where or "") else "query"
        frame = catalog.where_rows_lie(con, inner, bound, explain, what, extra, layer_columns)
    frame.attrs["depth"] = depth
    return frame
