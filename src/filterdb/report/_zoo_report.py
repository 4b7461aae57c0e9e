"""The report of a whole store ("zoo report"): one self-contained HTML page that lays out a
:class:`~filterdb.analysis.Study`.

Sections: the findings (each with its numbers) and the grouping axes side by side; the store summary; the
PCA basis (eigen-images, cumulative explained variance, the 2-D density of the first two coefficients); one
drift heatmap per axis with its ranking of groups and one caveat box, and the ridge plots; degeneration per
group and depth; model families; a table of models with one folded section per model (its layer metrics
against depth, from the catalog: no model file is re-read).

The page computes nothing: every number comes from the study (``filterdb.analysis.study``), the counts and
per-model rows from the catalog snapshot (:mod:`._catalog`), every figure from :mod:`filterdb.plotting`. A
section that fails becomes a visible note in the page and an entry of :attr:`ZooReport.errors`, never a lost
report. The page is assembled from the sections of ``_sections.SECTIONS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._html import Html, Page, esc, write_html

if TYPE_CHECKING:
    from ..analysis.study import Study
    from ..store import Store
    from ._context import ReportContext, Section

__all__ = ["ZooReport", "build_zoo_report", "write_zoo_report"]

_EXTRA_CSS = ("<style>a{color:var(--accent)}a.back{font-size:13px;font-weight:400}"
              "nav.toc{margin:10px 0 4px;font-size:14px}nav.toc a{margin-right:14px;white-space:nowrap}"
              "details.model{border-top:1px solid var(--line);margin:0;padding:8px 0}"
              "details.model>summary{font-weight:600}details.model>summary .muted{font-weight:400;font-size:13px}"
              "ol.findings{padding-left:22px;margin:10px 0}ol.findings li{margin:0 0 6px}"
              ".numbers{font-variant-numeric:tabular-nums;overflow-wrap:anywhere}"
              ".note ul{margin:4px 0 0;padding-left:20px}.note.failed{border-left-color:var(--random)}</style>")


@dataclass
class ZooReport:
    """A built report: the page, the key findings as plain data (for a terminal summary), and the parts that
    failed (part -> message: the study's failed sections and the page's; empty when all went well)."""

    html: str
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every part of the study and of the page was built."""
        return not self.errors


def build_zoo_report(study: Study, store: Store | str | os.PathLike[str] | None = None, *,
                     model_sections: bool = True, max_model_sections: int = 300, title: str | None = None,
                     progress: Callable[[str], None] | None = None,
                     figures_dir: str | os.PathLike[str] | None = None,
                     workers: int | None = None, figure_cache: str | os.PathLike[str] | None = "auto") -> ZooReport:
    """Lay out ``study`` (:func:`filterdb.analysis.study`) as the report page (see the module docstring).

    Parameters
    ----------
    study : Study
        Every number of the page.
    store : Store or path, optional
        The store of the summary counts and the model sections (default: ``study.store``); read through its
        public methods, once.
    model_sections : bool
        One folded section per model (metrics against depth); off for very large zoos.
    max_model_sections : int
        At most this many model sections (the table lists every model).
    progress : callable, optional
        Called with a short text before each step.
    figures_dir : path, optional
        Also save the main figures there as PNGs (eigen-images.png, density.png, drift.png of the first axis,
        ridge.png, degeneration.png, axes.png with two axes or more), e.g. for a README: the phone drawings.
    workers : int, optional
        Processes that draw the figures (default: one per CPU, up to 4, on Linux; 0 draws in this process).
    figure_cache : path, "auto" or None
        A folder of figures already drawn (PNG files named by a digest of the figure's data and of the
        drawing code): a figure whose numbers did not change since an earlier report is read back instead of
        drawn.
        "auto": ``report-figures`` in filterdb's cache folder (:func:`filterdb._cache.cache_dir`);
        None: draw every figure.
    """
    from .. import __version__
    from ..store import as_store
    from ._catalog import read_catalog
    from ._context import ReportContext, ReportOptions
    from ._drawing import Drawer
    from ._sections import SECTIONS

    started = time.perf_counter()
    if isinstance(max_model_sections, bool) or not isinstance(max_model_sections, int) or max_model_sections < 0:
        raise UsageError(f"max_model_sections must be an integer >= 0, got {max_model_sections!r}")
    if not hasattr(study, "findings") or not hasattr(study, "axes"):
        raise UsageError(f"build_zoo_report takes a filterdb.analysis.Study (filterdb.study(store)), got "
                         f"{type(study).__name__}")
    step = progress or (lambda text: None)
    opened = as_store(study.store if store is None else store)
    if figure_cache == "auto":
        from .._cache import cache_dir

        figure_cache = cache_dir() / "report-figures"
    options = ReportOptions(title, model_sections, max_model_sections)
    folder = Path(figures_dir) if figures_dir is not None else None
    with Drawer(workers, figure_cache) as drawer:  # forks its workers first, before DuckDB starts threads
        step("store summary")
        catalog = read_catalog(opened)
        ctx = ReportContext(study, catalog, options, drawer, step, _model_figures(catalog, options, drawer))
        errors = {f"study:{part}": message for part, message in study.errors.items()}
        sections = [_section_or_note(section, ctx, errors) for section in SECTIONS]
        summary: dict[str, Any] = {"store": catalog.root, "axes": [a.axis for a in study.axes],
                                   "shape": ctx.shape}
        for section in sections:
            summary.update(section.summary)
        files = [(folder / name, pending) for section in sections for name, pending in section.files] \
            if folder is not None else []
        page = _page(title or Path(catalog.root).name, catalog.root, sections)
        seconds = time.perf_counter() - started
        summary["seconds"] = seconds
        summary["figures"] = [str(path) for path, _ in files]
        timings = " · ".join(f"{k} {v:.1f} s" for k, v in study.timings.items())
        page.raw(Html("<footer>" + esc(
            f"filterdb {__version__} · {summary.get('n_models', 0)} models · page built in {seconds:.1f} s"
            + (f" · study: {timings}" if timings else "") + " · drift: "
            f"{study.settings.bins} bins over the analytic bound of the coefficients, component weights η, "
            + ("each model weighted equally" if study.settings.per_model else "each filter weighted equally"))
            + "<br>After Gavrikov &amp; Keuper, “CNN Filter DB: An Empirical Investigation of Trained "
              "Convolutional Filters”, CVPR 2022.</footer>"))
        html = _render(page, errors)  # waits for the figures still being drawn
        if folder is not None and files:
            folder.mkdir(parents=True, exist_ok=True)
        for path, pending in files:
            path.write_bytes(pending.result().png)
    return ZooReport(html, summary, errors=errors)


