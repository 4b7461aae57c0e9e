"""Analyses of the filter distributions of a store: PCA basis, coefficient histograms, drift, degeneration.

All of them read the store in batches with bounded memory, on threads (default) or on Dask, with one
fused kernel per pass (numba when installed, numpy otherwise). What an analysis reads is one frozen
:class:`Selection` (shape, where, params, by, groups), how it runs one frozen :class:`Execution` (engine,
kernel, threads, task size); the keyword arguments of each function build them. See docs/analysis.md.
"""

from __future__ import annotations

from ._density import DensityResult, coefficient_density
from ._selection import DEPTH_LABELS, AnalysisError, Plan, make_plan, plan_for
from ._selection import group_expression  # the axis rule: (SQL expression, is depth)
from ._settings import Execution, Selection
from .degeneration import DegenerationResult, degeneration
from .drift import DriftResult, DriftSettings, drift, drift_matrix, group_distributions, run_drift, sym_kl
from ._headroom import GroupHeadroom, ModelHeadroom, PruneHeadroom, prune_headroom
from .histograms import HistogramResult, coefficient_histograms
from .pca import PCAResult, StreamingPCA, as_store, fit_pca
from .study import AxisRank, AxisStudy, DominantModel, Families, Finding, GroupShift, Study, StudySettings, study

__all__ = [
    "AxisRank",
    "AxisStudy",
    "DominantModel",
    "Families",
    "Finding",
    "GroupShift",
    "GroupHeadroom",
    "ModelHeadroom",
    "PruneHeadroom",
    "prune_headroom",
    "Study",
    "StudySettings",
    "study",
    "DEPTH_LABELS",
    "AnalysisError",
    "DegenerationResult",
    "DensityResult",
    "DriftResult",
    "DriftSettings",
    "Execution",
    "HistogramResult",
    "PCAResult",
    "Plan",
    "Selection",
    "StreamingPCA",
    "as_store",
    "coefficient_density",
    "coefficient_histograms",
    "degeneration",
    "drift",
    "drift_matrix",
    "fit_pca",
    "group_distributions",
    "group_expression",
    "make_plan",
    "plan_for",
    "run_drift",
    "sym_kl",
]
