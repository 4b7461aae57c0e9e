"""Print DataFrames for the store commands: a rich table on a terminal, or CSV / JSON for scripts."""

from __future__ import annotations

import math
from typing import Any

import click

from ._app import console

__all__ = ["FORMAT_OPTION", "print_frame"]

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                             show_default=True, help="Output format.")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return ", ".join(str(v) for v in value.tolist())
    except ImportError:  # pragma: no cover
        pass
    text = str(value)
    return "" if text in ("nan", "<NA>", "NaT", "None") else text


def print_frame(frame: Any, fmt: str = "table", title: str | None = None, max_rows: int | None = None) -> None:
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", default_handler=str))
        return
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in frame.columns:
        numeric = str(frame[column].dtype).startswith(("int", "float", "Int", "Float", "UInt"))
        table.add_column(str(column), justify="right" if numeric else "left", overflow="fold")
    shown = frame if max_rows is None else frame.head(max_rows)
    for row in shown.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console.print(table)
    if max_rows is not None and len(frame) > max_rows:
        console.print(f"... {len(frame) - max_rows} more rows (use --limit or --format csv)")
