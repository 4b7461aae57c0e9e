"""Print DataFrames for the store commands: a rich table on a terminal, or CSV / JSON for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .._format import number
from ._app import console

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMAT_OPTION", "print_frame"]

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                             show_default=True, help="Output format.")

# Integer columns that are identifiers or codes, not quantities: shown without thousands separators.
_PLAIN_INTEGERS = ("model_id", "layer_id", "layer_index", "version", "opset", "spatial_ndim", "groups")


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (list, tuple)) and getattr(value, "ndim", 0) == 0 else False
    except (ImportError, TypeError, ValueError):
        return value is None


def _cell(value: Any, column: str = "") -> str:
    if column == "verdicts" and value is not None and not isinstance(value, str) and hasattr(value, "__len__"):
        return ", ".join(str(v) for v in value) or "ok"  # no verdict is what `filterdb check` calls ok
    if value is None or _is_missing(value):
        return ""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        items = value.tolist() if hasattr(value, "tolist") else value
        return ", ".join(str(v) for v in items)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value))
    if column in _PLAIN_INTEGERS or column.endswith("_id"):
        return str(value)
    if isinstance(value, (int, float)) or type(value).__name__.startswith(("int", "uint", "float")):
        return number(value)
    text = str(value)
    return "" if text in ("nan", "<NA>", "NaT", "None") else text


def _headers(names: list[str], widths: list[int], limit: int) -> list[str]:
    """Column headers; when the table is wider than ``limit``, long headers break after an underscore
    (never inside a word) down to their column's widest value."""
    natural = sum(max(len(n), w) for n, w in zip(names, widths)) + 3 * len(names) + 1
    if natural <= limit:
        return names
    out = []
    for name, width in zip(names, widths):
        parts = [p + "_" for p in name.split("_")]
        parts[-1] = parts[-1][:-1]
        target = max(width, max(len(p) for p in parts))
        lines = [""]
        for part in parts:
            if lines[-1] and len(lines[-1]) + len(part) > target:
                lines.append("")
            lines[-1] += part
        out.append("\n".join(lines))
    return out


def print_frame(frame: pd.DataFrame, fmt: str = "table", title: str | None = None, max_rows: int | None = None) -> None:
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", default_handler=str))
        return
    from rich.table import Table

    shown = frame if max_rows is None else frame.head(max_rows)
    names = [str(c) for c in frame.columns]
    cells = [[_cell(v, names[i]) for i, v in enumerate(row)] for row in shown.itertuples(index=False)]
    widths = [max((len(r[i]) for r in cells), default=0) for i in range(len(names))]
    headers = _headers(names, widths, console.width)
    words = [max(len(line) for line in h.split("\n")) for h in headers]
    # keep every header word whole when the words fit at all; else rich folds (cropping would hide columns)
    whole = sum(words) + 3 * len(words) + 1 <= console.width
    table = Table(title=title, show_lines=False, header_style="bold")
    for column, header, word in zip(frame.columns, headers, words):
        numeric = str(frame[column].dtype).startswith(("int", "float", "Int", "Float", "UInt"))
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         min_width=word if whole else None)
    for row in cells:
        table.add_row(*row)
    console.print(table)
    if max_rows is not None and len(frame) > max_rows:
        console.print(f"... {len(frame) - max_rows} more rows (use --limit or --format csv)")
