"""A tiny builder of self-contained HTML pages: inline CSS, figures as base64 PNG, no script, no network.

A report page must open anywhere (an e-mail attachment, a CI artefact, a laptop on a plane) and look the
same in five years: everything it shows is inside the one file. Text is escaped on the way in; only
fragments built here are trusted as HTML.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .._format import number

__all__ = ["Html", "Page", "Rendered", "badges", "cell_number", "esc", "figure_png", "name_cell", "render_figure", "write_html"]

CSS_PX_PER_INCH = 100  # a figure is shown at most this many CSS pixels per inch of its width
NARROW_PX = 700  # windows up to this width get the phone drawing of a figure drawn twice

# Light and dark follow the reader's system setting. Figures keep their own light paper in both, framed
# as cards, so that one PNG serves both themes.
_CSS = """
:root{--bg:#f6f8fa;--card:#ffffff;--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--accent:#0072b2;
--sparse:#e69f00;--low-diversity:#cc79a7;--random:#d55e00;--non-finite:#8c8c8c;--ok:#009e73}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#151b23;--ink:#e6edf3;--muted:#9198a1;
--line:#3d444d;--accent:#56b4e9}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",
"DejaVu Sans",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
header{border-bottom:1px solid var(--line);margin-bottom:8px;padding-bottom:12px}
header .kicker{color:var(--muted);font-size:13px;letter-spacing:.04em;text-transform:uppercase}
h1{font-size:26px;margin:4px 0 2px;overflow-wrap:anywhere}
h2{font-size:19px;margin:34px 0 6px;padding-top:4px}
h3{font-size:15px;margin:18px 0 4px;overflow-wrap:anywhere}
p{margin:6px 0}
.muted{color:var(--muted)}
.howto{border-left:3px solid var(--accent);background:var(--card);padding:8px 12px;margin:8px 0 12px;
font-size:14px;color:var(--muted);border-radius:0 6px 6px 0}
.howto b{color:var(--ink)}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px;margin:14px 0}
.fact{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.fact .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.fact .v{font-size:18px;font-weight:600;overflow-wrap:anywhere}
.fact .v small{font-size:13px;font-weight:400;color:var(--muted)}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12.5px;font-weight:600;
color:#fff;white-space:nowrap;margin:1px 2px 1px 0}
.b-sparse{background:var(--sparse);color:#1f2328}.b-low-diversity{background:var(--low-diversity);color:#1f2328}
.b-random{background:var(--random)}.b-non-finite{background:var(--non-finite)}.b-ok{background:var(--ok)}
.note{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--sparse);
border-radius:6px;padding:8px 12px;margin:8px 0}
figure{margin:12px 0 18px;background:#ffffff;border:1px solid var(--line);border-radius:8px;padding:10px;
color:#1f2328}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
figure a.zoom{display:block;cursor:zoom-in}
figure a.close{display:none}
figcaption{color:#59636e;font-size:13px;margin-top:6px;overflow-wrap:break-word}
figure .note{background:#f6f8fa;border-color:#d1d9e0;font-size:13px}
figure:target{position:fixed;inset:0;z-index:10;margin:0;border-radius:0;overflow:auto;padding:40px 12px 12px}
figure:target img{max-width:none;width:auto}
figure:target a.zoom{cursor:default}
figure:target a.close{display:block;position:fixed;top:8px;right:16px;font-weight:600;color:#0072b2}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,500px),1fr));gap:0 16px}
.source{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px;overflow-wrap:anywhere}
.tablewrap{overflow-x:auto;border:1px solid var(--line);border-radius:8px;background:var(--card);margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);background:var(--card);
position:sticky;top:0}
tr:last-child td{border-bottom:none}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px;word-break:break-all;
min-width:180px}
tr.degenerated td.name{font-weight:600}
details{margin:10px 0}summary{cursor:pointer;color:var(--accent);font-weight:600}
p,.note,.howto{overflow-wrap:break-word}
@media (max-width:600px){main{padding:16px 10px 32px}figure{padding:6px}
table.stack thead{display:none}table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
table.stack tr{border-bottom:1px solid var(--line);padding:4px 0}table.stack td{border:none;padding:2px 10px;
text-align:left}table.stack td.num{text-align:left}
table.stack td[data-label]::before{content:attr(data-label) ": ";color:var(--muted);font-size:12px;
text-transform:uppercase;letter-spacing:.03em}table.stack td.name{min-width:0}}
footer{margin-top:40px;border-top:1px solid var(--line);padding-top:10px;color:var(--muted);font-size:13px}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
"""


class Html(str):
    """A string that is already HTML: passed through without escaping."""


def esc(value: Any) -> Html:
    """Escape text (or pass an :class:`Html` fragment through)."""
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


@dataclass(frozen=True)
class Rendered:
    """A figure drawn to PNG, with what the page needs to show it at a readable size."""

    png: bytes
    width_in: float  # figure width in inches
    dpi: float
    smallest_pt: float  # the smallest text of the figure, in points

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def text_px(self) -> float:
        """The smallest text's height in pixels of the PNG."""
        return self.smallest_pt * self.dpi / 72

    def result(self) -> Rendered:
        """Itself: a drawn figure answers like one still being drawn."""
        return self


def render_figure(fig: Any, *, dpi: float = 110) -> Rendered:
    """Draw a matplotlib Figure to PNG (fast zlib level) and release it."""
    from ..plotting import smallest_text_pt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, facecolor=fig.get_facecolor(),
                    pil_kwargs={"compress_level": 3})
        smallest = smallest_text_pt(fig)
        width = float(fig.get_figwidth())
    finally:
        fig.clear()  # the Figure is not tracked by pyplot; clearing frees its artists now
    return Rendered(buffer.getvalue(), width, float(dpi), smallest)


def figure_png(fig: Any, *, dpi: int = 110) -> str:
    """Render a matplotlib Figure to a ``data:image/png;base64,...`` URI and release the figure."""
    return render_figure(fig, dpi=dpi).uri


@dataclass
class Page:
    """An HTML document assembled from escaped parts.

    Examples
    --------
    >>> page = Page("demo")
    >>> page.heading("Results").paragraph("1 < 2")
    Page(title='demo', ...)
    >>> "<p>1 &lt; 2</p>" in page.render()
    True
    """

    title: str
    parts: list[Any] = field(default_factory=list, repr=False)  # text, or figures still being drawn

    _figures: int = field(default=0, repr=False)

    def __repr__(self) -> str:
        return f"Page(title={self.title!r}, ...)"

    def raw(self, fragment: Html) -> Page:
        """Append a trusted fragment."""
        if not isinstance(fragment, Html):
            raise TypeError("Page.raw takes an Html fragment; wrap text with esc()")
        self.parts.append(fragment)
        return self

    def heading(self, text: Any, level: int = 2, *, anchor: str | None = None) -> Page:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{esc(text)}</h{level}>")
        return self

    def paragraph(self, text: Any, *, cls: str | None = None) -> Page:
        klass = f' class="{esc(cls)}"' if cls else ""
        self.parts.append(f"<p{klass}>{esc(text)}</p>")
        return self

    def howto(self, text: Any) -> Page:
        """The short "how to read this" box of a section."""
        self.parts.append(f'<div class="howto"><b>How to read this.</b> {esc(text)}</div>')
        return self

    def figure(self, fig: Any, *, alt: str, caption: Any = None, dpi: int = 110, notes: Sequence[Any] = ()) -> Page:
        """Embed a figure as a PNG: a matplotlib Figure (drawn now and released), a :class:`Rendered`, or
        anything with ``result()`` giving one (drawn elsewhere; waited for when the page is rendered).

        The image is shown at most 100 CSS px per inch of the figure and shrinks with the page; a click
        opens it at full size (CSS only: the figure is the link's ``:target``). ``notes`` are shown inside
        the figure's box, under the caption. The image carries ``data-text-px``, the height of its smallest
        text in image pixels, so that a test can check the text size at the displayed size.
        """
        if not isinstance(fig, Rendered) and not hasattr(fig, "result") and not hasattr(fig, "wide"):
            fig = render_figure(fig, dpi=dpi)
        self._figures += 1
        ident = f"fig-{self._figures}"
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption is not None else ""
        cap += "".join(f'<div class="note">{esc(n)}</div>' for n in notes)
        self.parts.append(_PendingFigure(fig, ident, esc(alt), Html(cap)))
        return self

    def table(self, header: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
              name_col: int | None = None, row_classes: Sequence[str] | None = None) -> Page:
        """A table; cells are escaped unless they are :class:`Html`; ``numeric`` columns align right."""
        self.parts.append(table_html(header, rows, numeric=numeric, name_col=name_col, row_classes=row_classes))
        return self

    def extend(self, fragment: Page) -> Page:
        """Append every part of another page (a section's fragment), numbering its figures after this page's."""
        for part in fragment.parts:
            if isinstance(part, _PendingFigure):
                self._figures += 1
                part = _PendingFigure(part.fig, f"fig-{self._figures}", part.alt, part.caption)
            self.parts.append(part)
        return self

    def render(self, *, failed_figure_note: bool = False) -> str:
        """The document. ``failed_figure_note``: a figure whose drawing raised becomes a note instead of the
        error propagating."""
        body = "\n".join(_part_html(p, failed_figure_note) for p in self.parts)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta name=\"color-scheme\" content=\"light dark\">\n"
            # No request may leave the page: images are data: URIs, there is no script.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">\n"
            f"<title>{esc(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
        )


def _part_html(part: Any, tolerant: bool) -> str:
    if not tolerant or not isinstance(part, _PendingFigure):
        return str(part)
    try:
        return str(part)
    except Exception as e:  # noqa: BLE001 - the caller asked for a page without the figures that failed
        return f'<div class="note failed">This figure could not be drawn: {esc(type(e).__name__)}: {esc(e)}</div>'


class _PendingFigure:
    """A figure's HTML, its image resolved when the page is rendered (it may be drawn in another process).

    A figure drawn twice (an object with ``wide`` and ``narrow``, see ``report._context.Figure``) becomes a
    ``<picture>``: phones (at most ``NARROW_PX`` wide) load the narrow drawing, whose 10 pt text stays 10 px
    at the phone's width; wider windows the wide one (up to 960 px)."""

    def __init__(self, fig: Any, ident: str, alt: Html, caption: Html) -> None:
        self.fig, self.ident, self.alt, self.caption = fig, ident, alt, caption

    def __str__(self) -> str:
        wide = getattr(self.fig, "wide", self.fig)
        done: Rendered = wide if isinstance(wide, Rendered) else wide.result()
        css_w = round(done.width_in * CSS_PX_PER_INCH)
        image = (f'<img src="{done.uri}" alt="{self.alt}" width="{css_w}" data-text-px="{done.text_px:.1f}">')
        narrow = getattr(self.fig, "narrow", None)
        if narrow is not None:
            small: Rendered = narrow.result()
            image = (f'<picture><source media="(max-width: {NARROW_PX}px)" srcset="{small.uri}">{image}</picture>')
        return (f'<figure id="{self.ident}"><span id="{self.ident}-at"></span><a class="zoom" href="#{self.ident}" '
                f'title="open full size">{image}</a><a class="close" href="#{self.ident}-at">close ×</a>'
                f"{self.caption}</figure>")


def table_html(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
               name_col: int | None = None, row_classes: Sequence[str] | None = None, stack: bool = True) -> Html:
    """A table fragment (see :meth:`Page.table`). ``stack``: on narrow screens each row becomes a block of
    "column: value" lines instead of a table that scrolls sideways."""
    numeric_set = set(numeric)
    labels = [esc(h) for h in header]
    out = ['<div class="tablewrap"><table class="stack"><thead><tr>' if stack else
           '<div class="tablewrap"><table><thead><tr>']
    out += [f"<th>{h}</th>" for h in labels]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        klass = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{klass}>")
        for j, cell in enumerate(row):
            cls = "num" if j in numeric_set else ("name" if j == name_col else "")
            label = f' data-label="{labels[j]}"' if stack and j < len(labels) else ""
            out.append(f'<td class="{cls}"{label}>{esc(cell)}</td>' if cls else f"<td{label}>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return Html("".join(out))


def cell_number(value: Any, decimals: int = 3) -> str:
    """A measured value in a table cell: fixed decimals (a column lines up), a dash when missing."""
    return number(value, decimals=decimals, missing="–")


def badges(verdicts: Sequence[str]) -> Html:
    """A layer's verdicts as coloured badges; "ok" without any."""
    return Html("".join(f'<span class="badge b-{esc(v)}">{esc(v)}</span>' for v in verdicts)) if len(verdicts) \
        else Html("ok")


def display_name(name: str) -> str:
    """The shown name of a layer: the one rule of filterdb._names (the conv's own op out of a fused name)."""
    from .._names import display_name as rule

    return rule(name)


def name_cell(name: str) -> Html:
    """A layer name for a table cell: the shown name, with the full name as its tooltip when they differ."""
    shown = display_name(name)
    return Html(f'<span title="{esc(name)}">{esc(shown)}</span>' if shown != name else esc(name))


def write_html(path: str | os.PathLike[str], text: str) -> Path:
    """Write a page atomically (:mod:`filterdb._atomic`): a reader of ``path`` sees the old page or the new
    one, never half a page. Returns the path."""
    return atomic_write_text(path, text)
