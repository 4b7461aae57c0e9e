"""The model report card: ``filterdb check MODEL --html card.html`` as one self-contained page.

It assembles what the check computed (:class:`~filterdb.check.ModelReport`) and the figures of
:mod:`filterdb.plotting`; it computes nothing itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._format import size
from ..check import BORDERLINE_SPREADS, VERDICT_KINDS, ModelReport, Verdict
from ..errors import UsageError
from ..types import ModelRecord
from ._html import Html, Page, cell_number, display_name, esc, name_cell, table_html, write_html

if TYPE_CHECKING:
    from ..prune import PrunePlan

__all__ = ["model_card_html", "write_model_card", "prune_headline"]

_ABOUT_KIND = {
    "sparse": "most filters of the layer are (almost) all zero: unused capacity, or a pruned layer.",
    "low-diversity": "the filters repeat a few patterns (low variance entropy): redundant filters, typical of "
                     "deep layers of over-parameterised networks.",
    "random": "the filters are as diverse as random ones (normalised variance entropy above 1): the layer looks "
              "untrained.",
    "non-finite": "some weights are NaN or infinite: a corrupt file, or training diverged.",
}


def model_card_html(record: ModelRecord, report: ModelReport, *, max_degenerated: int = 6,
                    title: str | None = None, plan: PrunePlan | None = None) -> str:
    """The report card of one model as a self-contained HTML page (inline CSS, PNG figures, no script).

    Parameters
    ----------
    record : ModelRecord
        The model as read (its weights feed the filter grids).
    report : ModelReport
        ``check_model(record)``: metrics, verdicts, summary.
    max_degenerated : int
        Draw the filters of at most this many degenerated layers (chosen round-robin over the verdict
        kinds, so that every kind found is shown); the verdict table always lists all of them.
    title : str, optional
        Page heading; default the model file's name.
    plan : PrunePlan, optional
        ``filterdb.prune_plan(record)``: adds its headline (the share of conv weights removable at no measured
        risk, and the share more at low diversity) and its per-layer ratios (docs/prune.md).

    Returns
    -------
    str
        The page. Write it with :func:`write_model_card` (atomic).

    Examples
    --------
    >>> from filterdb import read_model                      # doctest: +SKIP
    >>> from filterdb.check import check_model               # doctest: +SKIP
    >>> record = read_model("model.onnx")                    # doctest: +SKIP
    >>> html = model_card_html(record, check_model(record))  # doctest: +SKIP
    """
    if not isinstance(record, ModelRecord):
        raise TypeError(f"record must be a filterdb.ModelRecord, got {type(record).__name__}")
    if not isinstance(report, ModelReport):
        raise TypeError(f"report must be a filterdb.check.ModelReport, got {type(report).__name__}")
    if [layer.name for layer in record.layers] != list(report.layers["name"]):
        raise UsageError("report does not belong to record: their layers differ; pass check_model(record)")
    if isinstance(max_degenerated, bool) or not isinstance(max_degenerated, int) or max_degenerated < 0:
        raise UsageError(f"max_degenerated must be an integer >= 0, got {max_degenerated!r}")
    from ..prune import PrunePlan

    if plan is not None and not isinstance(plan, PrunePlan):
        raise TypeError(f"plan must be a filterdb.PrunePlan, got {type(plan).__name__}")
    from .. import __version__
    from ..plotting import layer_filters, metrics_vs_depth, rgb_filters

    info, s = report.info, report.summary
    name = title or _model_name(info)
    page = Page(f"{name} · filterdb report card")
    page.raw(Html(f'<header><div class="kicker">filterdb · model report card</div><h1>{esc(name)}</h1>'
                  f'<p class="muted">{esc(info.get("source", ""))}</p>{_verdict_line(s)}'
                  f'{_prune_line(plan)}</header>'))
    _summary_section(page, info, s)
    if not s["has_2d_filters"]:
        page.heading("No 2-D filters", anchor="no-filters")
        page.raw(Html('<div class="note">' + esc(
            "This model has no 2-D filters. The metrics of filterdb (sparsity, variance entropy, orthogonality) "
            "are defined for 2-D convolution filters, so there are no metrics, verdicts or filter figures for "
            "it; its convolution layers are listed below.") + "</div>"))
        _all_layers_section(page, report, open_=True)
        if plan is not None:
            _prune_section(page, plan)
        _footer(page, report, __version__)
        return page.render()

    page.heading("Layer metrics against depth", anchor="metrics")
    page.howto("Each point is one convolution layer with 2-D kernels, placed by its depth in the network "
               "(0 = first conv level). Top: the share of filters that are (almost) all zero. Middle: the "
               "variance entropy of the layer's filters, normalised so that 1 is the entropy of random, "
               "untrained filters; trained layers read below 1, very low values mean redundant filters. "
               "Bottom: orthogonality, how far the filters are from being multiples of each other. Dashed "
               "lines are the verdict thresholds; coloured markers are layers that got a verdict.")
    page.figure(metrics_vs_depth(report), alt="sparsity, normalised variance entropy and orthogonality of "
                "every layer against its depth, with thresholds and degenerated layers marked",
                caption=f"{s['n_conv_layers']} layers with 2-D kernels; depthwise and grouped layers hollow.")

    _verdict_section(page, report)
    if plan is not None:
        _prune_section(page, plan)

    page.heading("Filters", anchor="filters")
    page.howto("Each small tile is one 2-D filter (one kernel slice), blue for negative and red for positive "
               "weights, white for zero; all tiles of a figure share one colour scale, symmetric around "
               "zero, so their colours compare directly. Trained first layers show edges, blobs and colour "
               "opponents; sparse layers show many white tiles; random layers show noise.")
    by_name = {layer.name: layer for layer in record.layers}
    rows2d = [i for i, k in enumerate(report.layers["kernel"]) if len(k) == 2]
    first = record.layers[rows2d[0]]
    page.heading(f"First layer: {display_name(first.name)}", level=3)
    page.figure(layer_filters(first), alt=f"filters of the first layer {first.name}",
                caption=_layer_caption(report, rows2d[0]))
    if first.weight.shape[1] == 3 and first.kind != "transpose":
        page.figure(rgb_filters(first, scale="filter"), alt=f"filters of {first.name} as RGB tiles",
                    caption="The same filters with their three input channels as one colour image each (assuming "
                            "RGB input order), each scaled to its own largest weight: the colours show what a "
                            "filter responds to, not how strong it is.")
    chosen, n_bad = _pick_degenerated(report, max_degenerated, skip=rows2d[0])
    if n_bad:
        page.heading(f"Degenerated layers ({len(chosen)} of {n_bad} shown)", level=3)
        for i in chosen:
            layer = by_name[report.layers["name"].iloc[i]]
            page.figure(layer_filters(layer), alt=f"filters of the degenerated layer {layer.name}",
                        caption=_layer_caption(report, i))
        if len(chosen) < n_bad:
            page.paragraph(f"{n_bad - len(chosen)} more degenerated layer(s) are listed in the verdict table; "
                           "draw any of them with filterdb.plotting.layer_filters.", cls="muted")
    _all_layers_section(page, report, open_=False)
    _footer(page, report, __version__)
    return page.render()


def write_model_card(path: str | os.PathLike[str], record: ModelRecord, report: ModelReport,
                     **options: Any) -> Path:
    """Build the card (see :func:`model_card_html`) and write it atomically to ``path``."""
    return write_html(path, model_card_html(record, report, **options))


# ------------------------------------------------------------------------------------------------ sections
def _summary_section(page: Page, info: dict[str, Any], s: dict[str, Any]) -> None:
    producer = " ".join(str(p) for p in (s.get("producer"), s.get("producer_version")) if p) or "–"
    shapes = ", ".join(f"{k}: {v:,}" for k, v in list(s["filters_by_shape"].items())[:4]) or "–"
    facts = [
        ("format", s.get("format") or "–", f"opset {s['opset']}" if s.get("opset") is not None else ""),
        ("producer", producer, ""),
        ("parameters", f"{int(s.get('n_parameters') or 0):,}",
         f"file {size(info['size_bytes'])}" if info.get("size_bytes") else ""),
        ("conv layers (2-D)", f"{s['n_conv_layers']}", f"of {s['n_layers_total']} convolutions"),
        ("2-D filters", f"{s['n_filters']:,}", shapes),
        ("3×3 share", cell_number(s.get("share_3x3"), 2), "of all 2-D filters"),
    ]
    if s["has_2d_filters"]:
        n_any = s["n_degenerated"]["any"]
        facts.append(("degenerated layers", f"{n_any} of {s['n_conv_layers']}",
                      f"{cell_number(s['share_degenerated']['any'], 2)} of the layers"))
    cells = "".join(f'<div class="fact"><div class="k">{esc(k)}</div><div class="v">{esc(v)}'
                    f'{" <small>" + esc(sub) + "</small>" if sub else ""}</div></div>' for k, v, sub in facts)
    page.heading("Summary", anchor="summary")
    page.raw(Html(f'<div class="facts">{cells}</div>'))
    for note in s.get("notes", []):
        page.raw(Html(f'<div class="note">{esc(note)}</div>'))


def prune_headline(plan: PrunePlan) -> tuple[float, float, str]:
    """(no-risk %, low-diversity %, the sentence) of a plan: the conv weights in near-zero channels, and those
    more in near-duplicate channels, as shares of all conv weights (docs/prune.md)."""
    total = plan.params_total or 1
    free, more = 100 * plan.free_params / total, 100 * plan.redundant_params / total
    return free, more, (f"{free:.1f} % of conv parameters removable at no measured risk; "
                        f"{more:.1f} % more at low diversity")


def _prune_line(plan: PrunePlan | None) -> Html:
    if plan is None:
        return Html("")
    return Html(f'<p class="prune-headline"><span class="badge b-ok">prune</span> {esc(prune_headline(plan)[2])}</p>')


def _prune_section(page: Page, plan: PrunePlan) -> None:
    free, more, sentence = prune_headline(plan)
    page.heading("Pruning headroom", anchor="prune")
    page.howto("From the weights alone (filterdb prune, docs/prune.md). No measured risk: channels whose every "
               "weight is near zero; removing them changes no output where their bias is zero too. Low diversity: "
               "channels that nearly repeat a kept one (cosine at least the plan's duplicate threshold). "
               f"The ratios are the plan at a target of {plan.target:.0%} of conv weights (by {plan.by}); a layer "
               "the plan cannot prune safely stays at 0 with the reason. Apply the plan to a PyTorch module with "
               "filterdb.integrations.torch_pruning.plan_pruner.")
    page.raw(Html(f'<p><b>{esc(sentence)}.</b> The plan at {plan.target:.0%} removes '
                  f'{100 * plan.params_removed / (plan.params_total or 1):.1f} % of the conv parameters.</p>'))
    rows = [[name_cell(lp.name), lp.kind, f"{lp.out_channels:,}", f"{lp.n_remove:,}", f"{100 * lp.ratio:.1f} %",
             f"{lp.n_zero:,}", f"{lp.n_duplicate:,}", lp.reason] for lp in plan.layers]
    table = table_html(["layer", "kind", "channels", "remove", "ratio", "near-zero", "duplicate", "reason"], rows,
                       numeric=(2, 3, 4, 5, 6), name_col=0)
    page.raw(Html(f'<details{" open" if len(rows) <= 40 else ""}><summary>per-layer ratios, {len(rows)} conv '
                  f"layers</summary>{table}</details>"))


def _verdict_line(s: dict[str, Any]) -> Html:
    if not s["has_2d_filters"]:
        return Html('<p><span class="badge b-non-finite">no 2-D filters</span></p>')
    counts = s["n_degenerated"]
    if counts["any"] == 0:
        return Html(f'<p><span class="badge b-ok">healthy</span> no verdict in {s["n_conv_layers"]} layers</p>')
    badges = "".join(f'<span class="badge b-{k}">{esc(k)} {counts[k]}</span>' for k in VERDICT_KINDS if counts[k])
    borderline = s.get("n_borderline", 0)
    return Html(f"<p>{badges} <span class=\"muted\">{counts['any']} of {s['n_conv_layers']} layers "
                "degenerated" + (f", {borderline} of them borderline" if borderline else "") + "</span></p>")


def _verdict_section(page: Page, report: ModelReport) -> None:
    page.heading("Verdicts", anchor="verdicts")
    t = report.thresholds
    page.howto(f"One row per finding: the measured value and the threshold it crossed. sparse: share of "
               f"near-zero filters (every |w| < {t.sparsity_eps:g} × the layer's largest |w|) ≥ {t.sparse:g}; "
               f"low-diversity: normalised variance entropy < {t.low_diversity:g}; random: normalised variance "
               f"entropy > {t.random:g}; entropy verdicts only for layers of at least {t.min_filters} filters. "
               "A verdict is a prompt to look, not a proof of a bug: a pruned model is sparse on purpose.")
    rows: list[list[Any]] = []
    titles: list[str] = []
    frame = report.layers
    for i, verdicts in enumerate(report.verdicts):
        for v in verdicts:
            rows.append([name_cell(frame["name"].iloc[i]), cell_number(frame["conv_depth"].iloc[i], 0),
                         _shape(frame["shape"].iloc[i]),
                         Html(f'<span class="badge b-{esc(v.kind)}" title="{esc(v.message)}">{esc(v.kind)}</span>'
                              + (' <span class="muted">borderline</span>' if v.borderline else "")),
                         _value(v), _threshold(v), _margin(v)])
            titles.append(v.message)
    if not rows:
        page.raw(Html('<p><span class="badge b-ok">healthy</span> No layer got a verdict.</p>'))
        return
    kinds = [k for k in VERDICT_KINDS if any(v.kind == k for layer in report.verdicts for v in layer)]
    page.raw(Html("<p>" + "<br>".join(f'<span class="badge b-{k}">{k}</span> {esc(_ABOUT_KIND[k])}' for k in kinds)
                  + "</p>"))
    page.table(["layer", "depth", "weight shape", "verdict", "value", "threshold", "margin"], rows,
               numeric=(1, 4, 5, 6), name_col=0)
    page.paragraph(f"margin: how far past its threshold the value is, in spreads (standard deviations) of the "
                   f"measurement for random layers of that size; borderline: within {BORDERLINE_SPREADS:g} spread, "
                   "where chance moves a layer across the threshold often (docs/metrics.md).")


def _margin(v: Verdict) -> str:
    """The verdict's margin in spreads ('–' where the spread is unknown: cell_number's missing value)."""
    return cell_number(v.margin if math.isfinite(v.margin) else None, 1)


def _all_layers_section(page: Page, report: ModelReport, *, open_: bool) -> None:
    frame = report.layers
    rows, classes = [], []
    for i, row in enumerate(frame.itertuples(index=False)):
        kinds = report.verdicts[i]
        badges = Html("".join(f'<span class="badge b-{esc(v.kind)}">{esc(v.kind)}</span>' for v in kinds)) \
            if kinds else ("ok" if len(row.kernel) == 2 else "–")
        rows.append([name_cell(row.name), row.kind, _shape(row.shape), cell_number(row.conv_depth, 0), f"{row.n_filters:,}",
                     cell_number(row.sparsity), cell_number(row.variance_entropy_norm), cell_number(row.orthogonality), badges])
        classes.append("degenerated" if kinds else "")
    table = table_html(["layer", "kind", "shape", "depth", "filters", "sparsity", "ve_norm", "orthog.",
                        "verdicts"], rows, numeric=(3, 4, 5, 6, 7), name_col=0, row_classes=classes)
    page.heading("All layers", anchor="layers")
    page.raw(Html(f'<details{" open" if open_ else ""}><summary>{len(rows)} convolution layers, in graph order'
                  f"</summary>{table}</details>"))


def _footer(page: Page, report: ModelReport, version: str) -> None:
    t = report.thresholds
    sha = report.info.get("sha256")
    page.raw(Html(
        "<footer>" + esc(f"filterdb {version} · thresholds: sparse ≥ {t.sparse:g}, low-diversity < "
                         f"{t.low_diversity:g}, random > {t.random:g}, sparsity ε {t.sparsity_eps:g}, entropy "
                         f"verdicts from {t.min_filters} filters")
        + (f"<br>sha256 <code>{esc(sha)}</code>" if sha else "")
        + "<br>Metrics after Gavrikov &amp; Keuper, “CNN Filter DB”, CVPR 2022.</footer>"))


# ------------------------------------------------------------------------------------------------ helpers
def _pick_degenerated(report: ModelReport, limit: int, *, skip: int) -> tuple[list[int], int]:
    """Up to ``limit`` degenerated 2-D layers, round-robin over verdict kinds, in graph order within a kind."""
    by_kind: dict[str, list[int]] = {kind: [] for kind in VERDICT_KINDS}
    bad = []
    for i, (verdicts, kernel) in enumerate(zip(report.verdicts, report.layers["kernel"])):
        if verdicts and len(kernel) == 2:
            bad.append(i)
            if i != skip:
                by_kind[verdicts[0].kind].append(i)
    chosen: list[int] = []
    queues = [q for q in by_kind.values() if q]
    while len(chosen) < limit and any(queues):
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(q.pop(0))
    return sorted(chosen), len(bad)


def _layer_caption(report: ModelReport, i: int) -> str:
    row = report.layers.iloc[i]
    parts = [f"{row['kind']} layer, weight {_shape(row['shape'])}, depth {cell_number(row['conv_depth'], 0)}",
             f"sparsity {cell_number(row['sparsity'])}", f"normalised variance entropy {cell_number(row['variance_entropy_norm'])}",
             f"orthogonality {cell_number(row['orthogonality'])}"]
    verdicts: Sequence[Verdict] = report.verdicts[i]
    if verdicts:
        parts.append("verdict: " + ", ".join(v.kind for v in verdicts))
    return "; ".join(parts) + "."


def _model_name(info: dict[str, Any]) -> str:
    source = str(info.get("path") or info.get("source") or "model")
    return os.path.basename(source.rstrip("/")) or source


def _shape(shape: Any) -> str:
    return "×".join(str(v) for v in shape)


def _value(v: Verdict) -> str:
    return f"{int(v.value)}" if v.kind == "non-finite" else f"{v.value:.3f}"


def _threshold(v: Verdict) -> str:
    op = {"sparse": "≥ ", "low-diversity": "< ", "random": "> ", "non-finite": "> "}[v.kind]
    return f"{op}{v.threshold:g}"


