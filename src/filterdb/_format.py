"""One number formatter for every human-readable output (tables, notes, reports)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["count", "number"]


def count(value: int | float) -> str:
    """An integer count with thousands separators: ``4318408`` → ``'4,318,408'``."""
    return f"{int(value):,}"


def number(value: Any, digits: int = 4, *, decimals: int | None = None, missing: str = "") -> str:
    """A measured value for people: integers with separators, floats with ``digits`` significant digits and
    no scientific notation between 1e-4 and 1e15; missing values (None, NaN) as ``missing``.

    ``decimals``: floats with this many decimals instead, so that a table column lines up
    (``number(0.5, decimals=3)`` → ``'0.500'``)."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):  # also numpy integers
        return count(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f):
        return missing
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if decimals is not None:
        return f"{f:,.{decimals}f}"
    if f == 0:
        return "0"
    magnitude = abs(f)
    if 1e-4 <= magnitude < 1e15:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(magnitude))))
        text = f"{f:,.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    return f"{f:.{digits - 1}e}"
