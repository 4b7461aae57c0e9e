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
    def show(value: Any) -> str:  # noqa: PLR0911 - one branch per JSON type
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return number(value)
        if isinstance(value, float):
            return number(int(value)) if value.is_integer() and abs(value) >= 1 else number(value, digits=3)
        if isinstance(value, dict):
            items = list(value.items())
            named = bool(items) and items[0][0] in ("group", "axis", "model") and isinstance(items[0][1], str)
            head = f"{items[0][1]}: " if named else ""  # a record of a group: "faces: n models 9, …"
            rest = items[1:] if named else items
            return head + ", ".join(f"{_name(k)} {show(v)}" for k, v in rest if v is not None)
        if isinstance(value, (list, tuple)):
            return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(show(v) for v in value)
        return "–" if value is None else str(value)

    return " · ".join(f"{_name(k)} {show(v)}" for k, v in dict(numbers).items())


def _name(key: Any) -> str:
    return str(key).replace("_", " ")


def findings_section(ctx: ReportContext) -> Section:
    """The study's findings (each sentence quotes its numbers; all of them in a folded table); the axes side by
    side; the failed parts as notes."""
    from ..plotting import drift_boxplots

    study = ctx.study
    body = Page("")
    body.heading("Findings", anchor="findings")
    if study.errors:
        body.raw(Html('<div class="note failed"><b>Parts of the study failed</b>; the rest of the page is complete. '
                      + "".join(f"<br>{esc(part)}: {esc(message)}" for part, message in study.errors.items())
                      + "</div>"))
    if study.notes:  # what the study left out on the way (layers without a value, parts not computed)
        body.raw(Html('<div class="note"><b>Notes of the study.</b><ul>'
                      + "".join(f"<li>{esc(n)}</li>" for n in study.notes) + "</ul></div>"))
    if study.findings:
        # the sentences quote their key numbers; every number behind each one is in the folded table under them
        body.raw(Html('<ol class="findings">' + "".join(f'<li class="finding">{esc(f.text)}</li>'
                                                       for f in study.findings) + "</ol>"))
        rows = [[f"{i}", f.kind, Html(f'<span class="numbers">{esc(numbers_text(f.numbers))}</span>')]
                for i, f in enumerate(study.findings, 1)]
        body.raw(Html("<details><summary>The numbers behind each finding</summary>"
                      + table_html(["#", "rule", "numbers"], rows, numeric=(0,)) + "</details>"))
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
