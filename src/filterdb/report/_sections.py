"""The sections of the zoo report, in page order: ``SECTIONS``.

Each is a function ``section(ctx) -> Section`` over the :class:`~filterdb.report._context.ReportContext`;
the page lists them in its table of contents and appends them in this order. Adding a section is one
function and one line in ``SECTIONS``. A section lays out numbers of the study and rows of the catalog
snapshot; it computes nothing and never reads the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._format import count, size
from ._context import Section
from ._drift_section import drift_section
from ._findings import findings_section
from ._html import Html, Page, badges, cell_number, esc, name_cell, table_html
from ._lineage import lineage_section
from ._model_sections import models_section
from ._prune_section import prune_section

if TYPE_CHECKING:
    from ._context import ReportContext

__all__ = ["SECTIONS", "SectionFunction"]

SectionFunction = Callable[["ReportContext"], Section]


def summary_section(ctx: ReportContext) -> Section:
    """Counts of models, layers and filters, degenerated layers and the store's size."""
    stats, models, layers, shape = ctx.catalog.stats, ctx.catalog.models, ctx.catalog.layers, ctx.shape
    n_shape = int(layers.loc[layers["kernel"] == shape, "n_filters"].sum()) if len(layers) else 0
    n_deg = int(sum(len(v) > 0 for v in layers["verdicts"])) if len(layers) else 0
    n2d = int((layers["spatial_ndim"] == 2).sum()) if len(layers) else 0
    formats = models["format"].value_counts().to_dict() if len(models) else {}
    facts = [
        ("models", count(stats.n_models), ", ".join(f"{k} {v}" for k, v in formats.items())),
        ("conv layers", count(stats.n_layers), f"{count(n2d)} with 2-D kernels"),
        ("filters", count(stats.n_filters), "all kernel shapes"),
        (f"{shape} filters", count(n_shape), "analysed below"),
        ("degenerated layers", count(n_deg), f"of {count(n2d)} 2-D layers"),
        ("store size", size(stats.total_bytes), f"{stats.bytes_per_filter:.1f} bytes per filter"
         if stats.n_filters else ""),
    ]
    cells = "".join(f'<div class="fact"><div class="k">{esc(k)}</div><div class="v">{esc(v)}'
                    f'{" <small>" + esc(sub) + "</small>" if sub else ""}</div></div>' for k, v, sub in facts)
    body = Page("")
    body.heading("Summary", anchor="summary")
    body.raw(Html(f'<div class="facts">{cells}</div>'))
    shapes = stats.shapes
    if len(shapes):  # most filters first; ties by name, so that the page does not depend on the catalog's order
        shapes = shapes.sort_values(["n_filters", "kernel"], ascending=[False, True], kind="stable")
        body.raw(Html("<details><summary>Filters per kernel shape</summary>" + table_html(
            ["kernel", "models", "layers", "filters"],
            [[r.kernel, count(r.n_models), count(r.n_layers), count(r.n_filters)] for r in shapes.itertuples()],
            numeric=(1, 2, 3)) + "</details>"))
    degenerated = [{"model": r.model, "layer": r.layer, "verdicts": list(r.verdicts)}
                   for r in ctx.catalog.degenerated.itertuples()]
    return Section("Summary", "summary", body, summary={
        "n_models": int(stats.n_models), "n_layers": int(stats.n_layers), "n_filters": int(stats.n_filters),
        "degenerated_layers": degenerated, "n_filters_shape": n_shape})


def pca_section(ctx: ReportContext) -> Section:
    """The eigen-images of all filters (and of the largest groups of the first axis), then the 2-D density of the
    first two coefficients."""
    from ..plotting import coefficient_density_map, eigen_images

    study, shape = ctx.study, ctx.shape
    body = Page("")
    body.heading("PCA basis of the filters (eigen-images)", anchor="pca")
    body.howto(f"Every {shape} filter is scaled by its largest |weight| and decomposed on the principal "
               "components of all filters. Each tile is one component (an \"eigen-image\"), numbered 1, 2, … "
               "as on the axis of the cumulative curve, blue negative, red positive, white zero, with its share "
               "η of the variance under it; all tiles share one colour scale. Few components carrying most of "
               "the variance (a steep cumulative curve) means the filters are low-dimensional: trained filters "
               "are smooth and repeat a few patterns (the first component is typically a blob, the next ones "
               "edges). Rows are different selections of filters: similar tiles mean the selections share one "
               "basis. Click a figure to open it at full size.")
    basis = study.pca
    if basis is None:
        body.raw(Html(f'<div class="note">{esc(study.errors.get("pca", "no PCA basis"))}</div>'))
        return Section("PCA basis", "pca", body)
    bases: list[tuple[str, Any]] = [("all filters", basis)]
    bases += [(f"{ctx.first} = {group}", b) for group, b in study.group_pcas.items()]
    summary = {"explained_variance_ratio": [float(v) for v in basis.explained_variance_ratio]}
    caption = (f"{count(basis.n_filters)} {shape} filters from {basis.n_models} models; the first "
               f"{_k_for(basis.cumulative, 0.9)} components explain 90 % of their variance.")
    eigen = ctx.draw(eigen_images, bases)
    files = [("eigen-images.png", eigen)]
    body.figure(eigen, alt="eigen-images: the principal components of the filters as tiles, one row per selection, "
                           "and the cumulative explained variance", caption=caption)
    density = study.density
    if density is not None:
        ctx.step("2-D coefficient density")
        body.heading("Density of the first two coefficients", level=3, anchor="density")
        body.howto("Each filter is one point at its first two PCA coefficients; the colour counts the filters "
                   "per bin on a log scale, so that rare filters at the rim stay visible next to the dense "
                   "centre. Trained filters fill a compact, often lopsided cloud; a spike or a separate blob is "
                   "a group of identical filters (e.g. all-zero filters of sparse layers sit at one point).")
        figure = ctx.draw(coefficient_density_map, density)
        files.append(("density.png", figure))
        body.figure(figure, alt="2-D density of the first two PCA coefficients",
                    caption=f"{count(density.n_filters)} filters, {density.counts.shape[0]}² bins over the bound "
                            f"±{basis.bound():.2f} of the coefficients.")
    elif "density" in study.errors:
        body.raw(Html(f'<div class="note">{esc(study.errors["density"])}</div>'))
    return Section("PCA basis", "pca", body, tuple(files), summary)


