"""Distribution shift ("drift") between groups of filters along one metadata axis (docs/reference.md §5).

For groups P and Q and each PCA coefficient i: histograms with the same bins, turned into probabilities as
the authors' notebook does (the histogram as a density, counts / (n · bin width); empty bins set to float32
machine epsilon; renormalised to sum 1), the symmetric KL divergence KL(P_i‖Q_i) + KL(Q_i‖P_i) in nats, and
D(P, Q) = Σ_i w_i · KL_sym(P_i, Q_i) with w = η, the basis' explained-variance ratios (the paper), or
w_i = 1/d (the medical follow-up).

``preset="paper"`` selects every setting of the notebook (see :mod:`filterdb.analysis.presets`);
filterdb's default differs in the range (the analytic bound ±(√d + ‖μ‖) holds every coefficient and needs
no extra pass), in fitting the basis on the groups kept, in leaving out groups under 100 filters and in the
component signs ("loadings").
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import UsageError
from ._selection import AnalysisError, plan_for
from ._settings import DEFAULT_TASK_ROWS, Execution, Selection, execution_of, one_of, selection_of
from .histograms import HistogramResult, check_bins, check_range, histograms_from_plan, resolve_basis
from .pca import PCAResult, as_store
from .presets import resolve_settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DriftResult", "DriftSettings", "drift", "run_drift", "drift_from_coefficients", "drift_matrix",
           "group_distributions", "sym_kl", "EPS",
           "EMPTY_BINS"]

EPS = float(np.finfo(np.float32).eps)  # the probability given to empty bins (the paper's code)
Order = Literal["mean", "name", "size", "none"]
ORDERS = ("mean", "name", "size", "none")
WEIGHTS = ("explained", "uniform")
FIT_ON = ("groups", "selection")


EMPTY_BINS = ("density", "count")


def _probabilities(values: np.ndarray, width: float | None = None) -> np.ndarray:
    """Histograms (..., bins) → probabilities (docs/reference.md §5).

    ``width`` given ("density", the notebook): values / (total · width), EPS in empty bins, renormalised, so an
    empty bin ends at ≈ EPS · width. ``width=None`` ("count"): the same on values / total (≈ EPS).
    """
    values = np.asarray(values, np.float64)
    total = values.sum(axis=-1, keepdims=True)
    scale = total * (1.0 if width is None else float(width))
    p = np.divide(values, scale, out=np.zeros_like(values), where=total > 0)
    p[p == 0] = EPS
    return p / p.sum(axis=-1, keepdims=True)


def group_distributions(hist: HistogramResult, *, model_weighting: bool = False,
                        empty_bins: str = "density") -> np.ndarray:
    """(g, d, bins) probabilities per group: pooled filters, or the mean of the group's models."""
    if empty_bins not in EMPTY_BINS:
        raise UsageError(one_of("empty_bins", empty_bins, EMPTY_BINS))
    width = float(hist.edges[1] - hist.edges[0]) if empty_bins == "density" else None
    if not model_weighting:
        return _probabilities(hist.counts, width)
    g, d, b = hist.counts.shape
    per_unit = np.asarray(hist.unit_counts, np.float64)
    rows = per_unit.sum(axis=-1, keepdims=True)
    per_unit = np.divide(per_unit, rows, out=np.zeros_like(per_unit), where=rows > 0)
    summed = np.zeros((g, d, b))
    np.add.at(summed, hist.unit_group, per_unit)
    n_models = np.bincount(hist.unit_group, minlength=g).astype(np.float64)
    return _probabilities(summed / np.maximum(n_models, 1)[:, None, None], width)


