"""The memory budget of one read: how much a model file may make filterdb allocate.

A model file is untrusted input: a 4 KB file can declare a tensor of gigabytes (a huge shape, a sparse
tensor densified, a zip member that inflates a thousandfold). Readers ask the budget *before* they allocate,
and the budget refuses with a :class:`~filterdb.errors.MemoryBudgetError` naming the tensor and the sizes.

The limit is ``max_memory`` when given, else the ``FILTERDB_MAX_MEMORY`` environment variable (the CLI's
``--max-memory`` sets it, so worker processes inherit it), else 4 × the file's size plus 512 MiB: a real
model decodes to at most 4 × its stored size (int8 → float32) and the floor covers small models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._format import parse_size, size
from .errors import MemoryBudgetError

__all__ = ["MemoryBudget", "parse_size", "ENV_VAR", "DEFAULT_FACTOR", "DEFAULT_FLOOR"]

ENV_VAR = "FILTERDB_MAX_MEMORY"
DEFAULT_FACTOR = 4  # decoded bytes per stored byte of a real model, at most (int8 -> float32)
DEFAULT_FLOOR = 512 * 2**20  # every file may use this much, whatever its size


@dataclass
class MemoryBudget:
    """The bytes one read of ``path`` may allocate; readers call :meth:`claim` before each big allocation."""

    path: Path
    limit: int  # bytes
    explicit: bool  # the user set the limit (else it is the default for this file's size)
    used: int = 0  # bytes claimed so far by arrays the record keeps

    @classmethod
    def for_file(cls, path: Path, max_memory: int | str | None = None) -> MemoryBudget:
        """The budget for reading ``path``: ``max_memory``, else $FILTERDB_MAX_MEMORY, else the default."""
        if max_memory is None:
            max_memory = os.environ.get(ENV_VAR) or None
        if max_memory is not None:
            return cls(path, parse_size(max_memory, ENV_VAR if isinstance(max_memory, str) else "max_memory"), True)
        file_size = path.stat().st_size if path.exists() else 0
        return cls(path, DEFAULT_FACTOR * file_size + DEFAULT_FLOOR, False)

    def add_file(self, nbytes_on_disk: int) -> None:
        """Data of the model stored in another file (ONNX external data) raises a default limit accordingly."""
        if not self.explicit:
            self.limit += DEFAULT_FACTOR * nbytes_on_disk

    def check(self, nbytes: int, what: str) -> None:
        """Refuse a transient allocation of ``nbytes`` (for ``what``: "tensor 'conv1.weight' (64, 3, 7, 7)")."""
        if nbytes < 0:
            raise MemoryBudgetError(f"{self.path}: {what} declares a negative size; the file is corrupt")
        if nbytes > self.limit - self.used:
            raise MemoryBudgetError(self._message(nbytes, what))

    def claim(self, nbytes: int, what: str) -> None:
        """Like :meth:`check`, and count the bytes as kept until the read ends."""
        self.check(nbytes, what)
        self.used += nbytes

    def _message(self, nbytes: int, what: str) -> str:
        need, limit, floor = (size(n, exact=True) for n in (nbytes, self.limit, DEFAULT_FLOOR))
        origin = ("the limit set by --max-memory / max_memory / $" + ENV_VAR) if self.explicit else (
            f"the default limit for a file of this size ({DEFAULT_FACTOR} x the file size + {floor})")
        used = f", {size(self.used, exact=True)} already in use" if self.used else ""
        return (f"{self.path}: {what} would need {need}, over {origin} of {limit}{used}; "
                "the file declares more data than it holds or is hostile - if you trust it, raise --max-memory")
