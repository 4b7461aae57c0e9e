"""Errors of the store layer."""

from __future__ import annotations

from pathlib import Path

from ..errors import FilterDBError, UsageError

__all__ = [
    "ManifestError",
    "ShardCorruptError",
    "StoreBusyError",
    "StoreError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreQueryError",
    "StoreResourceError",
    "StoreWriteError",
    "write_error",
]


class StoreError(FilterDBError, RuntimeError):
    """Something is wrong with a filter store: busy, corrupt, or asked for something it does not hold."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path is not a filter store (or does not exist)."""


class StoreFormatError(StoreError):
    """The store was written in a format version this filterdb cannot read."""


class StoreBusyError(StoreError):
    """Another process holds the store's writer lock or its catalog for longer than the timeout."""


class StoreWriteError(StoreError, OSError):
    """The store could not be written: the disk is full, the store is read-only, or a write failed.

    Nothing of the model being written is visible (shards are referenced only after the commit).
    """


class StoreResourceError(StoreError):
    """A query ran out of memory or spill space, or was interrupted: the store is fine, the query too big."""


class ShardCorruptError(StoreError):
    """A shard file does not match what the catalog recorded (size, rows, structure or checksum)."""


class StoreQueryError(UsageError, StoreError):
    """An SQL query or ``where`` predicate given by the user is wrong (syntax, unknown view or column,
    missing parameter values); the CLI exits with code 2."""


class ManifestError(FilterDBError, ValueError):
    """A manifest cannot be read, or does not match the sources it describes."""


def write_error(root: Path, doing: str, error: BaseException) -> StoreWriteError:
    """The one message for a failed write: the real cause (disk full, read-only, ...) and what to do."""
    cause = getattr(error, "strerror", None) or str(error).splitlines()[0]
    errno_ = getattr(error, "errno", None)
    text = str(error)
    if errno_ == 28 or "No space left" in text:
        fix = "free some space and run the command again"
    elif errno_ in (1, 13, 30) or "Read-only file system" in text or "Permission denied" in text:
        fix = "the store is read-only here: make it writable, or write to a copy"
    elif errno_ == 27 or "File too large" in text:
        fix = "a file size limit (ulimit -f) stopped the write; raise it and run the command again"
    else:
        fix = "check the disk and run the command again"
    return StoreWriteError(f"{root}: cannot write to the store ({doing}: {cause}); the store is unchanged ({fix})")
