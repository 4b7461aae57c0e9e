"""The ``filterdb monitor --html`` page: one self-contained file with the summary, alerts and figures."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..report import Html, Page, esc, write_html
from ._figures import METRIC_LABELS, heatmap_figure, layer_figure
from ._log import MonitorLog
from ._summary import summarize

__all__ = ["monitor_html", "write_monitor_html"]


def _value(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _badges(kinds: list[str]) -> Html:
    if not kinds:
        return Html('<span class="badge b-ok">ok</span>')
    return Html("".join(f'<span class="badge b-{esc(k)}">{esc(k)}</span>' for k in kinds))


def monitor_html(log: MonitorLog, *, layer: str | None = None) -> str:
    """The page as text. ``layer``: the layer drawn against step (default: the first to alert, else the first)."""
    from .. import __version__

    summary = summarize(log)
    if layer is None:
        layer = min(log.alerts, key=lambda a: a["step"])["layer"] if log.alerts else log.layer_names[0]
    elif layer not in log.layer_names:
        from ..errors import UsageError, suggest

        raise UsageError(f"{log.path}: {suggest(layer, log.layer_names, 'layer')}")
    page = Page(f"filterdb monitor: {log.path.name}")
    steps = log.steps
    verdict = (f'<span class="badge b-random">{len(log.alerts)} alert(s)</span>' if log.alerts
               else '<span class="badge b-ok">no alerts</span>')
    title = log.path.parent.name or log.path.name
    page.raw(Html(f'<header><div class="kicker">filterdb · training monitor</div><h1>{esc(title)}</h1>'
                  f'<p class="muted">{esc(str(log.path))}</p><p>{verdict}</p></header>'))
    facts = [("conv layers", str(len(log.layer_names))), ("evaluations", str(len(steps))),
             ("steps", f"{steps[0]} – {steps[-1]}"), ("alerts", str(len(log.alerts)))]
    page.raw(Html('<div class="facts">' + "".join(
        f'<div class="fact"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in facts)
        + "</div>"))

    page.heading("Alerts", anchor="alerts")
    if log.alerts:
        page.table(["step", "epoch", "layer", "kind", "rule", "message"],
                   [[a["step"], "–" if a["epoch"] is None else a["epoch"], a["layer"], _badges([a["kind"]]),
                     a["rule"], a["message"]] for a in sorted(log.alerts, key=lambda a: a["step"])],
                   numeric=(0, 1), name_col=2)
    else:
        page.paragraph("No alert fired: no layer became sparse, low-diversity or non-finite, and none stayed random.")

    page.heading("Layers", anchor="layers")
    page.howto("first → last value of each metric over the run, the verdicts of the last evaluation, and when "
               "each alert fired.")
    rows = []
    for row in summary.itertuples(index=False):
        rows.append([row.name, f"{_value(row.sparsity_first)} → {_value(row.sparsity_last)}",
                     f"{_value(row.variance_entropy_norm_first)} → {_value(row.variance_entropy_norm_last)}",
                     f"{_value(row.orthogonality_first)} → {_value(row.orthogonality_last)}",
                     _badges(list(row.verdicts)), "; ".join(row.alerts) or "–"])
    page.table(["layer", "sparsity", "norm. entropy", "orthogonality", "verdicts (last)", "alerts"], rows,
               numeric=(1, 2, 3), name_col=0)

    page.heading("Every layer against step", anchor="heatmaps")
    page.howto("one row per layer (graph order), one column per evaluation; markers show where an alert fired "
               "(square sparse, diamond low-diversity, triangle random, cross non-finite). A normalised entropy "
               "above 1 reads random (untrained), below 0.5 redundant.")
    for metric, label in METRIC_LABELS.items():
        page.figure(heatmap_figure(log, metric), alt=f"{label} of every layer against step",
                    caption=f"{label}, layer × step")

    page.heading(f"Layer {layer}", anchor="layer")
    page.figure(layer_figure(log, layer), alt=f"metrics of layer {layer} against step",
                caption="dashed: the verdict thresholds of filterdb check")
    page.raw(Html("<footer>" + esc(f"filterdb {__version__} · filterdb monitor {log.path.name}") + "</footer>"))
    return page.render()


def write_monitor_html(path: str | os.PathLike[str], log: MonitorLog, *, layer: str | None = None) -> Path:
    """Write the page atomically; returns its path."""
    return write_html(path, monitor_html(log, layer=layer))
