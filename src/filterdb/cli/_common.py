"""Helpers shared by the model commands (check, inspect): reading with a progress display, formatting, and a
layer listing that fits the terminal (a table when wide enough, one block per layer when narrow)."""

from __future__ import annotations

import math
import os
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._budget import ENV_VAR, parse_size
from .._read import read_model
from ..types import ModelRecord
from ._app import err_console
from ._table import markup_safe, text_cell

__all__ = ["read_with_progress", "fmt", "json_safe", "print_layers", "producer_text", "max_memory_option"]


def _set_max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Put --max-memory in the environment for this command (reader worker processes inherit it)."""
    if value is None:
        return
    parse_size(value)  # a UsageError (exit 2) names the bad value
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = value
    ctx.call_on_close(lambda: os.environ.pop(ENV_VAR) if previous is None else os.environ.update({ENV_VAR: previous}))


max_memory_option = click.option(
    "--max-memory", metavar="SIZE", callback=_set_max_memory, expose_value=False,
    help="Refuse model files that declare more data than SIZE (e.g. 2G, 512M) before allocating it "
         f"[default: ${ENV_VAR}, else 4 x the file size + 512M].")


def read_with_progress(model: str, *, trust_pickle: bool, format: str | None) -> ModelRecord:
    """Read a model, showing a spinner on stderr while it downloads/parses (only in a terminal)."""
    if not err_console.is_terminal:
        return read_model(model, trust_pickle=trust_pickle, format=format)
    with err_console.status(f"reading {markup_safe(model)} ...", spinner="dots"):
        return read_model(model, trust_pickle=trust_pickle, format=format)


def print_layers(console: Console, table: Table, blocks: list[tuple[str, list[Text]]]) -> None:
    """Print the table when every name and number fits whole; else one block per layer.

    ``table``'s cells are ``Text`` (cli/_table.py ``text_cell``); its name and number columns never wrap.
    ``blocks`` holds, per layer, its shown name and the lines of ``label value`` facts that the narrow layout
    prints under it. Piped output has a fixed width (COLUMNS, else 200).
    """
    if _table_width(table) <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(table.title, style="bold")
    from rich.text import Text

    width = max(console.width - 4, 20)
    for index, (name, lines) in enumerate(blocks, 1):
        for i, part in enumerate(text_cell(name).wrap(console, width, overflow="fold")):
            console.print(Text(f"{index:>3} " if i == 0 else "    ", style="bold") + part)
        for line in lines:  # wrapped lines keep the indent
            for part in line.wrap(console, width, overflow="fold"):
                part.rstrip()
                console.print(Text("    ") + part)


def _table_width(table: Table) -> int:
    """The narrowest the table renders without cutting a name or a number: no-wrap columns at their widest
    cell, the wrapping ones (verdicts) at their min_width, plus a border and a space either side per column."""
    from rich.text import Text

    def width(cell: Any) -> int:
        return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len

    total = 1
    for column in table.columns:
        if column.no_wrap:
            total += max([width(column.header), *(width(c) for c in column.cells)])
        else:
            total += column.min_width or 1
        total += 3
    return total


def producer_text(producer: Any, version: Any) -> str:
    """'pytorch 2.1', 'pytorch' or '–': the producer and its version, without a dangling space."""
    return " ".join(str(part).strip() for part in (producer, version) if part and str(part).strip()) or "–"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers rounded, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    if isinstance(value, (tuple, list)):
        return "×".join(str(v) for v in value)
    return str(value)


def json_safe(value: Any) -> Any:
    """Convert numpy scalars/arrays and NaN to plain JSON values (NaN → None)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