def sym_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p‖q) + KL(q‖p) over the last axis (natural log); p, q strictly positive and normalised."""
    return np.sum((p - q) * (np.log(p) - np.log(q)), axis=-1)


def drift_matrix(distributions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """D[a, b] = Σ_i w_i KL_sym(P_a,i, P_b,i) for every pair of groups; symmetric, zero diagonal."""
    p = np.asarray(distributions, np.float64)
    w = np.asarray(weights, np.float64)
    logp = np.log(p)
    self_term = np.einsum("gdb,gdb->gd", p, logp)  # Σ p log p per group and component
    cross = np.einsum("adb,cdb->dac", p, logp)  # Σ p_a log p_c
    per_component = self_term.T[:, :, None] + self_term.T[:, None, :] - cross - cross.transpose(0, 2, 1)
    matrix = np.einsum("d,dac->ac", w, per_component)
    matrix = (matrix + matrix.T) / 2  # exact symmetry against rounding in the einsum order
    np.fill_diagonal(matrix, 0.0)
    return np.maximum(matrix, 0.0)


@dataclass(frozen=True, eq=False)
class DriftResult:
    """A drift matrix between the groups of one axis, in display order.

    Attributes
    ----------
    matrix : (g, g) ndarray
        D between every pair of groups; symmetric, zero diagonal, rows and columns in ``groups`` order.
    groups : tuple of str
        Group labels in display order (see ``order``).
    sizes : dict
        ``{"n_filters": [...], "n_models": [...]}`` per group, in display order.
    """

    by: str | None
    groups: tuple[str, ...]
    matrix: np.ndarray
    sizes: dict[str, list[int]]
    component_weights: np.ndarray  # w_i
    weights: str  # "explained" or "uniform"
    model_weighting: bool
    bins: int
    range: tuple[float, float]
    range_mode: str
    order: str
    basis: PCAResult
    histograms: HistogramResult | None = None
    dropped: dict[str, str] = field(default_factory=dict)  # group -> why it was left out
    notes: tuple[str, ...] = ()
    preset: str | None = None
    empty_bins: str = "density"
    fit_on: str = "groups"  # the basis and a minmax range came from "groups" kept or the whole "selection"
    # group -> noise floor (drift between two fixed halves of its layers; None: cannot be estimated), when asked
    # for (DriftSettings.floors); group -> why there is none
    floors: dict[str, float | None] = field(default_factory=dict)
    floor_notes: dict[str, str] = field(default_factory=dict)

    def above_floor(self, a: int, b: int) -> bool | None:
        """Whether cell (a, b) exceeds the larger floor of its two groups; None when a floor is unknown."""
        fa, fb = self.floors.get(self.groups[a]), self.floors.get(self.groups[b])
        if fa is None or fb is None:
            return None
        return bool(self.matrix[a, b] > max(fa, fb))

    def upper_triangle(self) -> np.ndarray:
        return self.matrix[np.triu_indices(len(self.groups), k=1)]

    def summary(self) -> dict[str, Any]:
        """The distribution of the upper triangle, the most distant pair and each group's mean drift."""
        upper = self.upper_triangle()
        g = len(self.groups)
        out: dict[str, Any] = {"n_groups": g, "n_pairs": int(upper.size)}
        if upper.size:
            q = np.quantile(upper, [0.0, 0.25, 0.5, 0.75, 1.0])
            out.update(mean=float(upper.mean()), std=float(upper.std()), min=float(q[0]), q25=float(q[1]),
                       median=float(q[2]), q75=float(q[3]), max=float(q[4]))
            a, b = np.unravel_index(np.argmax(self.matrix), self.matrix.shape)
            out["max_pair"] = [self.groups[a], self.groups[b]]
            out["group_mean"] = {grp: float(self.matrix[i].sum() / (g - 1)) for i, grp in enumerate(self.groups)}
        return out

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.matrix, index=list(self.groups), columns=list(self.groups))

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by, "groups": list(self.groups), "matrix": self.matrix.tolist(), "sizes": self.sizes,
            "summary": self.summary(), "weights": self.weights, "component_weights": self.component_weights.tolist(),
            "model_weighting": self.model_weighting, "bins": self.bins, "range": list(self.range),
            "range_mode": self.range_mode, "order": self.order, "dropped": self.dropped, "notes": list(self.notes),
            "preset": self.preset, "empty_bins": self.empty_bins, "fit_on": self.fit_on,
            "sign_rule": self.basis.sign_rule, "basis": self.basis.to_dict(),
            "floors": {g: (None if v is None or not np.isfinite(v) else float(v)) for g, v in self.floors.items()},
            "floor_notes": self.floor_notes,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .pca import _write_atomic

            _write_atomic(path, text.encode())
        return text


def _order(matrix: np.ndarray, groups: Sequence[str], n_filters: np.ndarray, order: str,
           natural: bool) -> np.ndarray:
    g = len(groups)
    if order == "none" or g < 2 or natural and order == "mean":
        return np.arange(g)
    if order == "name":
        return np.array(sorted(range(g), key=lambda i: str(groups[i])))
    if order == "size":
        return np.argsort(-n_filters, kind="stable")
    # "mean": ascending mean drift to the other groups, so outliers gather at the bottom right
    return np.argsort(matrix.sum(axis=1) / (g - 1), kind="stable")


