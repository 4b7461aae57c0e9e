"""Model families in HTML: the lineage section of the zoo report, and the fragment ``filterdb lineage --html``
writes (lineage/ computes the families; the HTML is the report's job).

:func:`lineage_html` takes a lineage result (``filterdb.lineage.Lineage``, or the study's ``Families``): any
object with ``families`` (tuples of model names) and ``edges`` (parent, child, relation, score, confidence,
as attributes or mapping keys).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ._context import Section
from ._html import Html, Page, cell_number, esc, render_figure, table_html

if TYPE_CHECKING:
    from ._context import ReportContext

__all__ = ["lineage_html", "lineage_section"]

_HOWTO = ("Models that share weights, found from the convolution weights alone (docs/lineage.md): identical "
          "copies, the same weights in another format or precision, and models derived from one another "
          "(fine-tuned, pruned, re-headed). Arrows point from the likely parent to the child. Related models are "
          "not independent samples: a family inflates its group in the drift matrices above.")
_CAPTION = "{n} families of related models; blue identical, orange same weights, vermillion derived (with its score)."


def _edges(result: Any) -> list[Any]:
    """The edges as objects with attributes (the study keeps them as mappings)."""
    return [SimpleNamespace(**e) if isinstance(e, dict) or hasattr(e, "keys") else e for e in result.edges]


def _drawable(result: Any) -> Any:
    return SimpleNamespace(families=tuple(result.families), edges=tuple(_edges(result)))


def _figure_function() -> Any:
    from ..plotting import lineage_figure

    return lineage_figure


def _edge_table(result: Any) -> Html:
    rows = [[esc(e.parent), esc(e.child), esc(e.relation), cell_number(e.score, 3), cell_number(e.confidence, 2)]
            for e in _edges(result)]
    return table_html(["parent", "child", "relation", "score", "direction confidence"], rows, numeric=(3, 4))


def lineage_html(result: Any, *, theme: str = "light") -> Html:
    """A self-contained HTML fragment: a heading, the families as trees (an inline PNG) and the edge table."""
    families = [f for f in result.families if len(f) > 1]
    page = Page("")
    page.heading("Model families", anchor="lineage")
    page.howto(_HOWTO)
    if not families:
        page.paragraph("No two models share weights.", cls="muted")
    else:
        page.figure(render_figure(_figure_function()(_drawable(result), theme=theme), dpi=110),
                    alt="model families as trees", caption=_CAPTION.format(n=len(families)))
        page.raw(_edge_table(result))
    return Html("\n".join(str(p) for p in page.parts))


def lineage_section(ctx: ReportContext) -> Section:
    """The study's model families (fingerprint candidates confirmed by the full comparison), as trees and an
    edge table."""
    ctx.step("model families")
    result = ctx.study.families
    body = Page("")
    body.heading("Model families", anchor="lineage")
    body.howto(_HOWTO)
    if result is None:
        why = ctx.study.errors.get("families", "Model families were not part of this study.")
        body.raw(Html(f'<div class="note">{esc(why)}</div>'))
        return Section("Families", "lineage", body)
    if result.note:
        body.raw(Html(f'<div class="note">{esc(result.note)}</div>'))
    families = [f for f in result.families if len(f) > 1]
    summary = {"families": [list(f) for f in families]}
    if not families:
        body.paragraph(f"No two of the {result.n_models} models compared share weights.", cls="muted")
        return Section("Families", "lineage", body, summary=summary)
    figure = ctx.draw_fixed(_figure_function(), _drawable(result))
    body.figure(figure, alt="model families as trees", caption=_CAPTION.format(n=len(families)))
    body.raw(_edge_table(result))
    return Section("Families", "lineage", body, (("lineage.png", figure),), summary)
