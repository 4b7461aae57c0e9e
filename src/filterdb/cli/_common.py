"""Helpers shared by the model commands (check, inspect): reading with a progress display, formatting."""

from __future__ import annotations

import math
from typing import Any

from rich.markup import escape

from .._read import read_model
from ..types import ModelRecord
from ._app import err_console

__all__ = ["read_with_progress", "fmt", "json_safe", "shape_key"]


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