@dataclass(frozen=True)
class DriftSettings:
    """How :func:`drift` turns the selected groups into a matrix; every field left at None comes from
    ``preset``, else from filterdb's defaults (:func:`filterdb.analysis.presets.resolve_settings`).

    The fields are the keywords of :func:`drift`, documented there. :meth:`resolved` fills in the
    preset and checks every value (a :class:`filterdb.errors.UsageError` naming the field and what it
    allows).

    Examples
    --------
    >>> DriftSettings(preset="paper").resolved().range
    'minmax'
    """

    preset: str | None = None
    bins: int | None = None
    range: Any = None
    weights: str | None = None
    basis: Any = None
    model_weighting: bool | None = None
    min_filters: int | None = None
    min_models: int | None = None
    order: str = "mean"
    fit_on: str | None = None
    sign_rule: str | None = None
    empty_bins: str | None = None
    floors: bool = False  # also each group's noise floor (units split into halves: the same one pass)

    def resolved(self) -> DriftSettings:
        """A copy with the preset applied and every value checked."""
        cfg = resolve_settings(self.preset, bins=self.bins, range=self.range, weights=self.weights,
                               model_weighting=self.model_weighting, min_filters=self.min_filters,
                               min_models=self.min_models, fit_on=self.fit_on, sign_rule=self.sign_rule,
                               empty_bins=self.empty_bins)
        for name, value, choices in (("weights", cfg["weights"], WEIGHTS), ("order", self.order, ORDERS),
                                     ("fit_on", cfg["fit_on"], FIT_ON), ("empty_bins", cfg["empty_bins"], EMPTY_BINS)):
            if value not in choices:
                raise UsageError(one_of(name, value, choices))
        for name in ("min_filters", "min_models"):
            value = cfg[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise UsageError(f"{name} must be an integer >= 0, got {value!r}")
        check_bins(cfg["bins"])
        if cfg["range"] not in ("bound", "minmax"):
            cfg["range"] = check_range(cfg["range"])
        from .pca import check_sign_rule

        check_sign_rule(cfg["sign_rule"])
        cfg["model_weighting"] = bool(cfg["model_weighting"])
        return replace(self, **cfg)


def drift(store: Any, by: str | None = None, shape: str = "3x3", where: str | None = None,
          params: Sequence[Any] | None = None, *, preset: str | None = None, bins: int | None = None,
          range: Any = None, weights: Literal["explained", "uniform"] | None = None, basis: Any = None,
          model_weighting: bool | None = None, min_filters: int | None = None, min_models: int | None = None,
          groups: Sequence[str] | None = None, order: Order = "mean", fit_on: str | None = None,
          sign_rule: str | None = None, empty_bins: str | None = None, engine: Any = None, kernel: str = "auto",
          task_rows: int = DEFAULT_TASK_ROWS, selection: Selection | None = None,
          execution: Execution | None = None, settings: DriftSettings | None = None) -> DriftResult:
    """The drift matrix between all groups of ``by`` (docs/reference.md §5): a thin keyword wrapper for notebooks
    around :func:`run_drift` ``(store, selection, settings, execution)``, with the notebook's names.

    Every setting left at None comes from ``preset``, else from filterdb's defaults (in brackets); a setting
    given explicitly overrides the preset. The keywords are grouped in three objects that can be passed
    instead: ``selection`` (by, shape, where, params, groups), ``execution`` (engine, kernel, task_rows)
    and ``settings`` (:class:`DriftSettings`: everything else); :func:`run_drift` takes only those.

    Parameters
    ----------
    by : str
        A column of the ``layers`` view (``task``, ``visual_category``, ``architecture``, ...),
        ``"depth"`` for depth deciles of conv_depth_norm, or an SQL expression over those columns.
    preset : "paper" | "medical", optional
        "paper": the authors' notebook (70 bins, global min/max range, η weights, pooled groups, basis and
        range fitted on every selected filter including unlabelled layers, no group left out, "u-based"
        signs). "medical": the follow-up (fixed range (−3, 3), uniform weights; give its ``basis``).
    bins : int
        Bins per coefficient, 1 to 10,000 [70].
    range : "bound" | "minmax" | (lo, hi)
        Shared histogram range ["bound"]; see :func:`coefficient_histograms`. The paper: "minmax".
    weights : "explained" | "uniform"
        w = η of the basis (paper) or 1/d (medical follow-up) ["explained"].
    basis : PCAResult or path, optional
        A saved basis keeps numbers comparable across store versions; default: fit it (see ``fit_on``).
    model_weighting : bool
        Each model of a group counts equally (mean of the models' distributions) instead of each filter [False].
    min_filters, min_models : int
        Groups below either size are left out and named in ``dropped`` (with their sizes) [100, 1].
    groups : list of str, optional
        Only these groups (values of ``by`` as text), in this order.
    order : "mean" | "name" | "size" | "none"
        Display order. "mean": by mean drift to the other groups, ascending (outliers last); depth
        deciles always keep their natural order unless "name"/"size" is asked for.
    fit_on : "groups" | "selection"
        Fit the basis and a "minmax" range on the filters of the groups kept ["groups"], or on every
        selected filter, unlabelled layers and left-out groups included ("selection", the notebook).
    sign_rule : "loadings" | "u-based"
        Component signs of a fitted basis ["loadings"]; see :mod:`filterdb.analysis.pca`.
    empty_bins : "density" | "count"
        Where float32 eps goes in an empty bin: on the density (the notebook) ["density"], or on counts / n.
    selection, execution, settings : optional
        The same settings as objects (:class:`Selection`, :class:`Execution`, :class:`DriftSettings`);
        give either an object or its loose keywords.

    Examples
    --------
    >>> result = drift("zoo.fdb", by="visual_category", preset="paper")  # doctest: +SKIP
    >>> result.to_frame().round(2)  # doctest: +SKIP
    """
    sel = selection_of(selection, by=by, shape=shape, where=where, params=params,
                       groups=None if groups is None else tuple(groups))
    exe = execution_of(execution, engine=engine, kernel=kernel, task_rows=task_rows)
    loose = DriftSettings(preset=preset, bins=bins, range=range, weights=weights, basis=basis,
                          model_weighting=model_weighting, min_filters=min_filters, min_models=min_models,
                          order=order, fit_on=fit_on, sign_rule=sign_rule, empty_bins=empty_bins)
    if settings is None:
        settings = loose
    elif loose != DriftSettings():
        raise UsageError("give either settings= or the drift keywords (preset, bins, ...), not both")
    return run_drift(store, sel, settings, exe)


def run_drift(store: Any, selection: Selection, settings: DriftSettings | None = None,
              execution: Execution | None = None) -> DriftResult:
    """The drift matrix between all groups of ``selection.by``: :func:`drift` with its settings as objects.

    Examples
    --------
    >>> run_drift("zoo.fdb", Selection(by="task"), DriftSettings(preset="paper"))  # doctest: +SKIP
    """
    by = selection.by
    if by is None:
        raise UsageError("drift needs a grouping axis: by= a column of the layers view, 'depth' or an SQL expression")
    cfg = (settings or DriftSettings()).resolved()
    execution = execution or Execution()
    min_filters, min_models = int(cfg.min_filters or 0), int(cfg.min_models or 0)
    store = as_store(store)
    plan = plan_for(store, selection, halves=cfg.floors)
    n_f, n_m = plan.group_sizes()
    keep, dropped = [], {}
    for i, grp in enumerate(plan.groups):
        if n_f[i] < min_filters or n_m[i] < min_models:
            dropped[grp] = (f"{n_f[i]} filters from {n_m[i]} model(s), below min_filters={min_filters} / "
                            f"min_models={min_models}")
        else:
            keep.append(i)
    notes = tuple(f"group {g!r} left out: {why}" for g, why in dropped.items())
    if len(keep) < 2:
        raise AnalysisError(
            f"drift by {by!r} needs at least 2 groups of >= {min_filters} filters and >= {min_models} models; "
            f"found {len(keep)} of {len(plan.groups)} ("
            + ", ".join(f"{g!r}: {n_f[i]} filters / {n_m[i]} models" for i, g in list(enumerate(plan.groups))[:10])
            + "); lower --min-filters / --min-models or select more data"
        )
    plan = plan.restrict(keep, notes)
    whole = selection.replace(by=None, groups=None)
    fit_plan = plan_for(store, whole) if cfg.fit_on == "selection" else None
    hist = histograms_from_plan(plan, execution, basis=resolve_basis(cfg.basis, plan.d, plan.shape),
                                bins=check_bins(cfg.bins), range=cfg.range, selection=selection, fit_plan=fit_plan,
                                sign_rule=str(cfg.sign_rule))
    w = (np.asarray(hist.basis.explained_variance_ratio, np.float64) if cfg.weights == "explained"
         else np.full(plan.d, 1.0 / plan.d))
    distributions = group_distributions(hist, model_weighting=bool(cfg.model_weighting),
                                        empty_bins=str(cfg.empty_bins))
    matrix = drift_matrix(distributions, w)
    perm = _order(matrix, hist.groups, hist.n_filters, cfg.order, natural=by == "depth")
    floors, floor_notes = _floors_of(hist, plan, w, cfg)
    return DriftResult(
        by=by, groups=tuple(hist.groups[i] for i in perm), matrix=matrix[np.ix_(perm, perm)],
        sizes={"n_filters": hist.n_filters[perm].tolist(), "n_models": hist.n_models[perm].tolist()},
        component_weights=w, weights=str(cfg.weights), model_weighting=bool(cfg.model_weighting),
        bins=int(cfg.bins or 0), range=(float(hist.edges[0]), float(hist.edges[-1])), range_mode=hist.range_mode,
        order=cfg.order, basis=hist.basis, histograms=hist, dropped=dropped, notes=hist.notes, preset=cfg.preset,
        empty_bins=str(cfg.empty_bins), fit_on=str(cfg.fit_on), floors=floors, floor_notes=floor_notes,
    )


def _floors_of(hist: HistogramResult, plan: Any, w: np.ndarray, cfg: DriftSettings
               ) -> tuple[dict[str, float | None], dict[str, str]]:
    """The noise floors of the groups of ``hist`` (empty when the plan was not split into halves)."""
    if hist.halves is None:
        return {}, {}
    from ._floors import noise_floors

    half_matrix = drift_matrix(group_distributions(hist.halves, model_weighting=bool(cfg.model_weighting),
                                                   empty_bins=str(cfg.empty_bins)), w)
    layers = plan.layers
    per_half = {(plan.groups[int(g)], int(h)): int(n)
                for (g, h), n in layers.groupby(["group", "half"]).size().items()}
    n_models = {g: int(hist.n_models[i]) for i, g in enumerate(hist.groups)}
    return noise_floors(hist.groups, n_models, half_matrix, hist.halves.n_filters, per_half)


def drift_from_coefficients(coefficients: np.ndarray, groups: Sequence[Any], *, models: Sequence[Any] | None = None,
                            explained_variance_ratio: np.ndarray | None = None, bins: int = 70,
                            range: tuple[float, float] | None = None, model_weighting: bool = False,
                            empty_bins: str = "density") -> tuple[list[Any], np.ndarray]:
    """The drift matrix of coefficients already in memory (``np.histogram`` binning); (labels, matrix).

    ``range=None`` is the paper's global min / max of all coefficients. ``explained_variance_ratio``
    gives w = η; None gives uniform weights 1/d. Groups come out in first-seen order.

    Examples
    --------
    >>> c = np.random.default_rng(0).standard_normal((1000, 9))
    >>> labels, m = drift_from_coefficients(c, ["a"] * 500 + ["b"] * 500)
    >>> labels, m.shape
    (['a', 'b'], (2, 2))
    """
    c = np.asarray(coefficients, np.float64)
    if c.ndim != 2 or len(c) != len(groups):
        raise UsageError(f"coefficients must be (n, d) with one group per row; got {c.shape} and {len(groups)} groups")
    lo, hi = (float(c.min()), float(c.max())) if range is None else (float(range[0]), float(range[1]))
    labels = list(dict.fromkeys(groups))
    index = {g: i for i, g in enumerate(labels)}
    gidx = np.array([index[g] for g in groups], np.int64)
    mods = np.zeros(len(c), np.int64) if models is None else np.unique(np.asarray(models), return_inverse=True)[1]
    pairs, unit = np.unique(np.stack([gidx, mods], 1), axis=0, return_inverse=True)
    unit = unit.ravel()
    d = c.shape[1]
    unit_counts = np.zeros((len(pairs), d, bins), np.int64)
    for u in np.arange(len(pairs)):
        rows = c[unit == u]
        for i in np.arange(d):
            unit_counts[u, i] = np.histogram(rows[:, i], bins=bins, range=(lo, hi))[0]
    g = len(labels)
    counts = np.zeros((g, d, bins), np.int64)
    np.add.at(counts, pairs[:, 0], unit_counts)
    hist = HistogramResult(tuple(str(x) for x in labels), np.linspace(lo, hi, bins + 1), counts,
                           counts[:, 0].sum(-1), np.bincount(pairs[:, 0], minlength=g), unit_counts, pairs[:, 0],
                           pairs[:, 1], unit_counts[:, 0].sum(-1), None, "fixed")  # type: ignore[arg-type]  # coefficients given directly: there is no PCA basis to carry
    w = np.full(d, 1.0 / d) if explained_variance_ratio is None else np.asarray(explained_variance_ratio, np.float64)
    return labels, drift_matrix(group_distributions(hist, model_weighting=model_weighting, empty_bins=empty_bins), w)
