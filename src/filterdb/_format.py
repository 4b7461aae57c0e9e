"""One number formatter for every human-readable output (tables, notes, reports), and the one byte-size
rule: :func:`size` prints what :func:`parse_size` reads (binary units, 1 KiB = 1024 bytes)."""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import UsageError

__all__ = ["count", "number", "size", "parse_size"]

_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1}
for _unit, _factor in _BINARY:  # 4G, 4GB and 4GiB all mean 4 * 2**30: the memory convention of --max-memory
    _UNITS.update({_unit[0].lower(): _factor, _unit[0].lower() + "b": _factor, _unit.lower(): _factor})


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


def size(nbytes: int | float, *, exact: bool = False) -> str:
    """Bytes for people in binary units: ``1536`` -> ``'1.5 KiB'``, ``512`` -> ``'512 B'``; with ``exact``
    the byte count follows (``'3.2 GiB (3,435,973,836 bytes)'``) for those who compare.
    :func:`parse_size` reads the short form back to within the rounding of its one decimal."""
    for unit, factor in _BINARY:
        if abs(nbytes) >= factor:
            short = f"{nbytes / factor:.1f} {unit}"
            return f"{short} ({count(nbytes)} bytes)" if exact else short
    return f"{int(nbytes)} B"  # below 1 KiB: no separator needed, and parse_size reads it


def parse_size(text: str | int, what: str = "--max-memory") -> int:
    """Bytes from ``"4G"``, ``"512MiB"``, ``"1.5gb"``, ``"1.5 GiB"`` or a plain integer (binary units:
    1K = 1024); a :class:`~filterdb.errors.UsageError` naming ``what`` for anything else or a size <= 0.

    >>> parse_size("1.5G")
    1610612736
    """
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise UsageError(f"{what}: cannot read {text!r} as a size; write it like 4G, 512M or 2000000 (bytes)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"{what}: the size must be positive, got {text!r}")
    return value
