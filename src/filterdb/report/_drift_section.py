"""The report's drift section: one heatmap per axis with its ranking of groups, one caveat box per axis,
and the ridge plots.

Everything shown is in the study's :class:`~filterdb.analysis.AxisStudy`: the matrix, each group's noise
floor (the drift between two fixed random halves of its layers), the ranking of the groups by their mean
drift to the others, the pairs beyond noise, the groups left out and the dominant models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._format import count
from ._context import Section
from ._html import Html, Page, cell_number, esc, table_html

if TYPE_CHECKING:
    from ..analysis.study import AxisStudy
    from ._context import ReportContext

__all__ = ["drift_section", "slug"]

_HOWTO = ("Drift D measures how different the filter distributions of two groups are: for each PCA "
          "coefficient, the symmetric Kullback–Leibler divergence between the two groups' histograms, weighted "
          "by the coefficient's share η of the variance (Gavrikov & Keuper 2022); here {weighting}. 0 means the "
          "same distribution; larger is more different. Rows and columns are the groups, sorted by their mean "
          "drift to the others (outliers bottom right; depth deciles keep their order); every heatmap uses the "
          "same colour scale, set by the drifts between groups (not by the diagonal), and the same PCA basis, "
          "so colours compare across axes. The grey diagonal holds each group's noise floor: the drift between "
          "two random halves of its own layers, what sampling alone gives. A pair differs beyond noise only "
          "where its drift exceeds the larger floor of its two groups: bold numbers on full colour; pale cells "
          "do not. A group of one model, or of too few layers, has no floor it can trust (\"?\"): it is never "
          "counted as beyond noise. The bars beside the matrix rank the groups by mean drift, the black tick "
          "is the group's floor.")


def drift_section(ctx: ReportContext) -> Section:
    """The heatmap of each axis on one colour scale, its caveats and numbers, and the ridge plots of the first axis
    that is not depth."""
    from ..plotting import ridge_plot

    study = ctx.study
    body = Page("")
    body.heading("Drift between groups of filters", anchor="drift")
    weighting = ("each model of a group counts equally (the mean of its models' distributions)"
                 if study.settings.per_model else "each filter counts equally, so a large model weighs more than "
                 "a small one (filterdb report --per-model weighs models equally)")
    body.howto(_HOWTO.format(weighting=weighting))
    axes = study.axes
    # one colour scale for the page: the largest drift between two groups of any axis (never a floor)
    tops = [float(np.max(a.drift.upper_triangle())) for a in axes if len(a.drift.groups) > 1]
    vmax = max(tops + [1e-9])
    files: list[tuple[str, Any]] = []
    per_axis: dict[str, Any] = {}
    failed = {k.split(":", 1)[1]: v for k, v in study.errors.items() if k.startswith("drift:")}
    for axis in axes:
        body.heading(f"Drift by {axis.axis}", level=3, anchor=f"drift-{slug(axis.axis)}")
        per_axis[axis.axis] = _axis_part(ctx, body, axis, vmax, files if axis is axes[0] else None)
    for name, message in failed.items():
        body.heading(f"Drift by {name}", level=3, anchor=f"drift-{slug(name)}")
        body.raw(Html(f'<div class="note">{esc(message)}</div>'))
    ridge = next((a for a in axes if a.axis != "depth"), axes[0] if axes else None)
    if ridge is not None:
        ctx.step("ridge plots")
        body.heading(f"Coefficient distributions by {ridge.axis} (ridge plots)", level=3, anchor="ridge")
        body.howto("One panel per PCA coefficient (numbered as the eigen-images, with its share η of the "
                   "variance), one ridge per group: the histogram of that coefficient over the group's filters, "
                   "in the very bins the drift compares (no smoothing), each ridge scaled to its own highest "
                   "bin. Where the ridges of a panel differ in shape or position, the groups use that "
                   "component differently — that is what the drift adds up, weighted by η.")
        figure = ctx.draw(ridge_plot, ridge.drift)
        files.append(("ridge.png", figure))
        body.figure(figure, alt=f"ridge plots of the coefficients by {ridge.axis}",
                    caption=f"Groups from top to bottom in the order of the drift matrix by {ridge.axis}.")
    return Section("Drift", "drift", body, tuple(files), {"drift": per_axis, "drift_scale_max": vmax})


def _axis_part(ctx: ReportContext, body: Page, a: AxisStudy, vmax: float,
               files: list[tuple[str, Any]] | None) -> dict[str, Any]:
    """One axis: its heatmap with caption and one caveat box, its numbers per group; returns its findings.
    ``files``: where the first axis's heatmap is listed as drift.png."""
    from ..plotting import drift_heatmap

    d = a.drift
    s = d.summary()
    n_in = int(sum(d.sizes["n_filters"]))
    missing = ctx.study.n_filters - n_in
    shape = ctx.shape
    counted = (f"all {count(n_in)} {shape} filters of the study" if missing <= 0 else
               f"{count(n_in)} of the {count(ctx.study.n_filters)} {shape} filters of the study ({count(missing)} "
               "are in groups left out or have no value)")
    beyond = [r for r in a.ranking if r.beyond_floor]
    top = (", ".join(f"{r.group} {r.mean_drift:.2f} (floor {r.floor:.2f})" for r in beyond[:3]) if beyond else
           "none: no group's mean drift exceeds its noise floor")
    caption = (f"{s['n_groups']} groups, {counted}. Pairwise drift median {s['median']:.2f}, max {s['max']:.2f} "
               f"between {s['max_pair'][0]} and {s['max_pair'][1]}; {len(a.beyond_pairs)} of {a.n_pairs} pairs "
               f"beyond noise. Most shifted beyond their floor (mean drift to the others): {top}.")
    figure = ctx.draw(drift_heatmap, d, vmax=vmax, noise_floor=dict(a.floors), ranking=tuple(a.ranking))
    if files is not None:
        files.append(("drift.png", figure))
    body.figure(figure, alt=f"drift matrix by {a.axis}", caption=caption)
    caveats = [*a.left_out, *(str(n) for n in a.notes)]
    caveats += _dominant_lines(a)
    unknown = [r for r in a.ranking if r.floor is None]
    if unknown:
        caveats.append("No noise floor for " + "; ".join(f"{r.group} ({r.floor_note or 'cannot be estimated'})"
                                                         for r in unknown) + ": never counted as beyond noise.")
    if caveats:  # one box per axis, every caveat of the axis in it
        extra = ("" if ctx.study.settings.per_model or not a.dominant else
                 " Where one model dominates a group, the group shows that model: filterdb report --per-model "
                 "weighs each model equally.")
        body.raw(Html(f'<div class="note caveats"><b>Caveats of {esc(a.axis)}.</b>{esc(extra)}<ul>'
                      + "".join(f"<li>{esc(c)}</li>" for c in caveats) + "</ul></div>"))
    rows = [[r.group, count(r.n_filters), f"{r.n_models}", cell_number(r.mean_drift, 2), cell_number(r.floor, 2),
             "yes" if r.beyond_floor else ("no" if r.beyond_floor is False else "unknown")] for r in a.ranking]
    body.raw(Html(f"<details><summary>The groups of {esc(a.axis)}, most shifted first</summary>" + table_html(
        [a.axis, "filters", "models", "mean drift", "noise floor", "beyond floor"], rows,
        numeric=(1, 2, 3, 4)) + "</details>"))
    return {"n_groups": s["n_groups"], "median": s["median"], "max": s["max"], "max_pair": s["max_pair"],
            "most_shifted": [(r.group, r.mean_drift) for r in beyond[:3]],
            "noise_floor": dict(a.floors), "left_out": list(a.left_out),
            "dominant": {m.group: {"model": m.model, "share": m.share} for m in a.dominant}}


def _dominant_lines(a: AxisStudy) -> list[str]:
    """One line per dominant model, however many groups it dominates (a large model often dominates every depth
    decile: one line, not one box per decile)."""
    by_model: dict[str, list[Any]] = {}
    for m in a.dominant:
        by_model.setdefault(m.model, []).append(m)
    lines = []
    for model, groups in by_model.items():
        if len(groups) == 1:
            lines.append(f"{model} holds {groups[0].share:.0%} of {groups[0].group}'s filters.")
        else:
            lines.append(f"{model} holds most filters of {len(groups)} groups: "
                         + ", ".join(f"{m.group} {m.share:.0%}" for m in groups) + ".")
    return lines


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "axis"
