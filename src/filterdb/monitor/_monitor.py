"""``filterdb.Monitor``: the health of every conv layer while a model trains.

Every ``every`` steps the monitor reads the conv weights in place, computes the metrics and verdicts of
``filterdb check`` (:func:`filterdb.check.check_model`, so the two always agree), writes them to a
JSON-lines log, hands a few scalars per layer to the user's loggers, and applies the alert rules.
"""

from __future__ import annotations

import numbers
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping

from ..check import ModelReport, Thresholds, check_model
from ..errors import FilterDBError, UsageError
from ._alerts import Alert, AlertRules, LayerHistory, evaluate_rules
from ._live import LiveModel, live_model
from ._log import LogWriter

if TYPE_CHECKING:
    from ._snapshot import SnapshotStore

__all__ = ["DEFAULT_EVERY", "Monitor", "MonitorAlert", "MonitorSkipped", "SCALARS"]

# The per-layer scalars given to loggers: few, so dashboards stay fast (never histograms).
SCALARS = ("sparsity", "variance_entropy_norm", "orthogonality")
ScalarSink = Callable[[Mapping[str, float], int], None]


class MonitorAlert(UserWarning):
    """The warning category of the monitor's alerts (``on_alert="warn"``)."""


class MonitorSkipped(UserWarning):
    """Warned once per monitor when the time budget (``max_overhead``) skips an evaluation that an explicit
    ``every`` asked for."""


class _DefaultEvery(int):
    """The default of ``Monitor(every=...)``: an int that remembers it was not chosen by the caller, so that the
    budget may skip its evaluations without a warning (an explicit ``every`` is warned about)."""


DEFAULT_EVERY = _DefaultEvery(100)

# Frames of these packages are skipped when a warning names the line that caused it: the monitor's own, and
# the frameworks that call it from a hook (optimizer step hooks, Lightning and Keras callbacks).
_NOT_THE_USER = frozenset({"filterdb", "torch", "lightning", "pytorch_lightning", "keras", "tensorflow"})


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that points at the
    first frame outside filterdb and the training frameworks: the user's own line."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] in _NOT_THE_USER:
        level, frame = level + 1, frame.f_back
    return level


