"""Snapshots of the filters during training, into a filter store (one model per snapshot).

Each snapshot is the model at one step, named ``NAME@step=N`` with ``step`` and ``epoch`` columns, so
``filterdb analyze STORE drift --by step`` shows how the filter distribution moved while training ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..types import ModelRecord

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Snapshots", "SnapshotStore"]

SnapshotStore: TypeAlias = "Store | str | os.PathLike[str]"  # a store, or a folder to open or create one in


class Snapshots:
    """Ingests every ``every``-th evaluation (and the last one) into a store."""

    def __init__(self, store: SnapshotStore, name: str, *, every: int) -> None:
        from ..store import Store, init_store

        self.store: Store
        if isinstance(store, Store):
            self.store, self._owned = store, False
        else:
            root = Path(os.fspath(store))
            # a new or empty folder becomes a new store; an existing store is opened for appending
            self.store = init_store(root, exist_ok=True)
            self._owned = True
        self.name = name
        self.every = every
        self.steps: list[int] = []  # steps snapshotted so far

    def maybe_add(self, record: ModelRecord, *, step: int, epoch: int | None, evaluation: int, final: bool) -> None:
        if (evaluation % self.every != 0 and not final) or step in self.steps:
            return
        metadata = {"name": f"{self.name}@step={step}", "step": step, "epoch": epoch, "run": self.name}
        from ..ingest import ingest_record

        ingest_record(self.store, record, metadata)
        self.steps.append(step)

    def close(self) -> None:
        if self._owned:
            self.store.close()
