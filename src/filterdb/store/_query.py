"""A user's SQL that DuckDB refuses, explained in filterdb's words: what is wrong, and what exists instead.

The query text (``filterdb sql``) and the ``where`` predicates (``--where``, ``layers()``, ``iter_filters()``,
the analyses) are written by the user; DuckDB's own messages name internal tables and suggest system
catalogs ("did you mean pg_attrdef?"). :func:`query_error` turns them into a :class:`StoreQueryError`
(a usage error: exit code 2) that names the views and their columns.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import suggest
from ._errors import StoreQueryError

__all__ = ["VIEWS", "is_users_mistake", "query_error"]

VIEWS = ("models", "layers", "filter_counts", "shapes")


def is_users_mistake(error: Exception) -> bool:
    """DuckDB errors caused by the query text or its parameters (not by the catalog file)."""
    import duckdb

    return isinstance(error, (duckdb.ProgrammingError, duckdb.DataError, duckdb.ConversionException,
                              duckdb.BinderException, duckdb.ParserException, duckdb.CatalogException,
                              duckdb.PermissionException))


def view_columns(con: Any) -> dict[str, list[str]]:
    out = {}
    for view in VIEWS:
        cursor = con.execute(f"SELECT * FROM {view} LIMIT 0")
        out[view] = [d[0] for d in cursor.description]
        cursor.fetchall()
    return out


def query_error(error: Exception, text: str, what: str, con: Any) -> StoreQueryError:
    """``text``: the user's SQL as written; ``what``: "query" or "where predicate"."""
    message = _explain(error, text, what, con)
    return StoreQueryError(f"query failed: {message}" if what == "query" else message)


def _explain(error: Exception, text: str, what: str, con: Any) -> str:
    import duckdb

    first = (str(error).splitlines() or [""])[0]
    detail = first.split(": ", 1)[-1].rstrip("!")
    shown = f"{what} {text if len(text) <= 240 else text[:240] + ' ...'!r}"
    views = ", ".join(VIEWS)
    if isinstance(error, duckdb.ParserException):
        if what.startswith("where"):  # locate the error in the user's text, not in the query around it
            try:
                duckdb.extract_statements(f"SELECT 1 WHERE {text}")
            except duckdb.ParserException as alone:
                detail = (str(alone).splitlines() or [""])[0].split(": ", 1)[-1]
        near = re.search(r'at or near "(.*)"', detail)
        where = f"near {near.group(1)!r}" if near else ("at the end of the text" if "end of input" in detail
                                                          else f"({detail})")
        return f"SQL syntax error in the {shown}: {where}"
    if isinstance(error, duckdb.CatalogException):
        name = re.search(r"with name (\S+) does not exist", detail)
        if name:
            return (f"{suggest(name.group(1), VIEWS, 'view')} (in the {shown}); the views are {views}: "
                    "`filterdb sql STORE \"DESCRIBE layers\"` lists a view's columns")
    if isinstance(error, duckdb.BinderException):
        column = re.search(r'Referenced column "(.+?)" not found', detail)
        if column:
            columns = view_columns(con)
            used = [v for v in VIEWS if re.search(rf"\b{v}\b", text)] or (["layers"] if what.startswith("where")
                                                                         else list(VIEWS))
            choices = sorted({c for v in used for c in columns[v]})
            return (f"{suggest(column.group(1), choices, 'column')} (in the {shown}; columns of "
                    f"{', '.join(used)}: {', '.join(choices)})")
    if isinstance(error, duckdb.PermissionException):
        return (f"the {shown} reaches outside the store (files, other databases, extensions): queries read the "
                f"views {views} only")
    if isinstance(error, duckdb.InvalidInputException):
        if "Values were not provided" in detail:
            return (f"the {shown} has a '?' placeholder without a value: give one value per '?' "
                    "(-p VALUE on the command line, params=[...] in Python)")
        if "count mismatch" in detail:
            return f"more values than '?' placeholders for the {shown}: give one value per '?'"
    return f"the {shown} failed: {detail} (the views are {views})"
