"""The report's drift section: one heatmap per axis, the axes side by side, and the ridge plots.

The drift of one axis as the report shows it: which groups take part, each group's noise floor, and which
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
from typing import TYPE_CHECKING, Any

import numpy as np

from .._format import count
from ._context import Section
from ._html import Html, Page, cell_number, esc, table_html

if TYPE_CHECKING:
    from ..analysis import DriftResult, PCAResult
    from ..store import Store
    from ._context import ReportContext

__all__ = ["AxisDrift", "MIN_FILTERS", "UNKNOWN_VALUES", "axis_drift", "drift_section", "largest_model"]

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
    result: DriftResult
    floors: dict[str, float]  # group -> noise floor (NaN: a group of one layer has no halves)
    left_out: list[str] = field(default_factory=list)  # sentences: groups not in the matrix and why
    dominant: dict[str, tuple[str, float]] = field(default_factory=dict)  # group -> (model, share of its filters)
    n_filters: int = 0  # filters in the matrix

    def group_means(self) -> dict[str, float]:
        means: dict[str, float] = self.result.summary().get("group_mean", {})
        return means

    def shifted(self) -> list[tuple[str, float]]:
        """Groups by mean drift to the others, most shifted first, keeping those above their noise floor."""
        means = sorted(self.group_means().items(), key=lambda kv: -kv[1])
        return [(g, v) for g, v in means if not v <= self.floors.get(g, np.nan)]


def axis_drift(store: Store, axis: str, shape: str, where: str | None, params: Sequence[Any] | None, *,
               basis: PCAResult, per_model: bool, model_names: dict[int, str]) -> AxisDrift:
    """The drift of ``axis`` over the selection, its groups' noise floors and dominant models.

    Groups whose value means "not known" (``UNKNOWN_VALUES``) and groups under ``MIN_FILTERS`` filters are
    left out, each named with its size. Raises AnalysisError when fewer than two groups remain.
    """
    from ..analysis import AnalysisError, drift, group_expression, make_plan

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
    expr, is_depth = group_expression(store, axis)
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


def drift_section(ctx: ReportContext) -> Section:
    """The drift heatmap of each axis on one colour scale, their pairwise drifts side by side, and the ridge plots
    of the first axis that is not depth."""
    from ..plotting import drift_boxplots, ridge_plot

    body = Page("")
    body.heading("Drift between groups of filters", anchor="drift")
    weighting = ("each model of a group counts equally (the mean of its models' distributions)"
                 if ctx.options.per_model else "each filter counts equally, so a large model weighs more than a "
                 "small one (filterdb report --per-model weighs models equally)")
    body.howto("Drift D measures how different the filter distributions of two groups are: for each PCA "
               "coefficient, the symmetric Kullback–Leibler divergence between the two groups' histograms, "
               "weighted by the coefficient's share η of the variance (Gavrikov & Keuper 2022); here "
               f"{weighting}. 0 means the same distribution; larger is more different. In the heatmaps, rows "
               "and columns are the groups, sorted by their mean drift to the others, so that outlying groups "
               "gather at the bottom right (depth deciles keep their order); every heatmap uses the same colour "
               "scale and the same PCA basis (of all filters above), so colours compare across axes. The "
               "diagonal shows each group's noise floor: the drift between two random halves of its own "
               "layers, what sampling alone gives. A pair differs beyond noise only where its drift exceeds "
               "the larger floor of its two groups; hatched cells do not. Small groups, and groups of one or "
               "two models, have high floors.")
    basis = ctx.basis
    if isinstance(basis, str):
        return Section("Drift", "drift", body)
    done, failed = ctx.drifts
    vmax = max([float(np.nanmax([d.result.matrix.max(), *d.floors.values(), 0.0])) for d in done] + [1e-9])
    per_axis: dict[str, Any] = {}
    files: list[tuple[str, Any]] = []
    for axis in ctx.axes:
        body.heading(f"Drift by {axis}", level=3, anchor=f"drift-{_slug(axis)}")
        if axis in failed:
            body.raw(Html(f'<div class="note">{esc(failed[axis])}</div>'))
            continue
        d = next(x for x in done if x.axis == axis)
        per_axis[axis] = _axis_part(ctx, body, d, vmax, basis.n_filters, files if d is done[0] else None)
    results = [d.result for d in done]
    if len(results) >= 2:
        ctx.step("drift comparison")
        body.heading("Drift of the axes side by side", level=3, anchor="drift-axes")
        body.figure(ctx.draw(drift_boxplots, results), alt="boxplots of the pairwise drift of each axis",
                    caption="Each point is one pair of groups of that axis; boxes span the middle half, the "
                            "line is the median.")
    ridge = next((d for d in done if d.axis != "depth"), done[0] if done else None)
    if ridge is not None:
        ctx.step("ridge plots")
        body.heading(f"Coefficient distributions by {ridge.axis} (ridge plots)", level=3, anchor="ridge")
        body.howto("One panel per PCA coefficient (numbered as the eigen-images, with its share η of the "
                   "variance), one ridge per group: the histogram of that coefficient over the group's filters, "
                   "in the very bins the drift compares (no smoothing), each ridge scaled to its own highest "
                   "bin. Where the ridges of a panel differ in shape or position, the groups use that "
                   "component differently — that is what the drift adds up, weighted by η.")
        figure = ctx.draw(ridge_plot, ridge.result)
        files.append(("ridge.png", figure))
        body.figure(figure, alt=f"ridge plots of the coefficients by {ridge.axis}",
                    caption=f"Groups from top to bottom in the order of the drift matrix by {ridge.axis}.")
    return Section("Drift", "drift", body, tuple(files), {"drift": per_axis, "drift_scale_max": vmax})


def _axis_part(ctx: ReportContext, body: Page, d: AxisDrift, vmax: float, n_pca: int,
               files: list[tuple[str, Any]] | None) -> dict[str, Any]:
    """One axis: its heatmap with caption and notes, its numbers per group; returns its findings. ``files``: where
    the first axis's heatmap is listed as drift.png."""
    from ..plotting import drift_heatmap

    result = d.result
    s = result.summary()
    shifted = d.shifted()
    floors = {g: (None if np.isnan(v) else v) for g, v in d.floors.items()}
    findings = {
        "n_groups": s["n_groups"], "mean": s["mean"], "median": s["median"], "max": s["max"],
        "max_pair": s["max_pair"], "most_shifted": shifted[:3], "noise_floor": floors,
        "left_out": d.left_out, "dominant": {g: {"model": m, "share": v} for g, (m, v) in d.dominant.items()}}
    missing = n_pca - d.n_filters
    shape = ctx.shape
    counted = (f"all {count(d.n_filters)} {shape} filters of the PCA above" if not missing else
               f"{count(d.n_filters)} of the {count(n_pca)} {shape} filters of the PCA above ({count(missing)} are "
               "in the groups left out below" + (" or have no value" if result.notes else "") + ")")
    above = (", ".join(f"{g} {v:.2f}" for g, v in shifted[:3]) if shifted else
             "none: every group's mean drift is within its noise floor")
    caption = (f"{s['n_groups']} groups, {counted}. Pairwise drift median {s['median']:.2f}, max {s['max']:.2f} "
               f"between {s['max_pair'][0]} and {s['max_pair'][1]}. Most shifted groups beyond their noise "
               f"floor (mean drift to the others): {above}.")
    notes = list(d.left_out) + [str(n) for n in result.notes]
    for group, (model, share) in d.dominant.items():
        notes.append(f"One model dominates {group}: {model} holds {share:.0%} of its filters."
                     + ("" if ctx.options.per_model else " filterdb report --per-model weighs each model equally."))
    figure = ctx.draw(drift_heatmap, result, vmax=vmax, noise_floor=d.floors)
    if files is not None:
        files.append(("drift.png", figure))
    body.figure(figure, alt=f"drift matrix by {d.axis}", caption=caption, notes=notes)
    sizes = result.sizes
    means = d.group_means()
    dominant = {g: f"{m} {v:.0%}" for g, (m, v) in d.dominant.items()}
    rows = [[g, count(nf), f"{nm}", dominant.get(g, "–"), cell_number(floors.get(g), 2),
             cell_number(means.get(g), 2)]
            for g, nf, nm in zip(result.groups, sizes["n_filters"], sizes["n_models"])]
    body.raw(Html(f"<details><summary>The numbers per {esc(d.axis)}</summary>" + table_html(
        [d.axis, "filters", "models", "largest model", "noise floor", "mean drift"], rows,
        numeric=(1, 2, 4, 5)) + "</details>"))
    return findings


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "axis"


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


def largest_model(store: Store, shape: str, where: str | None, params: Sequence[Any] | None) -> tuple[str, float]:
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
    from ..analysis import DEPTH_LABELS

    cases = " ".join(f"WHEN conv_depth_norm <= {(i + 1) / 10!r}::DOUBLE THEN '{label}'"
                     for i, label in enumerate(DEPTH_LABELS[:-1]))
    return f"(CASE WHEN conv_depth_norm IS NULL THEN NULL {cases} ELSE '{DEPTH_LABELS[-1]}' END)"