class Monitor:
    """Watch the conv layers of a training model; alert when one degenerates.

    Parameters
    ----------
    model : torch.nn.Module or keras.Model
        The model being trained; its weights are read in place (CUDA tensors too), never modified.
    every : int or None, default 100
        Evaluate every this many steps (plus once at the start and once at :meth:`close`); None: only when
        :meth:`evaluate` is called (the integrations' "once per epoch").
    max_overhead : float or None, default 0.01
        Skip a due evaluation while evaluating would take more than this share of the wall time since the
        monitor started (measured, so the default costs about 1 % of training on any machine; a cheap
        non-finite check still runs at every due step and forces an evaluation). None: evaluate exactly
        every ``every`` steps. When it skips an evaluation that an explicit ``every`` asked for, a
        :class:`MonitorSkipped` warning says so once, with the counts; :attr:`skipped` and :attr:`due` count
        them, the log records them and ``filterdb monitor`` shows them.
    log_dir : path, optional
        Write ``log_dir/filterdb-monitor.jsonl`` (read it with ``filterdb monitor``).
    rules : AlertRules, optional
        When to alert (:class:`filterdb.monitor.AlertRules`).
    on_alert : {"warn", "stop"}, default "warn"
        "warn" issues a :class:`MonitorAlert` warning; "stop" also sets :attr:`should_stop`, which
        :meth:`step` returns and the integrations turn into the framework's own stop.
    total_steps : int, optional
        Length of training, for the "still random after a share of training" rule (else it applies at close).
    thresholds : Thresholds, optional
        The verdict cut-offs of ``filterdb check``.
    optimizer : torch.optim.Optimizer, optional
        Count steps by the optimizer's own step hook: no :meth:`step` call needed in the loop.
    scalar_sinks : iterable of callables, optional
        Each is called as ``sink({"filterdb/LAYER/METRIC": value, ...}, step)`` after every evaluation.
    tensorboard : str, path or SummaryWriter, optional
        Also write the scalars to TensorBoard (``torch.utils.tensorboard``).
    snapshot_store : str, path or Store, optional
        Every ``snapshot_every`` evaluations, ingest the filters into this filter store as one model with
        ``step`` and ``epoch`` columns (``filterdb analyze STORE drift --by step``).
    snapshot_every : int, default 10
    name : str, optional
        The run's name in snapshots (default: the model's class name).

    Examples
    --------
    >>> monitor = filterdb.Monitor(model, every=100, log_dir="runs/a")  # doctest: +SKIP
    >>> for batch in loader:  # doctest: +SKIP
    ...     train_step(batch)
    ...     if monitor.step():  # True once an alert asked to stop (on_alert="stop")
    ...         break
    >>> monitor.close()  # doctest: +SKIP
    """

    def __init__(self, model: Any, every: int | None = DEFAULT_EVERY, *, log_dir: str | os.PathLike[str] | None = None,
                 max_overhead: float | None = 0.01,
                 rules: AlertRules = AlertRules(), on_alert: Literal["warn", "stop"] = "warn",
                 total_steps: int | None = None, thresholds: Thresholds = Thresholds(), optimizer: Any = None,
                 scalar_sinks: Iterable[ScalarSink] = (), tensorboard: Any = None,
                 snapshot_store: SnapshotStore | None = None, snapshot_every: int = 10,
                 name: str | None = None) -> None:
        if every is not None:
            _positive_int("every", every)
        _positive_int("snapshot_every", snapshot_every)
        if total_steps is not None:
            _positive_int("total_steps", total_steps)
        if max_overhead is not None and (isinstance(max_overhead, bool) or not isinstance(max_overhead, numbers.Real)
                                         or not 0.0 < max_overhead <= 1.0):
            raise UsageError(f"Monitor max_overhead must be in (0, 1] or None, got {max_overhead!r}")
        if on_alert not in ("warn", "stop"):
            raise UsageError(f"Monitor on_alert must be 'warn' or 'stop', got {on_alert!r}")
        if not isinstance(rules, AlertRules):
            raise TypeError(f"Monitor rules must be a filterdb.monitor.AlertRules, got {type(rules).__name__}")
        if not isinstance(thresholds, Thresholds):
            raise TypeError(f"Monitor thresholds must be a filterdb.Thresholds, got {type(thresholds).__name__}")
        self.model: LiveModel = live_model(model)
        self.every = None if every is None else int(every)
        self._warn_skips = every is not None and not isinstance(every, _DefaultEvery)  # the caller chose every
        self.max_overhead = max_overhead
        self.seconds = 0.0  # wall time spent in evaluations
        self.due = 0  # steps at which `every` asked for an evaluation
        self.skipped = 0  # due evaluations skipped to stay within max_overhead
        self._started = time.perf_counter()
        self._last_seconds = 0.0
        self.rules = rules
        self.on_alert = on_alert
        self.total_steps = total_steps
        self.thresholds = thresholds
        self.name = name or type(model).__name__
        self.alerts: list[Alert] = []
        self.should_stop = False
        self.current_step = 0
        self.last_report: ModelReport | None = None
        self.last_step: int | None = None  # the step of the last evaluation
        self.closed = False
        self._history: dict[str, LayerHistory] = {}
        self._sinks: list[ScalarSink] = list(scalar_sinks)
        self._owned_closers: list[Callable[[], None]] = []
        self._log = LogWriter(log_dir) if log_dir is not None else None
        self._evaluations = 0
        if tensorboard is not None:
            self._sinks.append(self._tensorboard_sink(tensorboard))
        self._snapshots = None
        if snapshot_store is not None:
            from ._snapshot import Snapshots

            self._snapshots = Snapshots(snapshot_store, self.name, every=snapshot_every)
            self._owned_closers.append(self._snapshots.close)
        self._hook = optimizer.register_step_post_hook(lambda *_: self.step()) if optimizer is not None else None
        self.evaluate(step=0)

    # ------------------------------------------------------------------------------------------- public
    @property
    def log_path(self) -> Path | None:
        """The JSON-lines log, None without ``log_dir``."""
        return self._log.path if self._log is not None else None

    def step(self, step: int | None = None, *, epoch: int | None = None) -> bool:
        """Count one training step (or set the step count) and evaluate when one is due.

        Returns :attr:`should_stop`: True once an alert fired with ``on_alert="stop"``.
        """
        self._check_open()
        self.current_step = self.current_step + 1 if step is None else _non_negative_int("step", step)
        due = self.every is not None and self.current_step % self.every == 0
        if due and self.current_step != self.last_step:
            self.due += 1
            if self._within_budget() or self.model.has_nonfinite():
                self.evaluate(epoch=epoch)
            else:
                self.skipped += 1
                if self._warn_skips:
                    self._warn_skips = False  # once per monitor
                    warnings.warn(self._skip_message(), MonitorSkipped, stacklevel=user_stacklevel())
        return self.should_stop

    def evaluate(self, *, step: int | None = None, epoch: int | None = None, final: bool = False) -> ModelReport:
        """Evaluate now (at ``step``, default the current one), log, alert, and return check's report."""
        self._check_open()
        step = self.current_step if step is None else _non_negative_int("step", step)
        started = time.perf_counter()
        record = self.model.record()
        report = check_model(record, self.thresholds)
        entries = report.to_dict()["layers"]
        if self._log is not None:
            self._log.write([{**entry, "step": step, "epoch": epoch, "due_evaluations": self.due,
                              "skipped_evaluations": self.skipped} for entry in entries])
        self._send_scalars(entries, step)
        if self._snapshots is not None:
            self._snapshots.maybe_add(record, step=step, epoch=epoch, evaluation=self._evaluations, final=final)
        self._evaluations += 1
        self.last_report, self.last_step = report, step
        self._judge(report, step=step, epoch=epoch, final=final)
        self._last_seconds = time.perf_counter() - started
        self.seconds += self._last_seconds
        return report

    def close(self, *, step: int | None = None, epoch: int | None = None) -> None:
        """Make a last evaluation (at ``step``, default the current one), apply the end-of-training rules,
        and close the log and the loggers the monitor opened. Closing twice is a no-op."""
        if self.closed:
            return
        if step is not None:
            self.current_step = _non_negative_int("step", step)
        try:
            if self.last_report is not None and self.last_step == self.current_step:
                self._judge(self.last_report, step=self.current_step, epoch=epoch, final=True)  # no re-measuring
                if self._snapshots is not None:  # the last evaluation is always snapshotted (a no-op if it was)
                    self._snapshots.maybe_add(self.model.record(), step=self.current_step, epoch=epoch,
                                              evaluation=self._evaluations - 1, final=True)
            else:
                self.evaluate(epoch=epoch, final=True)
        finally:
            self.closed = True
            if self._hook is not None:
                self._hook.remove()
            if self._log is not None:
                self._log.close()
            for close in self._owned_closers:
                close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- helpers
    def _check_open(self) -> None:
        if self.closed:
            raise FilterDBError("this Monitor is closed; make a new one for another run")

    def _judge(self, report: ModelReport, *, step: int, epoch: int | None, final: bool) -> None:
        """Apply the alert rules to every layer of a report; log and raise the alerts."""
        progress = min(step / self.total_steps, 1.0) if self.total_steps else None
        alerts: list[Alert] = []
        for row in report.layers.to_dict("records"):
            history = self._history.setdefault(row["name"], LayerHistory())
            alerts += evaluate_rules(row["name"], row, history, self.rules, step=step, epoch=epoch,
                                     progress=progress, final=final)
        if self._log is not None:
            self._log.write([alert.to_dict() for alert in alerts])
        for alert in alerts:
            self._raise(alert)

    def _within_budget(self) -> bool:
        """Would one more evaluation (as long as the last) keep the monitor within max_overhead of wall time?"""
        if self.max_overhead is None:
            return True
        elapsed = time.perf_counter() - self._started
        return self.seconds + self._last_seconds <= self.max_overhead * elapsed

    def _raise(self, alert: Alert) -> None:
        self.alerts.append(alert)
        if self.on_alert == "stop":
            self.should_stop = True
        warnings.warn(alert.message, MonitorAlert, stacklevel=user_stacklevel())

    def _skip_message(self) -> str:
        elapsed = time.perf_counter() - self._started
        return (f"filterdb Monitor: skipped the evaluation at step {self.current_step} that every={self.every} asked "
                f"for ({self.skipped} of {self.due} due evaluations skipped so far): one evaluation takes "
                f"{self._last_seconds:.2f} s, more than max_overhead={self.max_overhead:g} of the {elapsed:.1f} s "
                f"since the monitor started allows. Pass max_overhead=None to evaluate exactly every "
                f"{self.every} steps (or a larger share, e.g. 0.1); monitor.skipped counts the skips, and "
                "`filterdb monitor LOG` shows them. This warning is not repeated.")

    def _send_scalars(self, entries: list[dict[str, Any]], step: int) -> None:
        if not self._sinks:
            return
        scalars = {f"filterdb/{entry['name']}/{key}": float(entry[key])
                   for entry in entries for key in SCALARS if entry.get(key) is not None}
        for sink in self._sinks:
            sink(scalars, step)

    def _tensorboard_sink(self, target: Any) -> ScalarSink:
        if isinstance(target, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                from ..errors import missing_dependency

                raise missing_dependency("tensorboard", "Monitor(tensorboard=...)", "monitor") from e
            writer = SummaryWriter(os.fspath(target))
            self._owned_closers.append(writer.close)
        else:
            writer = target

        def sink(scalars: Mapping[str, float], step: int) -> None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            writer.flush()

        return sink


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"Monitor {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UsageError(f"Monitor {name} must be an integer >= 0, got {value!r}")
    return int(value)
