"""Model families in HTML: the lineage section of the zoo report, and the fragment ``filterdb lineage --html``
writes (lineage/ computes the families; the HTML is the report's job).

:func:`lineage_html` takes a lineage result (``filterdb.lineage.Lineage``, or the study's ``Families``): any
object with ``families`` (tuples of model names) and ``edges`` (parent, child, relation, score, confidence,
as attributes or mapping keys).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ._html import Html, Page, cell_number, esc, render_figure, table_html

__all__ = ["lineage_html"]

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
