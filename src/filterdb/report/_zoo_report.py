"""The report of a whole store ("zoo report"): one self-contained HTML page with the study of its filters.

Sections: the store summary; the PCA basis (eigen-images, cumulative explained variance, the 2-D density of
the first two coefficients, ridge plots of the coefficients per group); one drift section per requested
axis and a comparison of the axes; degeneration statistics per group and depth; a table of models linking to
one section per model (its layer metrics against depth, drawn from the catalog: no model file is re-read).

Every number comes from :mod:`filterdb.analysis` over the store; every figure from :mod:`filterdb.plotting`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._html import Html, Page, esc, table_html, write_html

__all__ = ["ZooReport", "build_zoo_report", "default_axes", "write_zoo_report"]

_EXTRA_CSS = ("<style>a{color:var(--accent)}a.back{font-size:13px;margin-left:8px;font-weight:400}"
              "nav.toc{margin:10px 0 4px;font-size:14px}nav.toc a{margin-right:14px;white-space:nowrap}"
              "section.model{border-top:1px solid var(--line);margin-top:22px}</style>")
_DPI = 125  # main figures: sharper than the page's 100 px per inch, for high-density screens and full size
_MODEL_DPI = 100  # one figure per model: lighter
_CANDIDATE_AXES = ("task", "visual_category", "training_dataset", "architecture", "format")


@dataclass
class ZooReport:
    """A built report: the page, and the key findings as plain data (for a terminal summary)."""

    html: str
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def default_axes(store: Any, shape: str = "3x3") -> list[str]:
    """The drift axes a report uses when none are asked for: the taxonomy columns whose ``shape`` filters
    fall into at least two groups (task, visual category, training data set, architecture, format; at most
    three of them), then ``depth``."""
    columns = set(store.sql("SELECT * FROM layers LIMIT 0").columns)
    axes = []
    for col in _CANDIDATE_AXES:
        if col not in columns or len(axes) >= 3:
            continue
        n = store.sql(f'SELECT count(DISTINCT "{col}") AS n FROM layers WHERE kernel = ? AND "{col}" IS NOT NULL',
                      [shape])["n"].iloc[0]
        if int(n) >= 2:
            axes.append(col)
    return [*axes, "depth"]


def build_zoo_report(store: Any, by: Sequence[str] | None = None, *, shape: str = "3x3", where: str | None = None,
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
        "auto": ``report-figures`` in filterdb's cache folder (:func:`filterdb.sources.cache_dir`);
        None: draw every figure.
    """
    from .. import __version__
    from ..analysis.pca import _as_store
    from ._drawing import Drawer

    started = time.perf_counter()
    store = _ColumnsOnce(_as_store(store))
    axes = list(dict.fromkeys(by)) if by else default_axes(store, shape)
    from ..analysis._selection import _group_expression

    for axis in axes:  # an unknown column is a user error before any work, not a note in the page
        _group_expression(store, axis)
    if figure_cache == "auto":
        from ..sources import cache_dir

        figure_cache = cache_dir() / "report-figures"
    with Drawer(workers, figure_cache) as drawer:
        study = _Study(store, axes, shape, where, params, per_model, drawer, progress or (lambda text: None),
                       figures_dir)
        page = study.run(title, pca_groups, model_sections, max_model_sections)
        seconds = time.perf_counter() - started
        study.summary["seconds"] = seconds
        study.summary["figures"] = [str(p) for p in study.saved]
        page.raw(Html("<footer>" + esc(
            f"filterdb {__version__} · {study.summary['n_models']} models · built in {seconds:.1f} s · drift: "
            f"70 bins over the analytic bound of the coefficients, component weights η, "
            + ("each model weighted equally" if per_model else "each filter weighted equally"))
            + "<br>After Gavrikov &amp; Keuper, “CNN Filter DB: An Empirical Investigation of Trained "
              "Convolutional Filters”, CVPR 2022.</footer>"))
        html = page.render()  # waits for the figures still being drawn
        for path, pending in study.to_save:
            path.write_bytes(pending.result().png)
    return ZooReport(html, study.summary)


