"""``FilterMonitor``: a Keras 3 callback that watches the conv filters while a model trains.

>>> model.fit(x, y, callbacks=[filterdb.integrations.keras.FilterMonitor()])  # doctest: +SKIP

Per-layer scalars are added to the epoch's ``logs`` (so History, CSVLogger and the TensorBoard callback
listed after this one record them); the JSON-lines log goes to ``log_dir`` (default ``logs``, the
TensorBoard callback's default); ``on_alert="stop"`` sets ``model.stop_training``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, Mapping

from ..check import Thresholds
from ..errors import missing_dependency
from ..monitor import AlertRules, Monitor
from ._common import MonitorOptions

if TYPE_CHECKING:
    from ..monitor import SnapshotStore

try:
    import keras
except ImportError as e:
    raise missing_dependency("keras", "filterdb.integrations.keras", "keras") from e

__all__ = ["FilterMonitor"]

DEFAULT_LOG_DIR = "logs"  # keras.callbacks.TensorBoard's default


class FilterMonitor(keras.callbacks.Callback):
    """Evaluate every conv layer's metrics and verdicts (those of ``filterdb check``) during ``fit``.

    Parameters
    ----------
    every : int or "epoch", default "epoch"
        Evaluate every N batches, or at the end of each epoch.
    log_dir : path, default "logs"
        Where ``filterdb-monitor.jsonl`` goes.
    rules, on_alert, thresholds, max_overhead, snapshot_store, snapshot_every
        As for :class:`filterdb.Monitor`; ``on_alert="stop"`` stops through ``model.stop_training``.

    Attributes
    ----------
    monitor : filterdb.Monitor or None
        The monitor of the current (or last) fit; ``monitor.alerts`` lists the alerts.
    """

    def __init__(self, every: int | Literal["epoch"] = "epoch", *, log_dir: str | os.PathLike[str] | None = None,
                 rules: AlertRules = AlertRules(), on_alert: Literal["warn", "stop"] = "warn",
                 thresholds: Thresholds = Thresholds(), max_overhead: float | None = 0.01,
                 snapshot_store: SnapshotStore | None = None, snapshot_every: int = 10) -> None:
        super().__init__()
        self.options = MonitorOptions(every, log_dir, rules, on_alert, thresholds, max_overhead, snapshot_store,
                                      snapshot_every)
        self.monitor: Monitor | None = None
        self._step = 0
        self._epoch = 0
        self._scalars: dict[str, float] = {}

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        total = epochs * steps if isinstance(epochs, int) and isinstance(steps, int) else None
        self._step, self._epoch = 0, 0
        self.monitor = self.options.monitor(self.model, log_dir=self.options.log_dir or DEFAULT_LOG_DIR,
                                            total_steps=total, sinks=[self._keep])

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._step += 1
        if self.monitor is not None and not self.options.by_epoch:
            self.monitor.step(self._step, epoch=self._epoch)
            self._stop_if_asked()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor is None:
            return
        if self.options.by_epoch:
            self.monitor.evaluate(step=self._step, epoch=epoch)
            self._stop_if_asked()
        if logs is not None:
            logs.update(self._scalars)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.monitor is not None and not self.monitor.closed:
            self.monitor.close(step=self._step, epoch=self._epoch)

    def _keep(self, scalars: Mapping[str, float], step: int) -> None:
        self._scalars = dict(scalars)

    def _stop_if_asked(self) -> None:
        if self.monitor is not None and self.monitor.should_stop:
            self.model.stop_training = True
