"""Histograms of the PCA coefficients of scaled filters, per group and model (docs/reference.md §5).

Counts are kept per *unit* — one (group, model) pair — so that a group's distribution can be the plain
sum over its filters (the paper) or the mean of its models' distributions (``model_weighting``, against
groups dominated by one big model or by one of hundreds of models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ..errors import UsageError
from ._selection import AnalysisError, Plan, plan_for
from ._settings import DEFAULT_TASK_ROWS, Execution, Selection, execution_of, selection_of
from .kernels import PassSpec
from .pca import PCAResult, as_store, fit_basis

__all__ = ["HistogramResult", "coefficient_histograms", "RangeMode", "resolve_basis", "histogram_range", "MAX_BINS"]

RangeMode = Literal["bound", "minmax"]
MAX_BINS = 10_000  # per coefficient: the histograms of every (group, model) unit are held in memory


@dataclass(frozen=True, eq=False)
class HistogramResult:
    """Coefficient histograms of each group.

    ``counts[g, i, b]``: filters of group g whose coefficient i falls into bin b; ``unit_counts`` the same
    per (group, model) unit, with ``unit_group`` / ``unit_model`` saying which.
    """

    groups: tuple[str, ...]
    edges: np.ndarray  # (bins + 1,) shared by every component
    counts: np.ndarray  # (g, d, bins) int64
    n_filters: np.ndarray  # (g,) filters per group
    n_models: np.ndarray  # (g,) models per group
    unit_counts: np.ndarray  # (u, d, bins) int64
    unit_group: np.ndarray  # (u,)
    unit_model: np.ndarray  # (u,)
    unit_filters: np.ndarray  # (u,)
    basis: PCAResult
    range_mode: str  # "bound", "minmax" or "fixed"
    by: str | None = None
    notes: tuple[str, ...] = field(default=())
    halves: HistogramResult | None = None  # the same per (group, half) (names: _floors.half_names), when split

    @property
    def bins(self) -> int:
        return int(self.counts.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "groups": list(self.groups), "edges": self.edges.tolist(),
                "counts": self.counts.tolist(), "n_filters": self.n_filters.tolist(),
                "n_models": self.n_models.tolist(), "range_mode": self.range_mode, "notes": list(self.notes)}


def resolve_basis(basis: Any, d: int, shape: str) -> PCAResult | None:
    """None, a PCAResult, or a path to a saved basis; checked against the filter size."""
    if basis is None:
        return None
    if not isinstance(basis, PCAResult):
        basis = PCAResult.load(basis)
    if basis.d != d:
        raise AnalysisError(f"the basis has {basis.d} values per filter ({basis.shape}); the selection is {shape} "
                            f"({d} values): fit or load a basis of the same kernel shape")
    return basis


def histogram_range(range: Any, basis: PCAResult) -> tuple[str, float, float] | tuple[str, None, None]:
    """("bound", lo, hi) from the analytic bound, ("minmax", None, None), or ("fixed", lo, hi)."""
    if range is None or range == "bound":
        b = basis.bound()
        return "bound", -b, b
    if range == "minmax":
        return "minmax", None, None
    return ("fixed", *check_range(range))


def check_range(range: Any) -> tuple[float, float]:
    """A fixed (lo, hi) histogram range: two finite numbers with lo < hi, else a UsageError saying so."""
    try:
        lo, hi = (float(v) for v in range)
    except (TypeError, ValueError) as e:
        raise UsageError(f"range must be 'bound', 'minmax' or a (lo, hi) pair of numbers, got {range!r}") from e
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UsageError(f"range must be two finite numbers, got ({lo}, {hi}); e.g. -3,3")
    if not lo < hi:
        raise UsageError(f"range must have lo < hi, got ({lo}, {hi}); e.g. -3,3")
    return lo, hi


def check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 1 <= bins <= MAX_BINS:
        raise UsageError(f"bins must be an integer from 1 to {MAX_BINS:,}, got {bins!r} (the paper uses 70)")
    return int(bins)


def histograms_from_plan(plan: Plan, execution: Execution, *, basis: PCAResult | None = None, bins: int = 70,
                         range: Any = "bound", selection: Selection | None = None, fit_plan: Plan | None = None,
                         sign_rule: str = "loadings") -> HistogramResult:
    """The passes behind :func:`coefficient_histograms` over an existing plan.

    The basis (when not given) and a "minmax" range come from the filters of ``fit_plan`` (default: ``plan``);
    the histograms from those of ``plan``. ``selection`` is what ``plan`` was made from (recorded with a
    fitted basis).
    """
    from ._run import run_pass

    bins = check_bins(bins)
    eng = execution.make_engine()
    kname = execution.kernel_name()
    task_rows = execution.task_rows
    fit_plan = fit_plan or plan
    extremes = None
    if basis is None:  # the basis of the selection (and its coefficients' extremes when needed)
        basis, extremes = fit_basis(fit_plan, execution, sign_rule=sign_rule, want_extremes=range == "minmax",
                                    selection=selection, engine=eng)
    mode, fixed_lo, fixed_hi = histogram_range(range, basis)
    if fixed_lo is not None and fixed_hi is not None:
        lo, hi = fixed_lo, fixed_hi
    else:  # "minmax": the paper's global min / max over all coefficients
        if extremes is None:
            mm = run_pass(fit_plan, PassSpec(d=plan.d, gram=False, minmax=True, components=basis.components,
                                             mean=basis.mean, kernel=kname), eng, task_rows)
            extremes = (mm.cmin, mm.cmax)
        lo, hi = float(np.min(extremes[0])), float(np.max(extremes[1]))
        if not lo < hi:
            hi = lo + 1.0
    spec = PassSpec(d=plan.d, gram=False, hist=True, components=basis.components, mean=basis.mean,
                    lo=float(lo), hi=float(hi), nbins=int(bins), kernel=kname)
    total = run_pass(plan, spec, eng, task_rows)
    g = len(plan.groups)
    counts = np.zeros((g, plan.d, bins), np.int64)
    np.add.at(counts, plan.unit_group, total.hist)
    n_filters = np.bincount(plan.unit_group, weights=total.unit_rows, minlength=g).astype(np.int64)
    n_models = np.bincount(plan.unit_group, minlength=g).astype(np.int64)
    notes = plan.notes + ((f"{total.skipped} filter(s) holding NaN or infinite values were left out",)
                          if total.skipped else ())
    by = selection.by if selection is not None else None
    edges = np.linspace(lo, hi, bins + 1)
    if plan.unit_half is not None:  # units are (group, model, half): the group's models, and its two halves
        from ._floors import half_names, regroup

        halves = regroup(half_names(plan.groups), 2 * plan.unit_group + plan.unit_half, plan.unit_model, total.hist,
                         total.unit_rows, edges, basis, by, mode)
        whole = regroup(plan.groups, plan.unit_group, plan.unit_model, total.hist, total.unit_rows, edges, basis, by,
                        mode, notes)
        return replace(whole, halves=halves)
    return HistogramResult(plan.groups, edges, counts, n_filters, n_models, total.hist,
                           plan.unit_group, plan.unit_model, total.unit_rows, basis, mode, by, notes)


def coefficient_histograms(store: Any, by: str | None = None, shape: str = "3x3", where: str | None = None,
                           params: Sequence[Any] | None = None, *, basis: Any = None, bins: int = 70,
                           range: Any = "bound", engine: Any = None, kernel: str = "auto",
                           task_rows: int = DEFAULT_TASK_ROWS, sign_rule: str = "loadings",
                           selection: Selection | None = None, execution: Execution | None = None
                           ) -> HistogramResult:
    """Histograms of each PCA coefficient of the selected filters, per group of ``by``.

    Parameters
    ----------
    by : str, optional
        A column of the ``layers`` view, ``"depth"`` (deciles of conv_depth_norm) or an SQL expression.
    basis : PCAResult or path, optional
        Project on this basis (one pass); default: fit it on the selection first (two passes).
    bins : int
        Bins per coefficient (70 in the paper).
    range : "bound" | "minmax" | (lo, hi)
        "bound" (default): ±(√d + ‖μ‖), which holds every coefficient, no extra pass. "minmax": the
        paper's global min/max of all coefficients (one extra pass). A pair: a fixed range, e.g. the
        medical follow-up's (−3, 3); values outside go to the end bins.
    sign_rule : "loadings" | "u-based"
        Component signs of a basis fitted here (see :mod:`filterdb.analysis.pca`).
    selection : Selection, optional
        ``by``, ``shape``, ``where`` and ``params`` as one object (leave those at their defaults).
    execution : Execution, optional
        ``engine``, ``kernel`` and ``task_rows`` as one object.

    Examples
    --------
    >>> h = coefficient_histograms("zoo.fdb", by="task")  # doctest: +SKIP
    >>> h.counts.shape  # doctest: +SKIP
    (5, 9, 70)
    """
    sel = selection_of(selection, by=by, shape=shape, where=where, params=params)
    exe = execution_of(execution, engine=engine, kernel=kernel, task_rows=task_rows)
    plan = plan_for(as_store(store), sel)
    return histograms_from_plan(plan, exe, basis=resolve_basis(basis, plan.d, plan.shape), bins=bins, range=range,
                                selection=sel, sign_rule=sign_rule)
