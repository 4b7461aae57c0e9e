"""Figures of a monitor log: a layer × step heatmap per metric, and one layer's metrics against step.

Alerts are drawn where they fired (a marker in the verdict's colour and shape), so a reader sees at once
which layer went wrong when. Figures are returned, never shown: the page embeds them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..check import Thresholds
from ..plotting import THRESHOLD, VERDICT_COLOURS, VERDICT_MARKERS, new_figure, style_axes, theme
from ._log import MonitorLog
from ._summary import evaluations

__all__ = ["METRIC_LABELS", "heatmap_figure", "layer_figure"]

METRIC_LABELS = {
    "sparsity": "sparsity",
    "variance_entropy_norm": "normalised variance entropy",
    "orthogonality": "orthogonality",
}
_CMAPS = {"sparsity": "magma", "variance_entropy_norm": "viridis", "orthogonality": "cividis"}
_MAX_ROWS = 60  # layers shown in one heatmap; deeper networks show their first and last layers


def _grid(log: MonitorLog, metric: str) -> tuple[list[str], list[int], np.ndarray]:
    frame = evaluations(log)
    names, steps = log.layer_names, log.steps
    table = frame.pivot(index="name", columns="step", values=metric).reindex(index=names, columns=steps)
    values = table.to_numpy(dtype=float, copy=True)
    values[~np.isfinite(values)] = np.nan  # a MonitorLog built by hand: infinite cells shown as missing
    return names, steps, values


def _shown_rows(names: Sequence[str]) -> list[int]:
    if len(names) <= _MAX_ROWS:
        return list(range(len(names)))
    half = _MAX_ROWS // 2
    return list(range(half)) + list(range(len(names) - half, len(names)))


def heatmap_figure(log: MonitorLog, metric: str, *, theme_name: str = "light") -> Any:
    """A layer × step heatmap of one metric, with a marker where each alert fired."""
    th = theme(theme_name)
    names, steps, values = _grid(log, metric)
    rows = _shown_rows(names)
    fig = new_figure(8.0, 1.4 + 0.22 * len(rows), th)
    ax = fig.add_subplot()
    style_axes(ax, th, grid=False)
    shown = np.ma.masked_invalid(values[rows])
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=_CMAPS.get(metric, "viridis"))
    ax.set_yticks(range(len(rows)), [_short(names[i]) for i in rows], fontsize=7)
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_xlabel("step")
    row_of = {names[i]: r for r, i in enumerate(rows)}
    column_of = {step: c for c, step in enumerate(steps)}
    for alert in log.alerts:
        r, c = row_of.get(alert["layer"]), column_of.get(alert["step"])
        if r is not None and c is not None:
            ax.scatter([c], [r], marker=VERDICT_MARKERS.get(alert["kind"], "o"), s=46,
                       color=VERDICT_COLOURS.get(alert["kind"], "black"), edgecolors="white", linewidths=0.8)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label(METRIC_LABELS.get(metric, metric), color=th.ink)
    bar.ax.tick_params(colors=th.ink, labelsize=7)
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} of every layer during training", fontsize=10, loc="left")
    return fig


def layer_figure(log: MonitorLog, layer: str, thresholds: Thresholds = Thresholds(), *,
                 theme_name: str = "light") -> Any:
    """One layer's sparsity, normalised variance entropy and orthogonality against step, with alerts and
    the verdict thresholds."""
    th = theme(theme_name)
    frame = evaluations(log)
    rows = frame[frame["name"] == layer]
    fig = new_figure(8.0, 5.2, th)
    axes = fig.subplots(3, 1, sharex=True)
    limits = {"sparsity": [(thresholds.sparse, "sparse")],
              "variance_entropy_norm": [(thresholds.random, "random"), (thresholds.low_diversity, "low-diversity")]}
    for ax, metric in zip(axes, METRIC_LABELS):
        style_axes(ax, th)
        # read_log refuses non-finite values; a MonitorLog built by hand may still hold one (matplotlib
        # overflows on infinite data limits): drawn as a gap
        values = rows[metric].to_numpy(dtype=float, copy=True)
        values[~np.isfinite(values)] = np.nan
        ax.plot(rows["step"], values, color="#0072B2", marker="o", markersize=3, linewidth=1.4)
        for value, label in limits.get(metric, []):
            ax.axhline(value, color=THRESHOLD, linestyle="--", linewidth=1)
            ax.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=7, color=THRESHOLD)
        for alert in log.alerts:
            if alert["layer"] == layer:
                ax.axvline(alert["step"], color=VERDICT_COLOURS.get(alert["kind"], "black"), linewidth=1.2,
                           alpha=0.8)
        ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
    axes[-1].set_xlabel("step")
    axes[0].set_title(f"layer {_short(layer, 60)} during training (vertical lines: alerts)", fontsize=10, loc="left")
    return fig


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
