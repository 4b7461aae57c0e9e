"""The monitor's JSON-lines log: one record per layer and evaluation, one per alert.

A layer record holds the keys of one ``layers`` entry of ``filterdb check --json`` plus ``step`` and
``epoch``; an alert record holds ``alert`` (kind, layer, rule, values, message), ``step`` and ``epoch``.
The log is written as training runs and flushed after every evaluation, so a killed run leaves a
readable log (a half-written last line is skipped).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import FilterDBError, ModelNotFoundError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LOG_NAME", "LogWriter", "MonitorLog", "MonitorLogError", "read_log", "resolve_log_path"]

LOG_NAME = "filterdb-monitor.jsonl"
MAX_LINE_BYTES = 1 << 20  # a layer record is ~1 KB; a longer line is not one the monitor wrote (never read whole)
MAX_NESTING = 32  # a record the monitor writes nests 3 levels deep (alert -> values -> value)
_MAX_INT = 2**63 - 1  # steps and epochs: what a table column (int64) holds


class MonitorLogError(FilterDBError, ValueError):
    """A monitor log that cannot be read (not JSON lines, or records without step/layer)."""


class LogWriter:
    """Appends records to ``DIR/filterdb-monitor.jsonl`` (a new run starts a new file)."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        folder = Path(log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOG_NAME
        self._fh: IO[str] | None = open(self.path, "w", encoding="utf-8")

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: the monitor log is closed")
        for record in records:
            self._fh.write(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass(frozen=True, eq=False)
class MonitorLog:
    """A monitor log as read back: the layer records as a table and the alerts."""

    path: Path
    layers: pd.DataFrame  # one row per layer and evaluation: check's columns, "verdicts" as kinds, step, epoch
    # one dict per alert: kind, layer, rule, values, message, step, epoch
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def layer_names(self) -> list[str]:
        """Layer names in the order of the first evaluation."""
        return list(dict.fromkeys(self.layers["name"]))

    @property
    def steps(self) -> list[int]:
        return sorted(set(int(s) for s in self.layers["step"]))


def resolve_log_path(path: str | os.PathLike[str]) -> Path:
    """A log file, or the log inside a monitor's log directory."""
    target = Path(path)
    if target.is_dir():
        inside = target / LOG_NAME
        if not inside.is_file():
            raise ModelNotFoundError(f"{target}: no {LOG_NAME} in this directory; pass the log file or the "
                                     "log_dir the monitor wrote to")
        return inside
    if not target.exists():
        raise ModelNotFoundError(f"{target}: no such file")
    return target


def _step(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise MonitorLogError(f"{where}: 'step' must be an integer >= 0, got {_shown(value)} (at most 2**63 - 1)")
    return value


def _epoch(value: Any, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_INT):
        raise MonitorLogError(f"{where}: 'epoch' must be an integer (|epoch| < 2**63) or null, got {_shown(value)}")
    return value


def _number(value: Any) -> float:
    """A metric from the log: JSON null (NaN in check's JSON) back to NaN; strings, lists and numbers beyond
    float64 refused (non-finite ones never get here: the parser refuses them)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise TypeError from None
    if not math.isfinite(number):
        raise TypeError
    return number


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a line may hold a megabyte)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _NotFinite(Exception):
    """A JSON number that is not finite: the tokens NaN / Infinity / -Infinity, or 1e999."""


def _refuse_constant(token: str) -> float:
    raise _NotFinite(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text if len(text) <= 30 else text[:27] + "...")
    return value


def _check_nesting(value: Any, where: str) -> None:
    """Refuse containers nested deeper than MAX_NESTING (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_NESTING:
            raise MonitorLogError(f"{where}: values nested more than {MAX_NESTING} levels deep; a monitor record "
                                  "nests 3 - is this a filterdb monitor log?")
        stack.extend((child, depth + 1) for child in children)


def _parse(raw: bytes, where: str) -> Any:
    """One line as JSON, refusing non-finite numbers and deep nesting (ValueError: not JSON at all)."""
    try:
        record = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as e:
        raise MonitorLogError(f"{where}: the number {e} is not finite; the monitor writes null for an undefined "
                              "metric and never NaN or Infinity - is this a filterdb monitor log?") from None
    except RecursionError:
        raise MonitorLogError(f"{where}: values nested more than {MAX_NESTING} levels deep; a monitor record "
                              "nests 3 - is this a filterdb monitor log?") from None
    _check_nesting(record, where)
    return record


_METRICS = ("sparsity", "variance_entropy_norm", "variance_entropy_clean_norm", "orthogonality", "norm_l2_std",
            "neighbour_corr", "variance_entropy", "n_nonfinite", "conv_depth_norm")


def _layer_row(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise MonitorLogError(f"{where}: a layer record needs a 'name' string")
    row = dict(record)
    row["step"] = _step(record.get("step"), where)
    row["epoch"] = _epoch(record.get("epoch"), where)
    for key in _METRICS:
        try:
            row[key] = _number(record.get(key))
        except TypeError:
            raise MonitorLogError(f"{where}: {key!r} must be a number or null (finite, within float64), got "
                                  f"{_shown(record.get(key))}") from None
    verdicts = record.get("verdicts") or []
    if not isinstance(verdicts, list):
        raise MonitorLogError(f"{where}: 'verdicts' must be a list")
    row["verdicts"] = [v.get("kind") if isinstance(v, Mapping) else v for v in verdicts]
    if not all(isinstance(v, str) for v in row["verdicts"]):
        raise MonitorLogError(f"{where}: 'verdicts' must hold verdict kinds")
    return row


def _alert_row(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    body = record["alert"]
    if not isinstance(body, Mapping) or not all(isinstance(body.get(k), str) for k in ("kind", "layer", "rule")):
        raise MonitorLogError(f"{where}: an alert record needs 'alert': {{'kind', 'layer', 'rule', ...}}")
    values = body.get("values")
    return {"kind": body["kind"], "layer": body["layer"], "rule": body["rule"],
            "values": dict(values) if isinstance(values, Mapping) else {},
            "message": str(body.get("message", "")), "step": _step(record.get("step"), where),
            "epoch": _epoch(record.get("epoch"), where)}


def read_log(path: str | os.PathLike[str]) -> MonitorLog:
    """Read a monitor log (the file, or the ``log_dir`` that holds it).

    Raises
    ------
    ModelNotFoundError
        No such file, or no log in the directory.
    MonitorLogError
        A line that is not a record the monitor writes (names the line), or a log without layer records.

    Examples
    --------
    >>> log = read_log("runs/digits")  # doctest: +SKIP
    >>> log.layers.groupby("name")["sparsity"].last()  # doctest: +SKIP
    """
    import pandas as pd

    target = resolve_log_path(path)
    rows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    with open(target, "rb") as fh:
        number = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):  # bounded: a longer line is never held whole
            number += 1
            where = f"{target}, line {number}"
            if len(raw) > MAX_LINE_BYTES:
                raise MonitorLogError(f"{where}: a line longer than {MAX_LINE_BYTES:,} bytes is not a monitor "
                                      "record (a layer record is about 1 KB)")
            if not raw.strip():
                continue
            try:
                record = _parse(raw, where)
            except MonitorLogError:
                raise
            except (ValueError, UnicodeDecodeError) as e:
                if not raw.endswith(b"\n"):  # the half-written last line of a killed run
                    break
                raise MonitorLogError(f"{where}: not a JSON record ({_shown(str(e))}); is this a filterdb "
                                      "monitor log?") from None
            if not isinstance(record, dict):
                raise MonitorLogError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if "alert" in record:
                alerts.append(_alert_row(record, where))
            else:
                rows.append(_layer_row(record, where))
    if not rows:
        raise MonitorLogError(f"{target}: no layer records; is this a filterdb monitor log?")
    return MonitorLog(path=target, layers=pd.DataFrame(rows), alerts=alerts)
