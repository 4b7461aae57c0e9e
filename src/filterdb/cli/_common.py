"""Helpers shared by the model commands (check, inspect): reading with a progress display, formatting."""

from __future__ import annotations

import math
import os
from typing import Any

import click
from rich.markup import escape

from .._budget import ENV_VAR, parse_size

from .._read import read_model
from ..types import ModelRecord
from ._app import err_console

__all__ = ["read_with_progress", "fmt", "json_safe", "shape_key", "max_memory_option"]


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
    with err_console.status(f"reading {escape(model)} ...", spinner="dots"):
        return read_model(model, trust_pickle=trust_pickle, format=format)


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


def shape_key(kernel: tuple[int, ...]) -> str:
    """'3x3' for (3, 3)."""
    return "x".join(str(k) for k in kernel)