class _ColumnsOnce:
    """The store, with the columns of the ``layers`` view looked up once per report: every analysis asks for
    them, and each catalog query opens a DuckDB connection (tens of milliseconds)."""

    _QUERY = "SELECT * FROM layers LIMIT 0"

    def __init__(self, store: Any) -> None:
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


class _Study:
    """The report's steps, in page order; figures go to the drawer as soon as their numbers exist."""

    def __init__(self, store: Any, axes: list[str], shape: str, where: str | None, params: Sequence[Any] | None,
                 per_model: bool, drawer: Any, step: Callable[[str], None],
                 figures_dir: str | os.PathLike[str] | None) -> None:
        self.store, self.axes, self.shape, self.where, self.params = store, axes, shape, where, params
        self.per_model, self.drawer, self.step = per_model, drawer, step
        self.first = next((a for a in axes if a != "depth"), None)
        self.folder = Path(figures_dir) if figures_dir is not None else None
        self.saved: list[Path] = []
        self.to_save: list[tuple[Path, Any]] = []
        self.summary: dict[str, Any] = {"store": str(store.root), "axes": axes, "shape": shape}

    def draw(self, make: Callable[..., Any], *args: Any, png: str | None = None, **kwargs: Any) -> Any:
        import hashlib
        import pickle

        # the results drawn are plain data: their pickle names the figure (a store unchanged since the last
        # report gives the same numbers, so the same figure)
        key = hashlib.sha256(pickle.dumps((make.__qualname__, args, sorted(kwargs.items())))).hexdigest()
        pending = self.drawer.submit(make, *args, dpi=_DPI, key=key, **kwargs)
        if self.folder is not None and png is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.to_save.append((self.folder / png, pending))
            self.saved.append(self.folder / png)
        return pending

    def run(self, title: str | None, pca_groups: int, model_sections: bool, max_model_sections: int) -> Page:
        store, shape = self.store, self.shape
        root = Path(str(store.root))
        name = title or root.name
        page = Page(f"{name} · filterdb zoo report")
        self.step("store summary")
        stats, models, layers = store.stats(), store.models(), _judged_now(store.layers())
        shown = models.head(max_model_sections) if model_sections else models.head(0)
        model_figures = {}
        for row in shown.itertuples():  # the slowest figures go first: drawn while the analyses run
            part = layers[layers["model_id"] == row.model_id]
            if _has_2d_metrics(part):
                columns = _figure_columns(part)
                key = columns.to_json(orient="split", default_handler=str)
                model_figures[int(row.model_id)] = self.drawer.submit(_model_figure, columns, dpi=_MODEL_DPI, key=key)
        s = self.summary
        s.update(n_models=int(stats.n_models), n_layers=int(stats.n_layers), n_filters=int(stats.n_filters))
        deg_layers = layers[[len(v) > 0 for v in layers["verdicts"]]] if len(layers) else layers
        s["degenerated_layers"] = [{"model": r.model, "layer": r.layer, "verdicts": list(r.verdicts)}
                                   for r in deg_layers.itertuples()]
        page.raw(Html(_EXTRA_CSS))
        n_shape = int(layers.loc[layers["kernel"] == shape, "n_filters"].sum()) if len(layers) else 0
        s["n_filters_shape"] = n_shape
        page.raw(Html(f'<header><div class="kicker">filterdb · zoo report</div><h1>{esc(name)}</h1>'
                      f'<p class="muted source">{esc(str(root))}</p></header>'))
        toc = [("summary", "Summary"), ("pca", "PCA basis"), ("drift", "Drift"), ("degeneration", "Degeneration"),
               ("lineage", "Families"), ("models", "Models")]
        page.raw(Html('<nav class="toc">' + " ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in toc) + "</nav>"))
        _summary_section(page, stats, models, layers, shape, n_shape)
        names = {int(m): str(n) for m, n in zip(models["model_id"], models["model"])}
        basis = self._pca_section(page, pca_groups)
        self._drift_sections(page, basis, names)
        self._degeneration_section(page, models, deg_layers)
        self._lineage_section(page)
        self.step("models")
        _models_section(page, models, layers, model_sections)
        for k, row in enumerate(shown.itertuples()):
            self.step(f"model {k + 1}/{len(shown)}: {row.model}")
            _model_section(page, row, layers[layers["model_id"] == row.model_id], model_figures.get(int(row.model_id)))
        if model_sections and len(models) > len(shown):
            page.paragraph(f"{len(models) - len(shown)} more models have no section (max_model_sections).",
                           cls="muted")
        return page

    # -------------------------------------------------------------------------------------------- PCA
    def _pca_section(self, page: Page, pca_groups: int) -> Any:
        from ..analysis import AnalysisError, fit_pca
        from ..analysis._density import coefficient_density
        from ..plotting._zoo import coefficient_density_map, eigen_images
        from ._drift_section import largest_model

        store, shape, where, params, first = self.store, self.shape, self.where, self.params, self.first
        self.step("PCA basis")
        page.heading("PCA basis of the filters (eigen-images)", anchor="pca")
        page.howto(f"Every {shape} filter is scaled by its largest |weight| and decomposed on the principal "
                   "components of all filters. Each tile is one component (an \"eigen-image\"), numbered 1, 2, … "
                   "as on the axis of the cumulative curve, blue negative, red positive, white zero, with its share "
                   "η of the variance under it; all tiles share one colour scale. Few components carrying most of "
                   "the variance (a steep cumulative curve) means the filters are low-dimensional: trained filters "
                   "are smooth and repeat a few patterns (the first component is typically a blob, the next ones "
                   "edges). Rows are different selections of filters: similar tiles mean the selections share one "
                   "basis. Click a figure to open it at full size.")
        try:
            basis = fit_pca(store, shape, where, params, sign_rule="u-based")
        except AnalysisError as e:
            page.raw(Html(f'<div class="note">{esc(e)}</div>'))
            return None
        bases: list[tuple[str, Any]] = [("all filters", basis)]
        notes: list[str] = []
        if first is not None and pca_groups > 0 and _is_column(store, first):
            for group in _largest_groups(store, first, shape, where, params, pca_groups):
                w = f'({where}) AND ("{first}" = ?)' if where else f'("{first}" = ?)'
                try:
                    group_basis = fit_pca(store, shape, w, [*(params or []), group], sign_rule="u-based")
                    bases.append((f"{first} = {group}", group_basis))
                except AnalysisError as e:
                    notes.append(str(e))
        self.summary["explained_variance_ratio"] = [float(v) for v in basis.explained_variance_ratio]
        top, share = largest_model(store, shape, where, params)
        self.summary["largest_model"] = {"model": top, "share": share}
        caption = (f"{basis.n_filters:,} {shape} filters from {basis.n_models} models; the first "
                   f"{_k_for(basis.cumulative, 0.9)} components explain 90 % of their variance.")
        if share > 0.5:
            notes.insert(0, f"One model dominates: {top} holds {share:.0%} of these filters, so the basis of all "
                            "filters is mostly its basis (compare the rows below it).")
        page.figure(self.draw(eigen_images, bases, png="eigen-images.png"),
                    alt="eigen-images: the principal components of the filters as tiles, one row per selection, "
                        "and the cumulative explained variance", caption=caption, notes=notes)
        self.n_pca = basis.n_filters
        if basis.d >= 2:
            self.step("2-D coefficient density")
            page.heading("Density of the first two coefficients", level=3, anchor="density")
            page.howto("Each filter is one point at its first two PCA coefficients; the colour counts the filters "
                       "per bin on a log scale, so that rare filters at the rim stay visible next to the dense "
                       "centre. Trained filters fill a compact, often lopsided cloud; a spike or a separate blob is "
                       "a group of identical filters (e.g. all-zero filters of sparse layers sit at one point).")
            density = coefficient_density(store, 0, 1, shape, where, params, basis=basis)
            page.figure(self.draw(coefficient_density_map, density, png="density.png"),
                        alt="2-D density of the first two PCA coefficients",
                        caption=f"{density.n_filters:,} filters, {density.counts.shape[0]}² bins over the bound "
                                f"±{basis.bound():.2f} of the coefficients.")
        return basis

    # -------------------------------------------------------------------------------------------- drift
    def _drift_sections(self, page: Page, basis: Any, names: dict[int, str]) -> None:
        from ..analysis import AnalysisError
        from ..plotting._zoo import drift_boxplots, drift_heatmap, ridge_plot
        from ._drift_section import AxisDrift, axis_drift

        page.heading("Drift between groups of filters", anchor="drift")
        weighting = ("each model of a group counts equally (the mean of its models' distributions)"
                     if self.per_model else "each filter counts equally, so a large model weighs more than a "
                     "small one (filterdb report --per-model weighs models equally)")
        page.howto("Drift D measures how different the filter distributions of two groups are: for each PCA "
                   "coefficient, the symmetric Kullback–Leibler divergence between the two groups' histograms, "
                   "weighted by the coefficient's share η of the variance (Gavrikov & Keuper 2022); here "
                   f"{weighting}. 0 means the same distribution; larger is more different. In the heatmaps, rows "
                   "and columns are the groups, sorted by their mean drift to the others, so that outlying groups "
                   "gather at the bottom right (depth deciles keep their order); every heatmap uses the same colour "
                   "scale and the same PCA basis (of all filters above), so colours compare across axes. The "
                   "diagonal shows each group's noise floor: the drift between two random halves of its own "
                   "layers, what sampling alone gives. A pair differs beyond noise only where its drift exceeds "
                   "the larger floor of its two groups; hatched cells do not. Small groups, and groups of one or "
                   "two models, have high floors.")
        if basis is None:
            return
        done: list[AxisDrift] = []
        failed: dict[str, str] = {}
        for axis in self.axes:
            self.step(f"drift by {axis}")
            try:
                done.append(axis_drift(self.store, axis, self.shape, self.where, self.params, basis=basis,
                                       per_model=self.per_model, model_names=names))
            except AnalysisError as e:
                failed[axis] = str(e)
        vmax = max([float(np.nanmax([d.result.matrix.max(), *d.floors.values(), 0.0])) for d in done] + [1e-9])
        self.summary["drift"] = {}
        self.summary["drift_scale_max"] = vmax
        for axis in self.axes:
            page.heading(f"Drift by {axis}", level=3, anchor=f"drift-{_slug(axis)}")
            if axis in failed:
                page.raw(Html(f'<div class="note">{esc(failed[axis])}</div>'))
                continue
            d = next(x for x in done if x.axis == axis)
            self._drift_axis(page, d, vmax, drift_heatmap, first=d is done[0])
        results = [d.result for d in done]
        if len(results) >= 2:
            self.step("drift comparison")
            page.heading("Drift of the axes side by side", level=3, anchor="drift-axes")
            page.figure(self.draw(drift_boxplots, results), alt="boxplots of the pairwise drift of each axis",
                        caption="Each point is one pair of groups of that axis; boxes span the middle half, the "
                                "line is the median.")
        ridge = next((d for d in done if d.axis != "depth"), done[0] if done else None)
        if ridge is not None:
            self.step("ridge plots")
            page.heading(f"Coefficient distributions by {ridge.axis} (ridge plots)", level=3, anchor="ridge")
            page.howto("One panel per PCA coefficient (numbered as the eigen-images, with its share η of the "
                       "variance), one ridge per group: the histogram of that coefficient over the group's filters, "
                       "in the very bins the drift compares (no smoothing), each ridge scaled to its own highest "
                       "bin. Where the ridges of a panel differ in shape or position, the groups use that "
                       "component differently — that is what the drift adds up, weighted by η.")
            page.figure(self.draw(ridge_plot, ridge.result, png="ridge.png"),
                        alt=f"ridge plots of the coefficients by {ridge.axis}",
                        caption=f"Groups from top to bottom in the order of the drift matrix by {ridge.axis}.")

    def _drift_axis(self, page: Page, d: Any, vmax: float, heatmap: Any, first: bool) -> None:
        result = d.result
        s = result.summary()
        shifted = d.shifted()
        floors = {g: (None if np.isnan(v) else v) for g, v in d.floors.items()}
        self.summary["drift"][d.axis] = {
            "n_groups": s["n_groups"], "mean": s["mean"], "median": s["median"], "max": s["max"],
            "max_pair": s["max_pair"], "most_shifted": shifted[:3], "noise_floor": floors,
            "left_out": d.left_out, "dominant": {g: {"model": m, "share": v} for g, (m, v) in d.dominant.items()}}
        n_pca = getattr(self, "n_pca", d.n_filters)
        missing = n_pca - d.n_filters
        count = (f"all {d.n_filters:,} {self.shape} filters of the PCA above" if not missing else
                 f"{d.n_filters:,} of the {n_pca:,} {self.shape} filters of the PCA above ({missing:,} are in the "
                 "groups left out below" + (" or have no value" if result.notes else "") + ")")
        above = (", ".join(f"{g} {v:.2f}" for g, v in shifted[:3]) if shifted else
                 "none: every group's mean drift is within its noise floor")
        caption = (f"{s['n_groups']} groups, {count}. Pairwise drift median {s['median']:.2f}, max {s['max']:.2f} "
                   f"between {s['max_pair'][0]} and {s['max_pair'][1]}. Most shifted groups beyond their noise "
                   f"floor (mean drift to the others): {above}.")
        notes = list(d.left_out) + [str(n) for n in result.notes]
        for group, (model, share) in d.dominant.items():
            notes.append(f"One model dominates {group}: {model} holds {share:.0%} of its filters."
                         + ("" if self.per_model else " filterdb report --per-model weighs each model equally."))
        page.figure(self.draw(heatmap, result, vmax=vmax, noise_floor=d.floors, png="drift.png" if first else None),
                    alt=f"drift matrix by {d.axis}", caption=caption, notes=notes)
        sizes = result.sizes
        means = d.group_means()
        dominant = {g: f"{m} {v:.0%}" for g, (m, v) in d.dominant.items()}
        rows = [[g, f"{nf:,}", f"{nm}", dominant.get(g, "–"), _fmt(floors.get(g), 2), _fmt(means.get(g), 2)]
                for g, nf, nm in zip(result.groups, sizes["n_filters"], sizes["n_models"])]
        page.raw(Html(f"<details><summary>The numbers per {esc(d.axis)}</summary>" + table_html(
            [d.axis, "filters", "models", "largest model", "noise floor", "mean drift"], rows,
            numeric=(1, 2, 4, 5)) + "</details>"))

    # -------------------------------------------------------------------------------------------- degeneration
    def _degeneration_section(self, page: Page, models: Any, deg_layers: Any) -> None:
        from ..analysis import AnalysisError, degeneration
        from ..plotting._zoo import degeneration_shares

        self.step("degeneration")
        page.heading("Degenerated layers", anchor="degeneration")
        page.howto("Layer verdicts of filterdb check, over the whole zoo: sparse (many filters near zero: wasted "
                   "capacity or a pruned model), low-diversity (the filters repeat each other: typical of deep "
                   "layers of over-parameterised networks) and random (the layer looks untrained). Bars give the "
                   "share of layers with each verdict, per group (number of layers in brackets) and per depth "
                   "decile (0 = input side, 1 = output side). A verdict is a prompt to look, not a proof of a bug.")
        try:
            deg = degeneration(self.store, self.first, self.where, self.params)
        except AnalysisError as e:
            page.raw(Html(f'<div class="note">{esc(e)}</div>'))
        else:
            self.summary["degeneration"] = deg.overall
            page.figure(self.draw(degeneration_shares, deg, png="degeneration.png"),
                        alt="shares of degenerated layers per group and per depth decile",
                        caption=f"{int(deg.overall['n_layers'])} layers with 2-D kernels; "
                                f"{deg.overall['any_layers']:.1%} of them have a verdict, holding "
                                f"{deg.overall['any_filters']:.1%} of the filters.", notes=list(deg.notes))
            if deg.per_group is not None:
                _deg_table(page, deg.per_group, self.first)
        if len(deg_layers):
            ids = {int(m) for m in models["model_id"]}
            rows = []
            for r in deg_layers.head(200).itertuples():
                link = Html(f'<a href="#model-{int(r.model_id)}">{esc(r.model)}</a>') if int(r.model_id) in ids \
                    else esc(r.model)
                rows.append([link, _name_cell(r.layer), _fmt(r.conv_depth_norm, 2), f"{int(r.n_filters):,}",
                             _fmt(r.sparsity), _fmt(r.variance_entropy_norm), _badges(r.verdicts)])
            page.raw(Html(f"<details><summary>{len(deg_layers)} degenerated layer(s)"
                          + (" (first 200)" if len(deg_layers) > 200 else "") + "</summary>"
                          + table_html(["model", "layer", "depth", "filters", "sparsity", "ve_norm", "verdicts"],
                                       rows, numeric=(2, 3, 4, 5), name_col=1) + "</details>"))


    def _lineage_section(self, page: Page) -> None:
        from ..lineage import LineageError, lineage, lineage_figure

        self.step("model families")
        page.heading("Model families", anchor="lineage")
        page.howto("Models that share weights, found from the convolution weights alone (docs/lineage.md): "
                   "identical copies, the same weights in another format or precision, and models derived from "
                   "one another (fine-tuned, pruned, re-headed). Arrows point from the likely parent to the child. "
                   "Related models are not independent samples: a family inflates its group in the drift "
                   "matrices above.")
        try:
            result = lineage(self.store)
        except LineageError as e:
            page.raw(Html(f'<div class="note">{esc(e)}</div>'))
            return
        families = [f for f in result.families if len(f) > 1]
        self.summary["families"] = [list(f) for f in families]
        if not families:
            page.paragraph("No two models of the store share weights.", cls="muted")
            return
        page.figure(self.draw(lineage_figure, result, png="lineage.png"), alt="model families as trees",
                    caption=f"{len(families)} families of related models; blue identical, orange same weights, "
                            "vermillion derived (with its score).")
        rows = [[esc(e.parent), esc(e.child), esc(e.relation), _fmt(e.score), _fmt(e.confidence, 2)]
                for e in result.edges]
        page.raw(table_html(["parent", "child", "relation", "score", "direction confidence"], rows,
                            numeric=(3, 4)))


def write_zoo_report(path: str | os.PathLike[str], store: Any, **options: Any) -> ZooReport:
    """Build the report (see :func:`build_zoo_report`) and write it atomically to ``path``."""
    report = build_zoo_report(store, **options)
    report.path = write_html(path, report.html)
    return report


# ------------------------------------------------------------------------------------------------ sections
def _summary_section(page: Page, stats: Any, models: Any, layers: Any, shape: str, n_shape: int) -> None:
    n_deg = int(sum(len(v) > 0 for v in layers["verdicts"])) if len(layers) else 0
    n2d = int((layers["spatial_ndim"] == 2).sum()) if len(layers) else 0
    formats = models["format"].value_counts().to_dict() if len(models) else {}
    facts = [
        ("models", f"{stats.n_models:,}", ", ".join(f"{k} {v}" for k, v in formats.items())),
        ("conv layers", f"{stats.n_layers:,}", f"{n2d:,} with 2-D kernels"),
        ("filters", f"{stats.n_filters:,}", "all kernel shapes"),
        (f"{shape} filters", f"{n_shape:,}", "analysed below"),
        ("degenerated layers", f"{n_deg:,}", f"of {n2d:,} 2-D layers"),
        ("store size", _size(stats.total_bytes), f"{stats.bytes_per_filter:.1f} bytes per filter"
         if stats.n_filters else ""),
    ]
    cells = "".join(f'<div class="fact"><div class="k">{esc(k)}</div><div class="v">{esc(v)}'
                    f'{" <small>" + esc(sub) + "</small>" if sub else ""}</div></div>' for k, v, sub in facts)
    page.heading("Summary", anchor="summary")
    page.raw(Html(f'<div class="facts">{cells}</div>'))
    shapes = stats.shapes
    if len(shapes):
        page.raw(Html("<details><summary>Filters per kernel shape</summary>" + table_html(
            ["kernel", "models", "layers", "filters"],
            [[r.kernel, f"{int(r.n_models):,}", f"{int(r.n_layers):,}", f"{int(r.n_filters):,}"]
             for r in shapes.itertuples()], numeric=(1, 2, 3)) + "</details>"))


def _deg_table(page: Page, frame: Any, axis: str) -> None:
    rows = [[str(r[axis]), f"{int(r['n_models'])}", f"{int(r['n_layers'])}", f"{int(r['n_filters']):,}",
             f"{r['sparse_layers']:.1%}", f"{r['low-diversity_layers']:.1%}", f"{r['random_layers']:.1%}",
             f"{r['any_layers']:.1%}", f"{r['any_filters']:.1%}"] for _, r in frame.iterrows()]
    page.raw(Html("<details><summary>The numbers per " + esc(axis) + "</summary>" + table_html(
        [axis, "models", "layers", "filters", "sparse", "low-div.", "random", "any (layers)", "any (filters)"], rows,
        numeric=tuple(range(1, 9))) + "</details>"))


def _models_section(page: Page, models: Any, layers: Any, with_links: bool) -> None:
    page.heading("Models", anchor="models")
    page.howto("One row per model in the store. Degenerated layers are counted per verdict; follow a name to the "
               "model's section with its layer metrics against depth (the same view as filterdb check --html).")
    rows, classes = [], []
    for r in models.itertuples():
        part = layers[layers["model_id"] == r.model_id]
        verdicts = [v for vs in part["verdicts"] for v in vs]
        counts = {k: verdicts.count(k) for k in ("sparse", "low-diversity", "random", "non-finite")}
        badges = Html("".join(f'<span class="badge b-{k}">{k} {n}</span>' for k, n in counts.items() if n)) \
            if verdicts else Html('<span class="badge b-ok">ok</span>')
        name = Html(f'<a href="#model-{int(r.model_id)}">{esc(r.model)}</a>') if with_links else esc(r.model)
        rows.append([name, getattr(r, "task", None) or "–", r.format or "–", f"{int(r.n_layers or 0)}",
                     f"{int(r.n_filters or 0):,}", badges])
        classes.append("degenerated" if verdicts else "")
    page.table(["model", "task", "format", "conv layers", "filters", "verdicts"], rows, numeric=(3, 4), name_col=0,
               row_classes=classes)


def _model_section(page: Page, row: Any, part: Any, figure: Any) -> None:
    anchor = f"model-{int(row.model_id)}"
    page.raw(Html(f'<section class="model" id="{anchor}"><h3>{esc(row.model)}'
                  f'<a class="back" href="#models">↑ models</a></h3>'))
    bits = [f"{row.format}", f"{int(row.n_layers or 0)} conv layers", f"{int(row.n_filters or 0):,} filters"]
    if getattr(row, "task", None):
        bits.insert(0, str(row.task))
    if getattr(row, "producer", None):
        bits.append(f"producer {row.producer}")
    if row.n_parameters:
        bits.append(f"{int(row.n_parameters):,} parameters")
    page.paragraph(" · ".join(bits), cls="muted")
    page.paragraph(str(row.source), cls="muted source")
    if figure is None:
        page.raw(Html('<div class="note">' + esc("No conv layer of this model has 2-D kernels with stored metrics: "
                                                  "nothing to plot.") + "</div>"))
    else:
        page.figure(figure, alt=f"{row.model}: sparsity, normalised variance entropy and orthogonality against depth",
                    caption="Layer metrics against depth; dashed: the verdict thresholds named in each panel's title.")
        bad = part[[len(v) > 0 for v in part["verdicts"]]]
        if len(bad):
            rows = [[_name_cell(r.layer), _fmt(r.conv_depth, 0), "×".join(str(int(x)) for x in r.shape),
                     _fmt(r.sparsity), _fmt(r.variance_entropy_norm), _badges(r.verdicts)] for r in bad.itertuples()]
            page.raw(Html(table_html(["layer", "depth", "weight shape", "sparsity", "ve_norm", "verdicts"], rows,
                                     numeric=(1, 3, 4), name_col=0)))
    page.raw(Html("</section>"))


_FIGURE_COLUMNS = ("layer", "kernel", "conv_depth", "n_filters", "sparsity", "variance_entropy_norm",
                   "variance_entropy_clean_norm", "orthogonality", "neighbour_corr", "kind", "n_nonfinite")


def _figure_columns(part: Any) -> Any:
    """The catalog columns the metrics figure needs (sent to a drawing process)."""
    return part[[c for c in _FIGURE_COLUMNS if c in part.columns]].copy()


def _has_2d_metrics(part: Any) -> bool:
    if not len(part):
        return False
    is_2d = np.array(["x" in str(k) and len(str(k).split("x")) == 2 for k in part["kernel"]])
    return bool(is_2d.any()) and not part.loc[is_2d, "sparsity"].isna().all()


def _model_figure(part: Any) -> Any:
    """The metrics-against-depth figure of one model from its catalog rows (None without 2-D metrics)."""
    from ..plotting import metrics_vs_depth

    return metrics_vs_depth(part) if _has_2d_metrics(part) else None


def _judged_now(layers: Any) -> Any:
    """The catalog's layer rows with ``verdicts`` judged by the current rule of ``filterdb check`` from the stored
    metrics (a store keeps the verdicts of the filterdb that ingested it)."""
    from ..check import judge_layers

    layers = layers.copy()
    if len(layers):
        layers["verdicts"] = judge_layers(layers).kinds()
    return layers


# ------------------------------------------------------------------------------------------------ helpers
def _is_column(store: Any, name: str) -> bool:
    return name in set(store.sql("SELECT * FROM layers LIMIT 0").columns)


def _largest_groups(store: Any, axis: str, shape: str, where: str | None, params: Sequence[Any] | None,
                    n: int) -> list[str]:
    if not _is_column(store, axis):
        return []
    extra = f" AND ({where})" if where else ""
    frame = store.sql(f'SELECT "{axis}" AS g, sum(n_filters) AS n FROM layers WHERE kernel = ? AND "{axis}" IS NOT '
                      f"NULL{extra} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [shape, *(params or []), int(n)])
    return [str(g) for g in frame["g"]] if len(frame) > 1 else []


def _k_for(cumulative: np.ndarray, share: float) -> int:
    return int(np.searchsorted(np.asarray(cumulative), share - 1e-12) + 1)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "axis"


def _badges(verdicts: Any) -> Html:
    return Html("".join(f'<span class="badge b-{esc(v)}">{esc(v)}</span>' for v in verdicts)) if len(verdicts) \
        else Html("ok")


def _name_cell(name: str) -> Html:
    shown = name.rsplit(";", 1)[-1] if ";" in name else name
    return Html(f'<span title="{esc(name)}">{esc(shown)}</span>' if shown != name else esc(name))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(v):
        return "–"
    return str(int(v)) if digits == 0 else f"{v:.{digits}f}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""
