"""``FilterMonitor``: a PyTorch Lightning callback that watches the conv filters while a model trains.

>>> trainer = Trainer(callbacks=[filterdb.integrations.lightning.FilterMonitor()])  # doctest: +SKIP

Works with the ``lightning`` package and, when only that is installed, with ``pytorch_lightning``.
Per-layer scalars go to every logger of the trainer (``log_metrics``); the JSON-lines log goes to the
trainer's ``log_dir``; ``on_alert="stop"`` sets ``trainer.should_stop``. With several processes
(DDP), only global rank 0 monitors and decides to stop.
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
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError as e:
        raise missing_dependency("lightning", "filterdb.integrations.lightning", "monitor") from e

__all__ = ["FilterMonitor"]


class FilterMonitor(Callback):
    """Evaluate every conv layer's metrics and verdicts (those of ``filterdb check``) during ``fit``.

    Parameters
    ----------
    every : int or "epoch", default "epoch"
        Evaluate every N optimizer steps (``trainer.global_step``), or at the end of each training epoch.
    log_dir : path, optional
        Where ``filterdb-monitor.jsonl`` goes (default: ``trainer.log_dir``, else ``default_root_dir``).
    rules, on_alert, thresholds, max_overhead, snapshot_store, snapshot_every
        As for :class:`filterdb.Monitor`; ``on_alert="stop"`` stops through ``trainer.should_stop``.

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

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_rank != 0:  # every process holds the same weights: one monitor, one log
            return
        log_dir = self.options.log_dir or trainer.log_dir or trainer.default_root_dir

        def to_loggers(scalars: Mapping[str, float], step: int) -> None:
            for logger in trainer.loggers:
                logger.log_metrics(dict(scalars), step=step)

        self.monitor = self.options.monitor(pl_module, log_dir=log_dir, total_steps=trainer.estimated_stepping_batches,
                                            sinks=[to_loggers])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.options.by_epoch:
            return
        if self.monitor is not None:
            self.monitor.step(trainer.global_step, epoch=trainer.current_epoch)
        self._stop_if_asked(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.options.by_epoch:
            return
        if self.monitor is not None:
            self.monitor.evaluate(step=trainer.global_step, epoch=trainer.current_epoch)
        self._stop_if_asked(trainer)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close(trainer)

    def _close(self, trainer: Any) -> None:
        if self.monitor is not None and not self.monitor.closed:
            self.monitor.close(step=trainer.global_step, epoch=trainer.current_epoch)

    def _stop_if_asked(self, trainer: Any) -> None:
        asked = self.monitor is not None and self.monitor.should_stop
        if trainer.world_size > 1:  # rank 0 decides; every rank must take part in the reduction
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            trainer.should_stop = True
