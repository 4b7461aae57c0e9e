"""What every section of the zoo report reads: one frozen :class:`ReportContext`, built once per report.

The context holds the :class:`~filterdb.analysis.Study` (every number the page shows), the catalog snapshot
(:mod:`._catalog`: counts, models, layers for the summary and the model sections), the figure drawer and the
options. A section is a function ``section(ctx) -> Section``; see ``_sections.SECTIONS``. Nothing here
computes: the sections lay out what the study found.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._html import Page

if TYPE_CHECKING:
    from ..analysis.study import Study
    from ._catalog import Catalog
    from ._drawing import Drawer

__all__ = ["DPI", "MODEL_DPI", "Figure", "ReportContext", "ReportOptions", "Section"]

DPI = 125  # main figures: sharper than the page's 100 px per inch, for high-density screens and full size
MODEL_DPI = 100  # one figure per model: lighter


@dataclass(frozen=True)
class Section:
    """One part of the page: its entry in the table of contents, the figures it saves, its findings."""

    title: str  # the entry in the table of contents
    anchor: str  # the id of the section's heading (the contents link to it)
    body: Page  # the fragment: headings, text, tables and figures (drawn or still being drawn)
    files: tuple[tuple[str, Any], ...] = ()  # (PNG name, pending figure): saved to figures_dir
    summary: Mapping[str, Any] = field(default_factory=dict)  # key findings, merged into ZooReport.summary


@dataclass(frozen=True)
class ReportOptions:
    """The caller's choices that shape the page (see :func:`~filterdb.report.build_zoo_report`)."""

    title: str | None = None
    model_sections: bool = True
    max_model_sections: int = 300


@dataclass(frozen=True)
class Figure:
    """A main figure drawn twice: for a desktop page (``wide``) and for a phone (``narrow``); both pending."""

    wide: Any
    narrow: Any

    def result(self) -> Any:  # the phone version is the small one saved with figures_dir
        return self.narrow.result()


@dataclass(frozen=True)
class ReportContext:
    """Everything a section reads."""

    study: Study
    catalog: Catalog
    options: ReportOptions
    drawer: Drawer
    step: Callable[[str], None]  # progress: a short text before each step
    model_figures: Mapping[int, Any]  # model_id -> its metrics figure, being drawn

    @property
    def shape(self) -> str:
        return str(self.study.selection.shape_key)

    @property
    def first(self) -> str | None:
        """The first axis that is not ``depth``: it groups the ridge plots, eigen-images and degeneration."""
        return next((a.axis for a in self.study.axes if a.axis != "depth"), None)

    @property
    def model_names(self) -> dict[int, str]:
        models = self.catalog.models
        return {int(m): str(n) for m, n in zip(models["model_id"], models["model"])}

    @property
    def shown_models(self) -> Any:
        """The models that get a section of their own."""
        return shown_models(self.catalog.models, self.options)

    def draw(self, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Figure:
        """Submit a main figure to the drawer, for a desktop and for a phone; returns the pending pair."""
        from ..plotting import PAGE_WIDTH, WIDE_WIDTH

        pending = []
        for width in (WIDE_WIDTH, PAGE_WIDTH):
            # the results drawn are plain data: their pickle names the figure (a store unchanged since the last
            # report gives the same numbers, so the same figure)
            options = {**kwargs, "width": width}
            key = hashlib.sha256(pickle.dumps((make.__qualname__, args, sorted(options.items())))).hexdigest()
            pending.append(self.drawer.submit(make, *args, dpi=DPI, key=key, **options))
        return Figure(*pending)

    def draw_fixed(self, make: Callable[..., Any], *args: Any) -> Any:
        """Submit a figure drawn at one width (its function has none to choose); returns the pending figure."""
        key = hashlib.sha256(pickle.dumps((make.__qualname__, args))).hexdigest()
        return self.drawer.submit(make, *args, dpi=DPI, key=key)


def shown_models(models: Any, options: ReportOptions) -> Any:
    return models.head(options.max_model_sections if options.model_sections else 0)
