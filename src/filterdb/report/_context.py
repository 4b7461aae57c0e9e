"""What every section of the zoo report reads: one frozen :class:`ReportContext`, built once per report.

The context holds the store, the selection (kernel shape, predicate, drift axes), the figure drawer and
the options, plus the catalog snapshot the sections share (models, layers judged by the current verdict
rule) and the results several sections use (the PCA basis, the drift of each axis), each computed once
on first use. A section is a function ``section(ctx) -> Section``; see ``_sections.SECTIONS``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from ._html import Page

if TYPE_CHECKING:
    from ..analysis import PCAResult
    from ..store import Store
    from ._drawing import Drawer
    from ._drift_section import AxisDrift

__all__ = ["DPI", "ReportContext", "ReportOptions", "Section", "columns_once", "open_context"]

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
    pca_groups: int = 3
    model_sections: bool = True
    max_model_sections: int = 300
    per_model: bool = False


class _ColumnsOnce:
    """The store, with the columns of the ``layers`` view looked up once per report: every analysis asks for
    them, and each catalog query opens a DuckDB connection (tens of milliseconds)."""

    _QUERY = "SELECT * FROM layers LIMIT 0"

    def __init__(self, store: Store) -> None:
        self._store = store
        self._empty: Any = None

    def sql(self, query: str, params: Any = None) -> Any:
        if query == self._QUERY and params is None:
            if self._empty is None:
                self._empty = self._store.sql(query)
            return self._empty.copy()
        return self._store.sql(query, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True)
class ReportContext:
    """Everything a section reads. Built by :func:`open_context`; the cached results are computed on first use."""

    store: Store
    axes: tuple[str, ...]
    shape: str
    where: str | None
    params: tuple[Any, ...]
    options: ReportOptions
    drawer: Drawer
    step: Callable[[str], None]  # progress: a short text before each step
    stats: Any  # StoreStats
    models: Any  # DataFrame: one row per model
    layers: Any  # DataFrame: one row per layer, ``verdicts`` judged by the current rule
    model_figures: Mapping[int, Any]  # model_id -> its metrics figure, being drawn

    @property
    def first(self) -> str | None:
        """The first axis that is not ``depth``: it groups the ridge plots, eigen-images and degeneration."""
        return next((a for a in self.axes if a != "depth"), None)

    @property
    def bound_params(self) -> list[Any] | None:
        return list(self.params) if self.params else None

    @cached_property
    def columns(self) -> frozenset[str]:
        """The columns of the ``layers`` view."""
        return frozenset(self.store.sql("SELECT * FROM layers LIMIT 0").columns)

    @cached_property
    def degenerated(self) -> Any:
        """The layers with at least one verdict."""
        return self.layers[[len(v) > 0 for v in self.layers["verdicts"]]] if len(self.layers) else self.layers

    @cached_property
    def model_names(self) -> dict[int, str]:
        return {int(m): str(n) for m, n in zip(self.models["model_id"], self.models["model"])}

    @property
    def shown_models(self) -> Any:
        """The models that get a section of their own."""
        return _shown(self.models, self.options)

    @cached_property
    def basis(self) -> PCAResult | str:
        """The PCA basis of all selected filters, or why there is none (the text of the AnalysisError)."""
        from ..analysis import AnalysisError, fit_pca

        self.step("PCA basis")
        try:
            return fit_pca(self.store, self.shape, self.where, self.bound_params, sign_rule="u-based")
        except AnalysisError as e:
            return str(e)

    @cached_property
    def drifts(self) -> tuple[list[AxisDrift], dict[str, str]]:
        """(the drift of each axis that has one, axis -> why not) over the basis; empty without a basis."""
        from ..analysis import AnalysisError
        from ._drift_section import axis_drift

        done: list[AxisDrift] = []
        failed: dict[str, str] = {}
        basis = self.basis
        if isinstance(basis, str):
            return done, failed
        for axis in self.axes:
            self.step(f"drift by {axis}")
            try:
                done.append(axis_drift(self.store, axis, self.shape, self.where, self.bound_params, basis=basis,
                                       per_model=self.options.per_model, model_names=self.model_names))
            except AnalysisError as e:
                failed[axis] = str(e)
        return done, failed

    def draw(self, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Submit a main figure to the drawer; returns the pending figure."""
        # the results drawn are plain data: their pickle names the figure (a store unchanged since the last
        # report gives the same numbers, so the same figure)
        key = hashlib.sha256(pickle.dumps((make.__qualname__, args, sorted(kwargs.items())))).hexdigest()
        return self.drawer.submit(make, *args, dpi=DPI, key=key, **kwargs)

    def largest_groups(self, axis: str, n: int) -> list[str]:
        """The ``n`` values of column ``axis`` with the most selected filters (none when there is only one)."""
        if axis not in self.columns:
            return []
        extra = f" AND ({self.where})" if self.where else ""
        frame = self.store.sql(f'SELECT "{axis}" AS g, sum(n_filters) AS n FROM layers WHERE kernel = ? AND "{axis}" '
                               f"IS NOT NULL{extra} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                               [self.shape, *self.params, int(n)])
        return [str(g) for g in frame["g"]] if len(frame) > 1 else []


def columns_once(store: Store) -> Store:
    """``store``, with the columns of the ``layers`` view looked up once (see :class:`_ColumnsOnce`)."""
    return cast("Store", _ColumnsOnce(store))  # a duck-typed Store: every other attribute is the store's own


def open_context(store: Store, axes: Sequence[str], *, shape: str, where: str | None, params: Sequence[Any],
                 options: ReportOptions, drawer: Drawer, step: Callable[[str], None]) -> ReportContext:
    """Read the catalog snapshot and start drawing the per-model figures (the slowest: drawn while the analyses
    run)."""
    from ._model_sections import model_figure_job

    step("store summary")
    stats, models, layers = store.stats(), store.models(), _judged_now(store.layers())
    figures = {}
    for row in _shown(models, options).itertuples():
        job = model_figure_job(layers[layers["model_id"] == row.model_id])
        if job is not None:
            figures[int(row.model_id)] = drawer.submit(job[0], job[1], dpi=MODEL_DPI, key=job[2])
    return ReportContext(store, tuple(axes), shape, where, tuple(params), options, drawer, step, stats, models,
                         layers, figures)


def _shown(models: Any, options: ReportOptions) -> Any:
    return models.head(options.max_model_sections if options.model_sections else 0)


def _judged_now(layers: Any) -> Any:
    """The catalog's layer rows with ``verdicts`` judged by the current rule of ``filterdb check`` from the stored
    metrics (a store keeps the verdicts of the filterdb that ingested it)."""
    from ..check import judge_layers

    layers = layers.copy()
    if len(layers):
        layers["verdicts"] = judge_layers(layers).kinds()
    return layers
