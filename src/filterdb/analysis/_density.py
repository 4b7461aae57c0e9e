"""The joint 2-D density of two PCA coefficients of a store's filters, streamed (docs/reference.md §4 figures).

One pass over the selected filters (each scaled by its max |w|, as for the basis), projected on two
components of a basis and binned into a fixed 2-D grid: memory is O(bins²) whatever the number of filters,
so a density over billions of filters costs one read of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ._selection import AnalysisError, shape_width
from .pca import PCAResult, as_store, fit_pca

__all__ = ["DensityResult", "coefficient_density"]


@dataclass(frozen=True, eq=False)
class DensityResult:
    """``counts[a, b]``: filters whose coefficient ``i`` falls in x-bin a and coefficient ``j`` in y-bin b."""

    i: int  # component on the x axis (0-based)
    j: int  # component on the y axis
    x_edges: np.ndarray  # (bins + 1,)
    y_edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray  # (bins, bins) int64
    n_filters: int
    basis: PCAResult
    selection: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"i": self.i, "j": self.j, "x_edges": self.x_edges.tolist(), "y_edges": self.y_edges.tolist(),
                "counts": self.counts.tolist(), "n_filters": int(self.n_filters), "selection": self.selection}


def coefficient_density(store: Any, i: int = 0, j: int = 1, shape: str = "3x3", where: str | None = None,
                        params: Sequence[Any] | None = None, *, basis: PCAResult | None = None, bins: int = 160,
                        range: tuple[float, float] | None = None, batch_rows: int = 1 << 20) -> DensityResult:
    """The 2-D histogram of PCA coefficients ``i`` and ``j`` of the selected filters.

    Parameters
    ----------
    i, j : int
        Components (0-based) on the x and y axes.
    basis : PCAResult, optional
        Default: fitted on the same selection first (one more pass).
    bins : int
        Bins per axis.
    range : (lo, hi), optional
        Shared range of both axes; default the analytic bound ±(√d + ‖μ‖) of the basis, which holds
        every coefficient.

    Examples
    --------
    >>> density = coefficient_density("zoo.fdb", 0, 1)  # doctest: +SKIP
    >>> density.counts.sum() == density.n_filters       # doctest: +SKIP
    True
    """
    d = shape_width(shape)
    for name, value in (("i", i), ("j", j)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < d:
            raise UsageError(f"{name} must be a component index in [0, {d - 1}], got {value!r}")
    if i == j:
        raise UsageError(f"i and j must be different components, got {i} twice")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise UsageError(f"bins must be an integer >= 2, got {bins!r}")
    store = as_store(store)
    if basis is None:
        basis = fit_pca(store, shape, where, params)
    if basis.d != d:
        raise AnalysisError(f"the basis has {basis.d} values per filter, the selection {d} ({shape})")
    if range is None:
        b = basis.bound()
        lo, hi = -b, b
    else:
        lo, hi = float(range[0]), float(range[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise UsageError(f"range must satisfy lo < hi (finite), got {range!r}")
    edges = np.linspace(lo, hi, bins + 1)
    proj = basis.components[[i, j]].T.astype(np.float32)  # (d, 2)
    mean = basis.mean.astype(np.float32)
    counts = np.zeros(bins * bins, np.int64)
    n = 0
    scale = bins / (hi - lo)
    # docs/reference.md §3: layers holding NaN / inf weights are left out, and so is any such filter
    finite_where = "coalesce(n_nonfinite, 0) = 0" + (f" AND ({where})" if where else "")
    skipped = 0
    for batch in store.iter_filters(shape, finite_where, params, batch_rows=batch_rows, scaled=True):
        finite = np.isfinite(batch).all(axis=1)
        if not finite.all():
            skipped += int(len(batch) - finite.sum())
            batch = batch[finite]
        c = (batch - mean) @ proj
        ix = np.clip(((c[:, 0] - lo) * scale).astype(np.int64), 0, bins - 1)  # outside values: end bins
        iy = np.clip(((c[:, 1] - lo) * scale).astype(np.int64), 0, bins - 1)
        counts += np.bincount(ix * bins + iy, minlength=bins * bins)
        n += len(batch)
    if n == 0:
        raise AnalysisError(f"{store.root}: no {shape} filters in the selection")
    return DensityResult(int(i), int(j), edges, edges.copy(), counts.reshape(bins, bins), n, basis,
                         {"store": str(store.root), "shape": shape, "where": where,
                          "params": list(params) if params else None, "non_finite_filters_left_out": skipped})