def degeneration_section(ctx: ReportContext) -> Section:
    """Shares of layers with each verdict per group and depth decile, and the degenerated layers."""
    from ..plotting import degeneration_shares

    ctx.step("degeneration")
    body = Page("")
    body.heading("Degenerated layers", anchor="degeneration")
    body.howto("Layer verdicts of filterdb check, over the whole zoo: sparse (many filters near zero: wasted "
               "capacity or a pruned model), low-diversity (the filters repeat each other: typical of deep "
               "layers of over-parameterised networks) and random (the layer looks untrained). Bars give the "
               "share of layers with each verdict, per group (number of layers in brackets) and per depth "
               "decile (0 = input side, 1 = output side). A verdict is a prompt to look, not a proof of a bug.")
    files: list[tuple[str, Any]] = []
    summary: dict[str, Any] = {}
    deg = ctx.study.degeneration
    if deg is None:  # failed (an error) or not computed (a note of the study: e.g. a store without metrics)
        why = ctx.study.errors.get("degeneration") or next(
            (n.split(": ", 1)[1] for n in ctx.study.notes if n.startswith("degeneration: ")), "not computed")
        body.raw(Html(f'<div class="note">{esc(why)}</div>'))
    else:
        summary["degeneration"] = deg.overall
        figure = ctx.draw(degeneration_shares, deg)
        files.append(("degeneration.png", figure))
        body.figure(figure, alt="shares of degenerated layers per group and per depth decile",
                    caption=f"{int(deg.overall['n_layers'])} layers with 2-D kernels; "
                            f"{deg.overall['any_layers']:.1%} of them have a verdict, holding "
                            f"{deg.overall['any_filters']:.1%} of the filters.", notes=list(deg.notes))
        if deg.per_group is not None and deg.by is not None:
            _per_group_table(body, deg.per_group, str(deg.by))
    bad = ctx.catalog.degenerated
    if len(bad):
        ids = {int(m) for m in ctx.shown_models["model_id"]}
        rows = []
        for r in bad.head(200).itertuples():
            link = Html(f'<a href="#model-{int(r.model_id)}">{esc(r.model)}</a>') if int(r.model_id) in ids \
                else esc(r.model)
            rows.append([link, name_cell(r.layer), cell_number(r.conv_depth_norm, 2),
                         count(r.n_filters), cell_number(r.sparsity, 3),
                         cell_number(r.variance_entropy_norm, 3), badges(r.verdicts)])
        body.raw(Html(f"<details><summary>{len(bad)} degenerated layer(s)"
                      + (" (first 200)" if len(bad) > 200 else "") + "</summary>"
                      + table_html(["model", "layer", "depth", "filters", "sparsity", "ve_norm", "verdicts"],
                                   rows, numeric=(2, 3, 4, 5), name_col=1) + "</details>"))
    return Section("Degeneration", "degeneration", body, tuple(files), summary)


SECTIONS: tuple[SectionFunction, ...] = (
    findings_section,
    summary_section,
    pca_section,
    drift_section,
    degeneration_section,
    lineage_section,
    prune_section,
    models_section,
)


def _per_group_table(page: Page, frame: Any, axis: str) -> None:
    rows = [[str(r[axis]), f"{int(r['n_models'])}", f"{int(r['n_layers'])}", count(r["n_filters"]),
             f"{r['sparse_layers']:.1%}", f"{r['low-diversity_layers']:.1%}", f"{r['random_layers']:.1%}",
             f"{r['any_layers']:.1%}", f"{r['any_filters']:.1%}"] for _, r in frame.iterrows()]
    page.raw(Html("<details><summary>The numbers per " + esc(axis) + "</summary>" + table_html(
        [axis, "models", "layers", "filters", "sparse", "low-div.", "random", "any (layers)", "any (filters)"], rows,
        numeric=tuple(range(1, 9))) + "</details>"))


def _k_for(cumulative: Any, share: float) -> int:
    """Components needed to explain ``share`` of the variance."""
    return int(np.searchsorted(np.asarray(cumulative), share - 1e-12) + 1)


