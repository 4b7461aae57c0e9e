"""The first section of the zoo report: what the study found, and the axes side by side.

Each finding is the study's sentence with the numbers behind it (``Finding.numbers``) shown under it; the
rules that produce them are in docs/report.md ("Findings"). Then the figure that compares the grouping axes
(the pairwise drifts of every axis), the ranking of the axes as a table, and a note for every part of the
study that failed. Nothing is computed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._format import number
from ._context import Section
from ._html import Html, Page, cell_number, esc, table_html

if TYPE_CHECKING:
    from ._context import ReportContext

__all__ = ["findings_section", "numbers_text"]


def numbers_text(numbers: Any) -> str:
    """A finding's numbers as one line: "name value · name value"; a list of records (the groups of a ranking)
    as "first value: name value, …" per record; floats to 3 significant digits, True/False as yes/no."""
    def show(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return number(value)
        if isinstance(value, float):
            return number(int(value)) if value.is_integer() and abs(value) >= 1 else number(value, digits=3)
        if isinstance(value, dict):
            items = list(value.items())
            head = f"{items[0][1]}: " if items and isinstance(items[0][1], str) else ""
            rest = items[1:] if head else items
            return head + ", ".join(f"{_name(k)} {show(v)}" for k, v in rest if v is not None)
        if isinstance(value, (list, tuple)):
            return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(show(v) for v in value)
        return "–" if value is None else str(value)

    return " · ".join(f"{_name(k)} {show(v)}" for k, v in dict(numbers).items())


def _name(key: Any) -> str:
    return str(key).replace("_", " ")


def findings_section(ctx: ReportContext) -> Section:
    """The study's findings, each with its numbers; the axes side by side; the failed parts as notes."""
    from ..plotting import drift_boxplots

    study = ctx.study
    body = Page("")
    body.heading("Findings", anchor="findings")
    if study.errors:
        body.raw(Html('<div class="note failed"><b>Parts of the study failed</b>; the rest of the page is complete. '
                      + "".join(f"<br>{esc(part)}: {esc(message)}" for part, message in study.errors.items())
                      + "</div>"))
    if study.findings:
        items = []
        for f in study.findings:
            numbers = numbers_text(f.numbers)
            items.append(f'<li class="finding"><span class="text">{esc(f.text)}</span>'
                         + (f'<span class="numbers">{esc(numbers)}</span>' if numbers else "") + "</li>")
        body.raw(Html('<ol class="findings">' + "".join(items) + "</ol>"))
    else:
        body.paragraph("The study stated no finding (see the notes above).", cls="muted")
    files: list[tuple[str, Any]] = []
    axes = study.axes
    if len(axes) >= 2:
        ctx.step("drift comparison")
        body.heading("The grouping axes side by side", level=3, anchor="drift-axes")
        figure = ctx.draw(drift_boxplots, {a.axis: a.drift for a in axes})
        files.append(("axes.png", figure))
        body.figure(figure, alt="boxplots of the pairwise drift of each axis",
                    caption="Each point is one pair of groups of that axis; boxes span the middle half, the line is "
                            "the median. The axis whose pairs drift most explains most of how the filters differ.")
    if study.axis_ranking:
        rows = [[r.axis, f"{r.n_groups}", cell_number(r.median, 3), cell_number(r.mean, 3),
                 "–" if r.beyond_share is None else f"{r.beyond_share:.0%}"] for r in study.axis_ranking]
        body.raw(table_html(["axis (largest drift first)", "groups", "median drift", "mean drift",
                             "pairs beyond noise"], rows, numeric=(1, 2, 3, 4)))
    summary = {"findings": [f.to_dict() for f in study.findings], "errors": dict(study.errors)}
    return Section("Findings", "findings", body, tuple(files), summary)
