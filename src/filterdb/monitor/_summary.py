"""The per-layer summary of a monitor log: first and last values, last verdicts, and when alerts fired."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._log import MonitorLog

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUMMARY_METRICS", "summarize", "evaluations"]

SUMMARY_METRICS = ("sparsity", "variance_entropy_norm", "orthogonality")


def evaluations(log: MonitorLog) -> pd.DataFrame:
    """The layer rows, one per layer and step (a repeated step, e.g. the final evaluation, keeps its last row)."""
    frame = log.layers.drop_duplicates(subset=["name", "step"], keep="last")
    return frame.sort_values("step", kind="stable").reset_index(drop=True)


def summarize(log: MonitorLog) -> pd.DataFrame:
    """One row per layer: first and last step, first/last value of each summary metric, last verdicts, alerts.

    ``alerts`` is a list of ``"kind at step N (rule)"`` strings in firing order.

    Examples
    --------
    >>> summarize(read_log("runs/a"))[["name", "sparsity_last", "alerts"]]  # doctest: +SKIP
    """
    import pandas as pd

    frame = evaluations(log)
    by_layer: dict[str, list[str]] = {alert["layer"]: [] for alert in log.alerts}
    for alert in sorted(log.alerts, key=lambda a: a["step"]):
        by_layer[alert["layer"]].append(f"{alert['kind']} at step {alert['step']} ({alert['rule']})")
    # each layer's first and last evaluation in one pass over the rows (not one pass per layer: a log of
    # 10,000 layer names took minutes)
    firsts = frame.drop_duplicates(subset=["name"], keep="first").set_index("name").to_dict("index")
    lasts = frame.drop_duplicates(subset=["name"], keep="last").set_index("name").to_dict("index")
    rows = []
    for name in log.layer_names:
        first, last = firsts[name], lasts[name]
        row = {"name": name, "first_step": int(first["step"]), "last_step": int(last["step"])}
        for metric in SUMMARY_METRICS:
            row[f"{metric}_first"] = float(first[metric])
            row[f"{metric}_last"] = float(last[metric])
        row["verdicts"] = list(last["verdicts"])
        row["alerts"] = by_layer.get(name, [])
        rows.append(row)
    return pd.DataFrame(rows)
