"""The zoo report's pruning headroom: the study's :class:`~filterdb.analysis.PruneHeadroom` as a headline for the
whole zoo, a table per group and a table per model (docs/report.md, "Pruning headroom"). Nothing is computed
here: the numbers are the ones ``filterdb ingest`` kept per model, summed by the study."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._format import count
from ._context import Section
from ._html import Html, Page, esc, table_html

if TYPE_CHECKING:
    from ._context import ReportContext

__all__ = ["prune_section", "headline"]

_HOWTO = ("From the weights alone, measured when each model was ingested (filterdb prune, docs/prune.md). No "
          "measured risk: conv weights in channels whose every weight is near zero (≤ 1 % of the layer's largest), "
          "with the inputs of the next layer that read them; removing them changes no output where their bias is "
          "zero too. Low diversity: the weights more in channels that nearly repeat a kept one (cosine ≥ 0.95). "
          "Shares are of each model's conv weights; a group's share is of its measured models' conv weights "
          "together. A model without numbers says why: \"not measured\" is never a 0. filterdb prune MODEL "
          "--target 0.5 gives a model's per-layer plan, filterdb check MODEL --html its card with the ratios.")


def headline(free_share: float | None, redundant_share: float | None) -> str:
    """The card's sentence (report._model_card.prune_headline) for a share pair; "not measured" without one."""
    if free_share is None or redundant_share is None:
        return "not measured"
    return (f"{100 * free_share:.1f} % of conv parameters removable at no measured risk; "
            f"{100 * redundant_share:.1f} % more at low diversity")


def _percent(share: float | None, status: str = "measured") -> str:
    if status != "measured":
        return status
    return "–" if share is None else f"{100 * share:.1f} %"


def prune_section(ctx: ReportContext) -> Section:
    """The zoo's headline, the groups of the first axis, then every model (the ones not measured say why)."""
    ctx.step("pruning headroom")
    body = Page("")
    body.heading("Pruning headroom", anchor="prune")
    body.howto(_HOWTO)
    result = getattr(ctx.study, "prune", None)
    if result is None:
        why = ctx.study.errors.get("prune", "The pruning headroom was not part of this study.")
        body.raw(Html(f'<div class="note">{esc(why)}</div>'))
        return Section("Pruning", "prune", body)
    if result.note:
        body.raw(Html(f'<div class="note">{esc(result.note)}</div>'))
    total = result.total
    summary: dict[str, Any] = {"prune": {"free_share": total.free_share, "redundant_share": total.redundant_share,
                                         "n_measured": total.n_models, "not_measured": list(result.not_measured)}}
    if total.n_models:
        body.raw(Html(f'<p class="prune-headline"><b>{esc(headline(total.free_share, total.redundant_share))}</b> '
                      f'<span class="muted">({total.n_models} measured model{"s" if total.n_models != 1 else ""}, '
                      f"{count(total.params_total)} conv parameters)</span></p>"))
    else:
        body.paragraph("No model of the store has measured pruning headroom.", cls="muted")
    if result.groups:
        rows = [[esc(g.group), f"{g.n_models}", f"{g.n_not_measured}", count(g.params_total),
                 _percent(g.free_share), _percent(g.redundant_share)] for g in result.groups]
        body.raw(Html(f"<h3>Per {esc(result.by)}</h3>" + table_html(
            [str(result.by), "measured models", "not measured", "conv parameters", "no measured risk",
             "more at low diversity"], rows, numeric=(1, 2, 3, 4, 5))))
    shown = {int(m) for m in ctx.shown_models["model_id"]}
    rows = []
    for m in result.models:
        name = Html(f'<a href="#model-{m.model_id}">{esc(m.model)}</a>') if m.model_id in shown else esc(m.model)
        rows.append([name, m.status, "–" if m.params_total is None else count(m.params_total),
                     _percent(m.free_share, m.status), _percent(m.redundant_share, m.status), esc(m.note or "")])
    table = table_html(["model", "status", "conv parameters", "no measured risk", "more at low diversity", "note"],
                       rows, numeric=(2, 3, 4))
    body.raw(Html(f'<details{" open" if len(rows) <= 40 else ""}><summary>per model, {len(rows)} '
                  f"model{'s' if len(rows) != 1 else ''}</summary>{table}</details>"))
    return Section("Pruning", "prune", body, summary=summary)
