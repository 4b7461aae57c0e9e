"""What the framework callbacks share: their options, turned into a :class:`filterdb.Monitor`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal

from ..check import Thresholds
from ..errors import UsageError
from ..monitor import AlertRules, Monitor
from ..monitor import ScalarSink

if TYPE_CHECKING:
    from ..monitor import SnapshotStore

__all__ = ["MonitorOptions"]


@dataclass(frozen=True)
class MonitorOptions:
    """The callback's options; see :class:`filterdb.Monitor` for each."""

    every: int | Literal["epoch"] = "epoch"  # evaluate every N optimizer steps, or at each epoch end
    log_dir: str | os.PathLike[str] | None = None  # None: the framework's log directory
    rules: AlertRules = AlertRules()
    on_alert: Literal["warn", "stop"] = "warn"  # "stop" ends training through the framework's own flag
    thresholds: Thresholds = Thresholds()
    max_overhead: float | None = 0.01
    snapshot_store: SnapshotStore | None = None
    snapshot_every: int = 10

    def __post_init__(self) -> None:
        every = self.every
        if every != "epoch" and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise UsageError(f"FilterMonitor every must be an integer >= 1 or 'epoch', got {self.every!r}")

    @property
    def by_epoch(self) -> bool:
        return self.every == "epoch"

    def monitor(self, model: Any, *, log_dir: str | os.PathLike[str] | None, total_steps: Any,
                sinks: Iterable[ScalarSink]) -> Monitor:
        total = int(total_steps) if isinstance(total_steps, (int, float)) and math.isfinite(total_steps) \
            and total_steps >= 1 else None
        return Monitor(model, every=None if self.by_epoch else int(self.every), log_dir=log_dir,
                       rules=self.rules, on_alert=self.on_alert, total_steps=total, thresholds=self.thresholds,
                       max_overhead=self.max_overhead, scalar_sinks=sinks, snapshot_store=self.snapshot_store,
                       snapshot_every=self.snapshot_every)
