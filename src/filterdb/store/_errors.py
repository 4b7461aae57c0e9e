"""Errors of the store layer."""

from __future__ import annotations

from ..errors import FilterDBError, UsageError

__all__ = [
    "ManifestError",
    "ShardCorruptError",
    "StoreBusyError",
    "StoreError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreQueryError",
    "StoreWriteError",
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


class ShardCorruptError(StoreError):
    """A shard file does not match what the catalog recorded (size, rows, structure or checksum)."""


class StoreQueryError(UsageError, StoreError):
    """An SQL query or ``where`` predicate given by the user is wrong (syntax, unknown view or column,
    missing parameter values); the CLI exits with code 2."""


class ManifestError(FilterDBError, ValueError):
    """A manifest cannot be read, or does not match the sources it describes."""
