"""The report of a whole store ("zoo report"): one self-contained HTML page with the study of its filters.

Sections: the store summary; the PCA basis (eigen-images, cumulative explained variance, the 2-D density of
the first two coefficients, ridge plots of the coefficients per group); one drift section per requested
axis and a comparison of the axes; degeneration statistics per group and depth; a table of models linking to
one section per model (its layer metrics against depth, drawn from the catalog: no model file is re-read).

Every number comes from :mod:`filterdb.analysis` over the store; every figure from :mod:`filterdb.plotting`.
The page is assembled from the sections of ``_sections.SECTIONS``, each a function of one
:class:`~filterdb.report._context.ReportContext` built once per report.
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
    from ..store import Store
    from ._context import Section

__all__ = ["ZooReport", "build_zoo_report", "default_axes", "write_zoo_report"]

_EXTRA_CSS = ("<style>a{color:var(--accent)}a.back{font-size:13px;margin-left:8px;font-weight:400}"
              "nav.toc{margin:10px 0 4px;font-size:14px}nav.toc a{margin-right:14px;white-space:nowrap}"
              "section.model{border-top:1px solid var(--line);margin-top:22px}</style>")
_CANDIDATE_AXES = ("task", "visual_category", "training_dataset", "architecture", "format")


@dataclass
class ZooReport:
    """A built report: the page, and the key findings as plain data (for a terminal summary)."""

    html: str
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def default_axes(store: Store, shape: str = "3x3") -> list[str]:
    """The drift axes a report uses when none are asked for: the taxonomy columns whose ``shape`` filters
    fall into at least two groups (task, visual category, training data set, architecture, format; at most
    three of them), then ``depth``."""
    columns = set(store.sql("SELECT * FROM layers LIMIT 0").columns)
    axes: list[str] = []
    for col in _CANDIDATE_AXES:
        if col not in columns or len(axes) >= 3:
            continue
        n = store.sql(f'SELECT count(DISTINCT "{col}") AS n FROM layers WHERE kernel = ? AND "{col}" IS NOT NULL',
                      [shape])["n"].iloc[0]
        if int(n) >= 2:
            axes.append(col)
    return [*axes, "depth"]


def build_zoo_report(store: Store | str | os.PathLike[str], by: Sequence[str] | None = None, *, shape: str = "3x3", where: str | None = None,
                     params: Sequence[Any] | None = None, pca_groups: int = 3, model_sections: bool = True,
                     max_model_sections: int = 300, title: str | None = None,
                     progress: Callable[[str], None] | None = None,
                     figures_dir: str | os.PathLike[str] | None = None, per_model: bool = False,
                     workers: int | None = None, figure_cache: str | os.PathLike[str] | None = "auto") -> ZooReport:
    """Run the study over a store and build its report page (see the module docstring).

    Parameters
    ----------
    store : Store or path
    by : list of str, optional
        Drift axes: ``layers`` columns, ``"depth"`` or SQL expressions (default: :func:`default_axes`).
        The first one that is not ``depth`` also groups the ridge plots, the side-by-side eigen-images and
        the degeneration-per-group figure.
    shape, where, params :
        The filters analysed (kernel shape and a ``layers`` predicate), as for every analysis.
    pca_groups : int
        Besides all filters, the eigen-images of the this many largest groups of the first axis.
    model_sections : bool
        One section per model (metrics against depth); off for very large zoos.
    progress : callable, optional
        Called with a short text before each step.
    figures_dir : path, optional
        Also save the five main figures there as PNGs (eigen-images.png, density.png, drift.png of the
        first axis, ridge.png, degeneration.png), e.g. for a README.
    per_model : bool
        Drift and ridge plots weigh each model of a group equally (the mean of its models' distributions)
        instead of each filter, so that one large model cannot stand for its group.
    workers : int, optional
        Processes that draw the figures while the analyses run (default: one per CPU, up to 4, on Linux;
        0 draws everything in this process).
    figure_cache : path, "auto" or None
        A folder of figures already drawn (PNG files named by a digest of the figure's data and of the
        drawing code): a figure whose numbers did not change since an earlier report is read back instead of
        drawn.
        "auto": ``report-figures`` in filterdb's cache folder (:func:`filterdb._cache.cache_dir`);
        None: draw every figure.
    """
    from .. import __version__
    from ..analysis import group_expression
    from ..store import as_store
    from ._context import ReportOptions, columns_once, open_context
    from ._drawing import Drawer
    from ._sections import SECTIONS

    started = time.perf_counter()
    for name, value in (("pca_groups", pca_groups), ("max_model_sections", max_model_sections)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{name} must be an integer >= 0, got {value!r}")
    store = columns_once(as_store(store))
    axes = list(dict.fromkeys(by)) if by else default_axes(store, shape)
    for axis in axes:  # an unknown column is a user error before any work, not a note in the page
        group_expression(store, axis)
    if figure_cache == "auto":
        from .._cache import cache_dir

        figure_cache = cache_dir() / "report-figures"
    options = ReportOptions(title, pca_groups, model_sections, max_model_sections, per_model)
    folder = Path(figures_dir) if figures_dir is not None else None
    with Drawer(workers, figure_cache) as drawer:
        ctx = open_context(store, axes, shape=shape, where=where, params=params or (), options=options,
                           drawer=drawer, step=progress or (lambda text: None))
        sections = [section(ctx) for section in SECTIONS]
        summary: dict[str, Any] = {"store": str(store.root), "axes": axes, "shape": shape}
        for section in sections:
            summary.update(section.summary)
        files = [(folder / name, pending) for section in sections for name, pending in section.files] \
            if folder is not None else []
        page = _page(title or Path(str(store.root)).name, str(store.root), sections)
        seconds = time.perf_counter() - started
        summary["seconds"] = seconds
        summary["figures"] = [str(path) for path, _ in files]
        page.raw(Html("<footer>" + esc(
            f"filterdb {__version__} · {summary['n_models']} models · built in {seconds:.1f} s · drift: "
            f"70 bins over the analytic bound of the coefficients, component weights η, "
            + ("each model weighted equally" if per_model else "each filter weighted equally"))
            + "<br>After Gavrikov &amp; Keuper, “CNN Filter DB: An Empirical Investigation of Trained "
              "Convolutional Filters”, CVPR 2022.</footer>"))
        html = page.render()  # waits for the figures still being drawn
        if folder is not None and files:
            folder.mkdir(parents=True, exist_ok=True)
        for path, pending in files:
            path.write_bytes(pending.result().png)
    return ZooReport(html, summary)


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


def write_zoo_report(path: str | os.PathLike[str], store: Store | str | os.PathLike[str], **options: Any) -> ZooReport:
    """Build the report (see :func:`build_zoo_report`) and write it atomically to ``path``."""
    report = build_zoo_report(store, **options)
    report.path = write_html(path, report.html)
    return report
