"""Kernel-shape keys: ``(3, 3)`` <-> ``"3x3"``, the one place that builds and parses them.

The key names a kernel shape everywhere a user or a table sees one: store shards and the ``kernel``
column, ``--shape``, analysis selections, the HDF5 export. It is the kernel sizes as decimal integers
joined by ``x``: ``"3x3"``, ``"1x7"``, ``"5"`` (1-D), ``"3x3x3"`` (3-D).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

__all__ = ["KEY_PATTERN", "KernelKey", "kernel_key", "parse_kernel_key"]

_MAX_SIZE = 10**18  # sizes stay below this in both directions, so that every key built parses back
KEY_PATTERN = r"[1-9][0-9]{0,17}(?:x[1-9][0-9]{0,17})*"  # the text of a key, for patterns that embed one
_KEY = re.compile(KEY_PATTERN)
_SHOWN = 40  # characters of a malformed key quoted in the error


@dataclass(frozen=True, order=True)
class KernelKey:
    """A kernel shape: its sizes, and ``str(key)`` the text form (``KernelKey((3, 3))`` -> ``"3x3"``).

    Raises
    ------
    filterdb.errors.UsageError
        No sizes, or a size that is not a positive integer.

    Examples
    --------
    >>> KernelKey.parse("3x3").sizes, KernelKey.parse("1x7").width
    ((3, 3), 7)
    >>> str(KernelKey.of((5, 5)))
    '5x5'
    """

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes)
        if not sizes or not all(_is_size(s) for s in sizes):
            raise UsageError(f"a kernel shape needs one or more positive integer sizes (below 10**18), "
                             f"got {self.sizes!r}")
        object.__setattr__(self, "sizes", tuple(int(s) for s in sizes))

    @classmethod
    def of(cls, kernel: Sequence[Any]) -> KernelKey:
        """The key of a kernel shape given as sizes, e.g. a layer's ``kernel`` or ``weight.shape[2:]``."""
        return cls(tuple(kernel))

    @classmethod
    def parse(cls, text: Any, *, what: str = "shape") -> KernelKey:
        """Read ``"3x3"`` back; ``what`` names the value in the error (an option, a column)."""
        if not isinstance(text, str) or not _KEY.fullmatch(text):
            shown = repr(text if not isinstance(text, str) or len(text) <= _SHOWN else text[:_SHOWN] + "...")
            lower = text.lower().replace(" ", "") if isinstance(text, str) else ""
            hint = f" (did you mean {lower!r}?)" if _KEY.fullmatch(lower) else ""
            raise UsageError(f"{what} must look like '3x3' (kernel sizes joined by 'x'), got {shown}{hint}")
        return cls(tuple(int(part) for part in text.split("x")))

    @property
    def width(self) -> int:
        """Values per filter: the product of the sizes (``"3x3"`` -> 9)."""
        return math.prod(self.sizes)

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the kernel (``"3x3"`` -> 2)."""
        return len(self.sizes)

    def __str__(self) -> str:
        return "x".join(str(s) for s in self.sizes)


def _is_size(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and int(value) == value and 1 <= int(value) < _MAX_SIZE
    except (TypeError, ValueError, OverflowError):
        return False


def kernel_key(kernel: Sequence[Any]) -> str:
    """``(3, 3)`` -> ``"3x3"``; ``(5,)`` -> ``"5"``; ``(3, 3, 3)`` -> ``"3x3x3"``."""
    return str(KernelKey.of(kernel))


def parse_kernel_key(text: Any, *, what: str = "shape") -> KernelKey:
    """``"3x3"`` -> ``KernelKey((3, 3))``; a :class:`~filterdb.errors.UsageError` naming ``what`` otherwise."""
    return KernelKey.parse(text, what=what)
