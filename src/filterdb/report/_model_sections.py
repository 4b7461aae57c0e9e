"""The report's table of models and one folded section per model: its layer metrics against depth, drawn from
the catalog snapshot (no model file is re-read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._format import count
from .._kernel import parse_kernel_key
from ..errors import UsageError
from ._context import Section
from ._html import Html, Page, badges, cell_number, esc, name_cell, table_html

if TYPE_CHECKING:
    from ._context import ReportContext

__all__ = ["model_figure_job", "models_section"]

_FIGURE_COLUMNS = ("layer", "kernel", "conv_depth", "n_filters", "sparsity", "variance_entropy_norm",
                   "variance_entropy_clean_norm", "orthogonality", "neighbour_corr", "kind", "n_nonfinite")
_VERDICT_KINDS = ("sparse", "low-diversity", "random", "non-finite")


def models_section(ctx: ReportContext) -> Section:
    """A table of every model (the summary), then a folded section per model (up to ``max_model_sections``)."""
    ctx.step("models")
    catalog, with_links = ctx.catalog, ctx.options.model_sections
    body = Page("")
    body.heading("Models", anchor="models")
    body.howto("One row per model in the store. Degenerated layers are counted per verdict; follow a name to the "
               "model's section (folded: click its title) with its layer metrics against depth, the same view as "
               "filterdb check --html.")
    rows, classes = [], []
    shown = {int(m) for m in ctx.shown_models["model_id"]}
    for r in catalog.models.itertuples():
        part = catalog.layers_of(r.model_id)
        verdicts = [v for vs in part["verdicts"] for v in vs]
        counts = {k: verdicts.count(k) for k in _VERDICT_KINDS}
        cell = Html("".join(f'<span class="badge b-{k}">{k} {n}</span>' for k, n in counts.items() if n)) \
            if verdicts else Html('<span class="badge b-ok">ok</span>')
        name = Html(f'<a href="#model-{int(r.model_id)}">{esc(r.model)}</a>') if int(r.model_id) in shown \
            else esc(r.model)
        rows.append([name, getattr(r, "task", None) or "–", r.format or "–", f"{int(r.n_layers or 0)}",
                     count(r.n_filters or 0), cell])
        classes.append("degenerated" if verdicts else "")
    body.table(["model", "task", "format", "conv layers", "filters", "verdicts"], rows, numeric=(3, 4), name_col=0,
               row_classes=classes)
    models = ctx.shown_models
    for k, row in enumerate(models.itertuples()):
        ctx.step(f"model {k + 1}/{len(models)}: {row.model}")
        _model_section(body, row, catalog.layers_of(row.model_id), ctx.model_figures.get(int(row.model_id)))
    if with_links and len(catalog.models) > len(models):
        body.paragraph(f"{len(catalog.models) - len(models)} more models have no section (max_model_sections).",
                       cls="muted")
    return Section("Models", "models", body)


def _model_section(page: Page, row: Any, part: Any, figure: Any) -> None:
    """One model, folded: a <details> whose summary is the model's name and its counts (the page stays short
    however many models the store holds; a click on the name opens it)."""
    anchor = f"model-{int(row.model_id)}"
    bits = [f"{row.format}", f"{int(row.n_layers or 0)} conv layers", f"{count(row.n_filters or 0)} filters"]
    if getattr(row, "task", None):
        bits.insert(0, str(row.task))
    page.raw(Html(f'<details class="model" id="{anchor}"><summary><span class="model-name">{esc(row.model)}</span> '
                  f'<span class="muted">{esc(" · ".join(bits))}</span></summary>'
                  f'<a class="back" href="#models">↑ models</a>'))
    more = []
    if getattr(row, "producer", None):
        more.append(f"producer {row.producer}")
    if row.n_parameters:
        more.append(f"{count(row.n_parameters)} parameters")
    if more:
        page.paragraph(" · ".join(more), cls="muted")
    page.paragraph(str(row.source), cls="muted source")
    if figure is None:
        page.raw(Html('<div class="note">' + esc("No conv layer of this model has 2-D kernels with stored metrics: "
                                                  "nothing to plot.") + "</div>"))
    else:
        page.figure(figure, alt=f"{row.model}: sparsity, normalised variance entropy and orthogonality against depth",
                    caption="Layer metrics against depth; dashed: the verdict thresholds named in each panel's title.")
        bad = part[[len(v) > 0 for v in part["verdicts"]]]
        if len(bad):
            rows = [[name_cell(r.layer), cell_number(r.conv_depth, 0),
                     "×".join(str(int(x)) for x in r.shape), cell_number(r.sparsity, 3),
                     cell_number(r.variance_entropy_norm, 3), badges(r.verdicts)]
                    for r in bad.itertuples()]
            page.raw(Html(table_html(["layer", "depth", "weight shape", "sparsity", "ve_norm", "verdicts"], rows,
                                     numeric=(1, 3, 4), name_col=0)))
    page.raw(Html("</details>"))


def model_figure_job(part: Any) -> tuple[Any, Any, str] | None:
    """(drawing function, its data, cache key) of one model's metrics figure from its catalog rows; None when
    no layer has 2-D kernels with stored metrics."""
    if not _has_2d_metrics(part):
        return None
    columns = part[[c for c in _FIGURE_COLUMNS if c in part.columns]].copy()  # what a drawing process needs
    return _model_figure, columns, columns.to_json(orient="split", default_handler=str)


def _is_2d(kernel: Any) -> bool:
    try:
        return parse_kernel_key(str(kernel), what="kernel").ndim == 2
    except UsageError:
        return False


def _has_2d_metrics(part: Any) -> bool:
    if not len(part):
        return False
    is_2d = [_is_2d(k) for k in part["kernel"]]
    return any(is_2d) and not part.loc[is_2d, "sparsity"].isna().all()


def _model_figure(part: Any) -> Any:
    """The metrics-against-depth figure of one model from its catalog rows (None without 2-D metrics)."""
    from ..plotting import metrics_vs_depth

    return metrics_vs_depth(part) if _has_2d_metrics(part) else None
