"""Errors of the store layer."""

from __future__ import annotations

from ..errors import FilterDBError

__all__ = ["ManifestError", "StoreBusyError", "StoreError", "StoreFormatError", "StoreNotFoundError"]


class StoreError(FilterDBError, RuntimeError):
    """Something is wrong with a filter store: busy, corrupt, or asked for something it does not hold."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path is not a filter store (or does not exist)."""


class StoreFormatError(StoreError):
    """The store was written in a format version this filterdb cannot read."""


class StoreBusyError(StoreError):
    """Another process holds the store's writer lock or its catalog for longer than the timeout."""


class ManifestError(FilterDBError, ValueError):
    """A manifest cannot be read, or does not match the sources it describes."""
