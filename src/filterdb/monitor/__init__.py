"""Watch the conv filters of a model while it trains: metrics, verdicts and alerts of ``filterdb check``.

>>> import filterdb  # doctest: +SKIP
>>> with filterdb.Monitor(model, every=100, log_dir="runs/a") as monitor:  # doctest: +SKIP
...     for batch in loader:
...         train_step(batch)
...         monitor.step()

The integrations for PyTorch Lightning and Keras live in :mod:`filterdb.integrations`; the log is read
with :func:`read_log` and shown by ``filterdb monitor LOG``. See docs/monitor.md.
"""

from __future__ import annotations

from ._alerts import Alert, AlertRules
from ._log import LOG_NAME, MonitorLog, MonitorLogError, read_log
from ._monitor import SCALARS, Monitor, MonitorAlert, MonitorSkipped, ScalarSink
from ._snapshot import SnapshotStore
from ._summary import summarize

__all__ = ["Alert", "AlertRules", "LOG_NAME", "Monitor", "MonitorAlert", "MonitorLog", "MonitorLogError",
           "MonitorSkipped", "SCALARS", "ScalarSink", "SnapshotStore", "read_log", "summarize"]
