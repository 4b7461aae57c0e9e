"""Analyses of the filter distributions of a store: PCA basis, coefficient histograms, drift, degeneration.

All of them read the store in batches with bounded memory, on threads (default) or on Dask, with one
fused kernel per pass (numba when installed, numpy otherwise). See docs/analysis.md.
"""

from __future__ import annotations

from ._selection import AnalysisError, Plan, make_plan
from .degeneration import DegenerationResult, degeneration
from .drift import DriftResult, drift, drift_matrix, group_distributions, sym_kl
from .histograms import HistogramResult, coefficient_histograms
from .pca import PCAResult, StreamingPCA, fit_pca

__all__ = [
    "AnalysisError",
    "DegenerationResult",
    "DriftResult",
    "HistogramResult",
    "PCAResult",
    "Plan",
    "StreamingPCA",
    "coefficient_histograms",
    "degeneration",
    "drift",
    "drift_matrix",
    "fit_pca",
    "group_distributions",
    "make_plan",
    "sym_kl",
]
