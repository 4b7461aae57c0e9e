"""The drift of one axis as the report shows it: which groups take part, each group's noise floor, and which
groups one model dominates.

The numbers come from :func:`filterdb.analysis.drift` alone. A group's *noise floor* is the drift between
two halves of its own layers, split at random (a fixed multiplicative hash of the layer id, so the split
is the same on every run): what the matrix shows for two samples of one group. Each half holds half the
filters, so the floor is, if anything, high; a pair of groups shifts visibly only where its drift exceeds
the larger floor of the two. One extra streamed pass per axis computes every group's floor at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AxisDrift", "MIN_FILTERS", "UNKNOWN_VALUES", "axis_drift", "largest_model"]

MIN_FILTERS = 100  # smaller groups make 70-bin histograms of mostly empty bins: their drift is noise
UNKNOWN_VALUES = frozenset({"unknown", "unspecified", "n/a", "?", ""})  # "not known", never a group of its own
DOMINANT_SHARE = 0.5  # a model holding more of a group's filters than this is named in the page
_SEP = "\x1f"  # between a group's value and its half in the split expression
# The top bit of a 32-bit multiplicative (Knuth) hash of the layer id: a fixed pseudo-random half, 0 or 1.
_HALF = "CAST((((layer_id * 2654435761) % 4294967296) // 2147483648) AS VARCHAR)"


@dataclass
class AxisDrift:
    """One axis: the drift result and what the page says about it."""

    axis: str
    result: Any  # DriftResult
    floors: dict[str, float]  # group -> noise floor (NaN: a group of one layer has no halves)
    left_out: list[str] = field(default_factory=list)  # sentences: groups not in the matrix and why
    dominant: dict[str, tuple[str, float]] = field(default_factory=dict)  # group -> (model, share of its filters)
    n_filters: int = 0  # filters in the matrix

    def group_means(self) -> dict[str, float]:
        return self.result.summary().get("group_mean", {})

    def shifted(self) -> list[tuple[str, float]]:
        """Groups by mean drift to the others, most shifted first, keeping those above their noise floor."""
        means = sorted(self.group_means().items(), key=lambda kv: -kv[1])
        return [(g, v) for g, v in means if not v <= self.floors.get(g, np.nan)]


def axis_drift(store: Any, axis: str, shape: str, where: str | None, params: Sequence[Any] | None, *, basis: Any,
               per_model: bool, model_names: dict[int, str]) -> AxisDrift:
    """The drift of ``axis`` over the selection, its groups' noise floors and dominant models.

    Groups whose value means "not known" (``UNKNOWN_VALUES``) and groups under ``MIN_FILTERS`` filters are
    left out, each named with its size. Raises AnalysisError when fewer than two groups remain.
    """
    from ..analysis import AnalysisError, drift, make_plan
    from ..analysis._selection import _group_expression

    plan = make_plan(store, shape, where, params, axis)
    n_f, n_m = plan.group_sizes()
    kept, unknown, small = [], [], []
    for i, group in enumerate(plan.groups):
        size = f"{group} ({n_f[i]:,} filters, {n_m[i]} model{'s' if n_m[i] != 1 else ''})"
        if group.strip().lower() in UNKNOWN_VALUES:
            unknown.append(size)
        elif n_f[i] < MIN_FILTERS:
            small.append(size)
        else:
            kept.append(group)
    left_out = []
    if unknown:
        left_out.append(f"Left out: {', '.join(unknown)}, an unknown {axis} rather than a group of its own.")
    if small:
        left_out.append(f"Left out, fewer than {MIN_FILTERS} filters each (too few to fill a 70-bin histogram): "
                        + ", ".join(small) + ".")
    if len(kept) < 2:
        raise AnalysisError(f"drift by {axis!r}: fewer than 2 groups to compare"
                            + (f" ({' '.join(left_out)})" if left_out else f" ({len(plan.groups)} group)"))
    result = drift(store, axis, shape, where, params, basis=basis, model_weighting=per_model, groups=kept,
                   min_filters=0, min_models=0)
    expr, is_depth = _group_expression(store, axis)
    value = _depth_label_sql() if is_depth else f"CAST({expr} AS VARCHAR)"
    split = f"CASE WHEN {value} IS NULL THEN NULL ELSE {value} || '{_SEP}' || {_HALF} END"
    halves = [f"{g}{_SEP}{h}" for g in kept for h in "01"]
    floors = {g: float("nan") for g in kept}
    try:
        parts = drift(store, split, shape, where, params, basis=basis, model_weighting=per_model, groups=halves,
                      min_filters=0, min_models=0, order="none")
    except AnalysisError:  # every group is a single layer: no halves to compare
        parts = None
    if parts is not None:
        index = {g: i for i, g in enumerate(parts.groups)}
        for g in kept:
            a, b = index.get(f"{g}{_SEP}0"), index.get(f"{g}{_SEP}1")
            if a is not None and b is not None:
                floors[g] = float(parts.matrix[a, b])
    return AxisDrift(axis, result, floors, left_out, _dominant(result, model_names),
                     int(sum(result.sizes["n_filters"])))


def _dominant(result: Any, model_names: dict[int, str]) -> dict[str, tuple[str, float]]:
    """Groups of several models where one model holds more than half of the filters."""
    hist = result.histograms
    if hist is None:
        return {}
    out = {}
    filters = np.asarray(hist.unit_filters, np.float64)
    for g, name in enumerate(hist.groups):
        units = np.flatnonzero(np.asarray(hist.unit_group) == g)
        if len(units) < 2 or filters[units].sum() <= 0:
            continue
        top = units[np.argmax(filters[units])]
        share = float(filters[top] / filters[units].sum())
        if share > DOMINANT_SHARE:
            out[name] = (model_names.get(int(hist.unit_model[top]), f"model {int(hist.unit_model[top])}"), share)
    return out


def largest_model(store: Any, shape: str, where: str | None, params: Sequence[Any] | None) -> tuple[str, float]:
    """(name, share of the selected filters) of the model with the most selected filters."""
    extra = f" AND ({where})" if where else ""
    frame = store.sql(f"SELECT model, sum(n_filters) AS n, sum(sum(n_filters)) OVER () AS total FROM layers "
                      f"WHERE kernel = ?{extra} GROUP BY model ORDER BY n DESC, model LIMIT 1",
                      [shape, *(params or [])])
    if not len(frame) or not frame["total"].iloc[0]:
        return "", 0.0
    return str(frame["model"].iloc[0]), float(frame["n"].iloc[0] / frame["total"].iloc[0])


def _depth_label_sql() -> str:
    """The depth-decile labels of the analyses (``DEPTH_LABELS``) as an SQL expression over conv_depth_norm."""
    from ..analysis._selection import DEPTH_LABELS

    cases = " ".join(f"WHEN conv_depth_norm <= {(i + 1) / 10!r}::DOUBLE THEN '{label}'"
                     for i, label in enumerate(DEPTH_LABELS[:-1]))
    return f"(CASE WHEN conv_depth_norm IS NULL THEN NULL {cases} ELSE '{DEPTH_LABELS[-1]}' END)"