def _section_or_note(section: Callable[[ReportContext], Section], ctx: ReportContext,
                     errors: dict[str, str]) -> Section:
    """The section, or, when building it fails, a section that says so (the rest of the page is still built)."""
    from ._context import Section

    try:
        return section(ctx)
    except Exception as e:  # noqa: BLE001 - one broken section must not cost the report
        name = section.__name__.removesuffix("_section")
        errors[f"page:{name}"] = f"{type(e).__name__}: {e}"
        body = Page("")
        body.heading(name.capitalize(), anchor=name)
        body.raw(Html(f'<div class="note failed"><b>This section could not be built.</b> {esc(type(e).__name__)}: '
                      f"{esc(e)}</div>"))
        return Section(name.capitalize(), name, body)


def _render(page: Page, errors: dict[str, str]) -> str:
    """The page's HTML; a figure that fails to draw costs its figure, not the page (the page is rendered again
    without pending figures that failed, each replaced by a note)."""
    try:
        return page.render()
    except Exception as e:  # noqa: BLE001 - a drawing process failed: drop the broken figures, keep the page
        errors["page:figures"] = f"{type(e).__name__}: {e}"
        return page.render(failed_figure_note=True)


def _model_figures(catalog: Any, options: Any, drawer: Any) -> dict[int, Any]:
    """Start drawing the per-model figures (the bulk of the figures) before the other sections are laid out."""
    from ._context import MODEL_DPI, shown_models
    from ._model_sections import model_figure_job

    figures = {}
    for row in shown_models(catalog.models, options).itertuples():
        job = model_figure_job(catalog.layers_of(row.model_id))
        if job is not None:
            figures[int(row.model_id)] = drawer.submit(job[0], job[1], dpi=MODEL_DPI, key=job[2])
    return figures


def _page(name: str, root: str, sections: Sequence[Section]) -> Page:
    """The page: header, table of contents (one entry per section), then the sections in order."""
    page = Page(f"{name} · filterdb zoo report")
    page.raw(Html(_EXTRA_CSS))
    page.raw(Html(f'<header><div class="kicker">filterdb · zoo report</div><h1>{esc(name)}</h1>'
                  f'<p class="muted source">{esc(root)}</p></header>'))
    page.raw(Html('<nav class="toc">' + " ".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
                  + "</nav>"))
    for section in sections:
        page.extend(section.body)
    return page


def write_zoo_report(path: str | os.PathLike[str], study: Study, store: Store | str | os.PathLike[str] | None = None,
                     **options: Any) -> ZooReport:
    """Build the report of ``study`` (see :func:`build_zoo_report`) and write it atomically to ``path``, also when
    parts failed (they are notes in the page and entries of ``ZooReport.errors``)."""
    report = build_zoo_report(study, store, **options)
    report.path = write_html(path, report.html)
    return report
