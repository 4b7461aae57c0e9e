"""The computation behind :func:`filterdb.analysis.study`: one read plan, two passes, then per-axis numbers.

The plan's histogram *unit* is a (model, half, value of every axis) combination, so that one histogram pass
fills every axis at once: an axis's group histograms, its (group, model) histograms for ``per_model`` and its
(group, half) histograms for the noise floors are sums of unit histograms. The first pass fits the basis
(and, through gram slots, the bases of the largest groups of the first axis); the second bins every
coefficient (reading the shards in reverse order, so that it starts on those the first pass left in the
page cache), keeps their extremes (the "u-based" signs, applied afterwards by mirroring the histograms of
the flipped components over the symmetric range ±(√d + ‖μ‖)) and fills the density of coefficients 1 and 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from .._format import count
from ..errors import FilterDBError, UsageError
from ..selection import DEPTH_LABELS, Selection
from ._density import DensityResult
from ._floors import half_names, noise_floors, regroup
from .histograms import HistogramResult
from ._run import run_pass
from ._selection import Plan, _finite_layers
from ._settings import AnalysisError, Execution
from .drift import DriftResult, _order, drift_matrix, group_distributions
from .kernels import PassSpec
from .pca import PCAResult, _result_from, as_store, pca_from_moments
from .study import (AxisRank, AxisStudy, DominantModel, Families, GroupShift, Study, StudySettings)

__all__ = ["CANDIDATE_AXES", "UNKNOWN_VALUES", "default_axes", "run_study"]

CANDIDATE_AXES = ("task", "visual_category", "training_dataset", "architecture", "format")
UNKNOWN_VALUES = frozenset({"unknown", "unspecified", "n/a", "?", ""})  # "not known", never a group of its own


class _Clock:
    """Phase timings, and one progress line per phase when it ends."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, detail: Callable[[], str] | None = None) -> Iterator[None]:
        self.progress(f"{name} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            extra = ""
            if detail is not None:
                try:
                    extra = f" ({detail()})"
                except Exception:  # noqa: BLE001 - a detail of a progress line never hides the real error
                    extra = ""
            self.progress(f"{name}: {seconds:.1f} s{extra}")


def default_axes(store: Any, selection: Selection) -> list[str]:
    """See :func:`filterdb.analysis.study.default_axes` (one catalog query)."""
    store = as_store(store)
    columns = set(store.catalog.layer_columns())
    candidates = [c for c in CANDIDATE_AXES if c in columns]
    axes: list[str] = []
    if candidates:
        frame = store.catalog.selected_layers(selection.replace(by=None, groups=None), axes=candidates,
                                              columns=("layer_id",))
        for i, col in enumerate(candidates):
            if len(axes) < 3 and frame[f"axis_{i}"].dropna().nunique() >= 2:
                axes.append(col)
    return [*axes, "depth"]


def run_study(store: Any, selection: Selection | None, by: Sequence[str] | None, settings: StudySettings,
              execution: Execution, progress: Callable[[str], None]) -> Study:
    """See :func:`filterdb.analysis.study`."""
    store = as_store(store)
    sel = selection if selection is not None else Selection()
    if not isinstance(sel, Selection):
        raise UsageError(f"selection must be a filterdb.selection.Selection, got {type(sel).__name__}")
    if sel.by is not None or sel.groups is not None:
        raise UsageError("study: give the grouping axes as by=[...]; the selection's by and groups must be None")
    if not isinstance(settings, StudySettings):
        raise UsageError(f"settings must be a StudySettings, got {type(settings).__name__}")
    sel.shape_key  # noqa: B018 - a study reads filters: it needs a kernel shape (UsageError)
    if isinstance(by, str):
        by = [by]
    axes = list(dict.fromkeys(by)) if by else default_axes(store, sel)
    # an unknown column: a UsageError, before any work
    depth_axes = {axis: store.catalog.axis_sql(axis)[1] for axis in axes}
    clock = _Clock(progress)
    errors: dict[str, str] = {}
    model_names = {}
    with clock.phase("plan", lambda: f"{count(plan.n_filters)} filters, {len(plan.layers):,} layers, "
                                     f"{plan.n_units:,} histogram units"):
        plan, units, frame = _plan(store, sel, axes)
        model_names = dict(zip(frame["model_id"].astype(int), frame["model"].astype(str)))
    first = next((i for i, a in enumerate(axes) if not depth_axes[a]), None)
    slot_groups = _slot_groups(plan, first, settings.pca_groups)
    basis: PCAResult | None = None
    group_pcas: dict[str, PCAResult] = {}
    density: DensityResult | None = None
    axis_results: list[AxisStudy] = []
    engine = execution.make_engine()
    kernel = execution.kernel_name()
    try:
        with clock.phase("basis pass", lambda: f"{count(plan.n_filters)} filters"):
            unit_slot = None
            if slot_groups:
                lookup = {g: k for k, g in enumerate(slot_groups)}
                unit_slot = np.array([-1 if v is None else lookup.get(str(v), -1) for v in units[f"axis_{first}"]],
                                     np.int64)
            total = run_pass(plan, PassSpec(d=plan.d, kernel=kernel, unit_slot=unit_slot), engine,
                             execution.task_rows)
            basis = _result_from(plan, total, sel)
            group_pcas = _group_bases(total, slot_groups, plan, first, sel)
        with clock.phase("histogram pass", lambda: f"{count(plan.n_filters)} filters, {len(axes)} axes, "
                                                   "noise floors and density"):
            spec = PassSpec(d=plan.d, gram=False, hist=True, minmax=True, density=True,
                            components=basis.components, mean=basis.mean, lo=-basis.bound(), hi=basis.bound(),
                            nbins=settings.bins, kernel=kernel, density_bins=settings.density_bins)
            # backward: it starts on the shards the basis pass read last, still in the page cache (_run.py)
            second = run_pass(plan, spec, engine, execution.task_rows, backward=True)
            basis, hist_units, dens = _signed(basis, second, settings.sign_rule)
            group_pcas = {g: _aligned(p, basis) for g, p in group_pcas.items()}
            edges = np.linspace(-basis.bound(), basis.bound(), settings.density_bins + 1)
            density = DensityResult(0, 1, edges, edges.copy(), dens, int(second.n), basis,
                                    {"store": str(store.root), "shape": plan.shape, "where": sel.where,
                                     "params": list(sel.params) or None,
                                     "non_finite_filters_left_out": int(second.skipped)})
        with clock.phase("drift matrices", lambda: f"{len(axis_results)} of {len(axes)} axes"):
            for i, axis in enumerate(axes):
                try:
                    axis_results.append(_axis(axis, i, depth_axes[axis], units, frame, hist_units,
                                              second.unit_rows, basis, settings, model_names))
                except AnalysisError as e:
                    errors[f"drift:{axis}"] = str(e)
    except FilterDBError as e:  # a damaged shard, a degenerate selection: the other sections still run
        errors["pca" if basis is None else "histograms"] = str(e)
        if basis is None:
            group_pcas = {}
    degeneration = None
    notes = list(plan.notes)
    with clock.phase("degeneration"):
        from .degeneration import NoMetricsError
        from .degeneration import degeneration as degeneration_of

        try:
            degeneration = degeneration_of(store, selection=Selection(None, sel.where, sel.params,
                                                                      None if first is None else axes[first]))
        except NoMetricsError as e:  # a store ingested without metrics: nothing to judge, said as a note
            notes.append(f"degeneration: {e}")
        except FilterDBError as e:
            errors["degeneration"] = str(e)
    families = None
    if settings.lineage:
        with clock.phase("families"):
            try:
                families = _families(store)
            except (FilterDBError, ImportError) as e:
                errors["families"] = str(e)
    prune = None
    with clock.phase("prune headroom"):
        from ._headroom import prune_headroom

        try:
            prune = prune_headroom(store, None if first is None else axes[first])
        except FilterDBError as e:
            errors["prune"] = str(e)
    with clock.phase("findings"):
        from ._findings import caveats_of, findings_of

        ranking = _axis_ranking(axis_results)
        caveats = caveats_of(axis_results, families)
        findings = findings_of(axis_results, ranking, degeneration, families, prune)
    return Study(str(store.root), sel, settings, int(plan.n_filters), basis, group_pcas, tuple(axis_results),
                 ranking, density, degeneration, families, caveats, findings, errors, dict(clock.timings),
                 tuple(notes), prune)


def _plan(store: Any, sel: Selection, axes: Sequence[str]) -> tuple[Plan, Any, Any]:
    """(the plan, one row per unit: model_id, half, axis_0.., unit; the layer rows with their unit)."""
    frame = store.segments(sel, axes=axes, halves=True)
    frame = frame.loc[frame["n_filters"] > 0].rename(columns={"n_nonfinite": "_nonfinite"}).reset_index(drop=True)
    frame, notes = _finite_layers(store, frame, sel)
    axis_cols = [f"axis_{i}" for i in range(len(axes))]
    keys = ["model_id", "half", *axis_cols]
    frame["unit"] = frame.groupby(keys, dropna=False, sort=False).ngroup().astype(np.int64)
    units = frame.drop_duplicates("unit").sort_values("unit")[[*keys, "unit"]].reset_index(drop=True)
    units[axis_cols] = units[axis_cols].astype(object).where(units[axis_cols].notna(), None)
    layers = frame.assign(group=np.int64(0))
    plan = Plan(str(store.root), store.dtype, sel.shape_key, sel.d, layers, ("all",),
                np.zeros(len(units), np.int64), units["model_id"].to_numpy(np.int64), tuple(notes))
    return plan, units, frame


def _slot_groups(plan: Plan, first: int | None, n: int) -> list[str]:
    """The ``n`` groups of the first axis with the most filters (none when the axis has fewer than two)."""
    if first is None or n < 1:
        return []
    col = plan.layers[f"axis_{first}"]
    sizes = plan.layers.loc[col.notna()].groupby(col[col.notna()].astype(str))["n_filters"].sum()
    sizes = sizes[[str(g).strip().lower() not in UNKNOWN_VALUES for g in sizes.index]]
    if len(sizes) < 2:
        return []
    order = sorted(sizes.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    return [str(g) for g, _ in order[:n]]


def _group_bases(total: Any, groups: list[str], plan: Plan, first: int | None,
                 sel: Selection) -> dict[str, PCAResult]:
    out: dict[str, PCAResult] = {}
    if not groups or total.slot_gram is None:
        return out
    col = plan.layers[f"axis_{first}"]
    for k, g in enumerate(groups):
        if k >= len(total.slot_n) or total.slot_n[k] < 2:
            continue
        mean, comps, var, ratio = pca_from_moments(total.slot_gram[k], total.slot_sums[k], int(total.slot_n[k]))
        rows = plan.layers[col == g]
        out[g] = PCAResult(plan.shape, mean, comps, var, ratio, int(total.slot_n[k]), int(len(rows)),
                           int(rows["model_id"].nunique()), {"store": plan.root, "where": sel.where,
                                                              "params": sel.bound_params, "group": g})
    return out


def _signed(basis: PCAResult, second: Any, sign_rule: str) -> tuple[PCAResult, np.ndarray, np.ndarray]:
    """The basis with its final signs, and the unit histograms and density under them.

    "u-based" (scikit-learn 0.24.1): flip component k when its most negative coefficient is larger in magnitude
    than its most positive one. The range ±bound is symmetric, so a flipped component's histogram is its bins
    reversed (to float32 rounding at bin edges), and the density's axis likewise.
    """
    hist = second.hist
    dens = second.density if second.density is not None else np.zeros((1, 1), np.int64)
    if sign_rule != "u-based":
        return basis, hist, dens
    flip = -np.asarray(second.cmin, np.float64) > np.asarray(second.cmax, np.float64)
    if flip.any():
        hist = hist.copy()
        hist[:, flip, :] = hist[:, flip, ::-1]
        if flip[0]:
            dens = dens[::-1, :]
        if len(flip) > 1 and flip[1]:
            dens = dens[:, ::-1]
    comps = basis.components * np.where(flip, -1.0, 1.0)[:, None]
    return replace(basis, components=comps, sign_rule="u-based"), hist, np.ascontiguousarray(dens)


def _aligned(group: PCAResult, basis: PCAResult) -> PCAResult:
    """A group's basis with each component's sign chosen to agree with the same component of ``basis``, so that
    eigen-images side by side compare (a sign is arbitrary)."""
    dots = np.einsum("kd,kd->k", group.components, basis.components)
    signs = np.where(dots < 0, -1.0, 1.0)
    return replace(group, components=group.components * signs[:, None], sign_rule=f"aligned to the basis of all "
                   f"filters ({basis.sign_rule})")


def _axis(axis: str, index: int, is_depth: bool, units: Any, frame: Any, hist_units: np.ndarray,
          unit_rows: np.ndarray, basis: PCAResult, settings: StudySettings,
          model_names: dict[int, str]) -> AxisStudy:
    """One axis from the unit histograms: groups kept and left out, the matrix, the floors, the ranking."""
    col = f"axis_{index}"
    values = units[col].to_numpy(object)
    has = np.array([v is not None for v in values])
    labels = np.array([str(v) if v is not None else "" for v in values], dtype=object)
    rows = np.asarray(unit_rows, np.int64)
    present = list(dict.fromkeys(labels[has & (rows > 0)]))
    order = [g for g in DEPTH_LABELS if g in present] if is_depth else present
    notes: list[str] = []
    missing = frame[col].isna()
    if missing.any():
        notes.append(f"{int(missing.sum())} layer(s) with {count(int(frame.loc[missing, 'n_filters'].sum()))} "
                     f"filters have no value for {axis!r} and are in no group")
    n_filters = {g: int(rows[labels == g].sum()) for g in order}
    n_models = {g: int(len(np.unique(units["model_id"].to_numpy()[(labels == g) & (rows > 0)]))) for g in order}
    kept, unknown, small = [], [], []
    for g in order:
        size = f"{g} ({count(n_filters[g])} filters, {n_models[g]} model{'s' if n_models[g] != 1 else ''})"
        if g.strip().lower() in UNKNOWN_VALUES:
            unknown.append(size)
        elif n_filters[g] < settings.min_filters:
            small.append(size)
        else:
            kept.append(g)
    left_out = []
    if unknown:
        left_out.append(f"Left out: {', '.join(unknown)}, an unknown {axis} rather than a group of its own.")
    if small:
        left_out.append(f"Left out, fewer than {settings.min_filters} filters each (too few to fill a "
                        f"{settings.bins}-bin histogram): " + ", ".join(small) + ".")
    if len(kept) < 2:
        raise AnalysisError(f"drift by {axis!r}: fewer than 2 groups to compare"
                            + (f" ({' '.join(left_out)})" if left_out else f" ({len(order)} group)"))
    w = np.asarray(basis.explained_variance_ratio, np.float64)
    edges = np.linspace(-basis.bound(), basis.bound(), settings.bins + 1)
    model_ids = units["model_id"].to_numpy(np.int64)
    halves = units["half"].to_numpy(np.int64)
    gindex = {g: i for i, g in enumerate(kept)}
    unit_group = np.array([gindex.get(v, -1) for v in labels], np.int64)
    hist = regroup(kept, unit_group, model_ids, hist_units, rows, edges, basis, axis, "bound", tuple(notes))
    matrix = drift_matrix(group_distributions(hist, model_weighting=settings.per_model), w)
    # the halves: group i half h is "group" 2i + h
    half_group = np.where(unit_group >= 0, 2 * unit_group + halves, -1)
    half_hist = regroup(half_names(kept), half_group, model_ids, hist_units, rows, edges, basis, axis, "bound")
    half_matrix = drift_matrix(group_distributions(half_hist, model_weighting=settings.per_model), w)
    per_half = frame.loc[frame[col].notna()].groupby([frame[col].astype(str), "half"]).size().to_dict()
    floors, floor_notes = noise_floors(kept, n_models, half_matrix, half_hist.n_filters, per_half)
    perm = _order(matrix, kept, hist.n_filters, "mean", natural=is_depth)
    groups = tuple(kept[i] for i in perm)
    shown = matrix[np.ix_(perm, perm)]
    result = DriftResult(
        by=axis, groups=groups, matrix=shown,
        sizes={"n_filters": hist.n_filters[perm].tolist(), "n_models": hist.n_models[perm].tolist()},
        component_weights=w, weights="explained", model_weighting=settings.per_model, bins=settings.bins,
        range=(float(edges[0]), float(edges[-1])), range_mode="bound", order="mean", basis=basis, histograms=hist,
        dropped={}, notes=tuple(notes), preset=None, empty_bins="density", fit_on="selection")
    g = len(groups)
    means = shown.sum(axis=1) / (g - 1)
    ranking = tuple(sorted(
        (GroupShift(grp, int(result.sizes["n_models"][i]), int(result.sizes["n_filters"][i]), float(means[i]),
                    floors[grp], floor_notes.get(grp),
                    None if floors[grp] is None else bool(means[i] > floors[grp]))
         for i, grp in enumerate(groups)), key=lambda s: (-s.mean_drift, s.group)))
    beyond = []
    for a in range(g):
        for b in range(a + 1, g):
            fa, fb = floors[groups[a]], floors[groups[b]]
            if fa is not None and fb is not None and shown[a, b] > max(fa, fb):
                beyond.append((groups[a], groups[b], float(shown[a, b])))
    beyond.sort(key=lambda t: -t[2])
    return AxisStudy(axis, result, floors, ranking, tuple(beyond), g * (g - 1) // 2, tuple(left_out),
                     _dominant(hist, model_names, settings.dominant_share), tuple(notes))


def _dominant(hist: HistogramResult, model_names: dict[int, str], share_limit: float) -> tuple[DominantModel, ...]:
    """Groups of several models where one model holds more than ``share_limit`` of the filters."""
    out = []
    filters = np.asarray(hist.unit_filters, np.float64)
    for g, name in enumerate(hist.groups):
        members = np.flatnonzero(np.asarray(hist.unit_group) == g)
        if len(members) < 2 or filters[members].sum() <= 0:
            continue
        top = members[np.argmax(filters[members])]
        share = float(filters[top] / filters[members].sum())
        if share > share_limit:
            mid = int(hist.unit_model[top])
            out.append(DominantModel(name, model_names.get(mid, f"model {mid}"), share))
    return tuple(out)


def _axis_ranking(axes: Sequence[AxisStudy]) -> tuple[AxisRank, ...]:
    ranks = []
    for a in axes:
        upper = a.drift.upper_triangle()
        both = sum(1 for i, x in enumerate(a.groups) for y in a.groups[i + 1:]
                   if a.floors[x] is not None and a.floors[y] is not None)
        ranks.append(AxisRank(a.axis, float(np.median(upper)), float(upper.mean()), len(a.groups),
                              len(a.beyond_pairs) / both if both else None))
    return tuple(sorted(ranks, key=lambda r: (-r.median, r.axis)))


def _families(store: Any) -> Families:
    """Families: candidates from the fingerprints stored at ingest, confirmed by the full comparison on the
    stored weights (lineage_of); models without a fingerprint are named, with how to add them."""
    from ..lineage import lineage_of, stored_fingerprints

    prints, missing = stored_fingerprints(store)
    note = None
    if missing:
        note = (f"{len(missing)} of {len(prints) + len(missing)} models have no stored fingerprint and are not "
                f"compared; `filterdb lineage {store.root}` computes and stores them once (it reads those models' "
                "weights back from the store), after which the study includes them")
    if len(prints) < 2:
        return Families((), (), len(prints), tuple(missing), note)
    result = lineage_of(prints, store)  # candidates from fingerprints, each decided by the full comparison
    families = tuple(tuple(f) for f in result.families if len(f) > 1)
    edges = tuple({"parent": e.parent, "child": e.child, "relation": e.relation, "score": float(e.score),
                   "confidence": float(e.confidence)} for e in result.edges)
    return Families(families, edges, len(prints), tuple(missing), note)
