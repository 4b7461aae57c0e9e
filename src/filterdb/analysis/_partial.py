"""Partial results of the analysis passes and their merge: what a task returns and how tasks add up.

Merging in task order gives bit-identical totals on every engine (threads or Dask); see _run.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Partial", "merge", "merge_into"]


@dataclass
class Partial:
    """Mergeable partial results of a pass over some rows (a few KB per task)."""

    d: int
    nbins: int
    n: int = 0
    # the arrays default to None and are made in __post_init__ (their sizes depend on d and nbins), hence the
    # assignment ignores: after construction they are always arrays
    gram: np.ndarray = None  # type: ignore[assignment]  # (d, d) float64
    sums: np.ndarray = None  # type: ignore[assignment]  # (d,) float64
    units: np.ndarray = None  # type: ignore[assignment]  # (u,) int64 global unit ids
    hist: np.ndarray = None  # type: ignore[assignment]  # (u, d, nbins) int64
    unit_rows: np.ndarray = None  # type: ignore[assignment]  # (u,) rows per unit
    cmin: np.ndarray = None  # type: ignore[assignment]  # (d,) float64
    cmax: np.ndarray = None  # type: ignore[assignment]  # (d,) float64
    skipped: int = 0  # filters left out because they hold a NaN or an infinity (not in n)
    density: np.ndarray | None = None  # (bins, bins) int64: the joint histogram of coefficients 0 and 1, if asked
    # the Gram matrix, column sums and filter count of each *gram slot* (segments marked with a slot: e.g. the
    # largest groups, for their own bases); the slots add up with the rest to ``gram`` / ``sums`` / ``n``
    slot_gram: np.ndarray | None = None  # (k, d, d) float64
    slot_sums: np.ndarray | None = None  # (k, d) float64
    slot_n: np.ndarray | None = None  # (k,) int64

    def __post_init__(self) -> None:
        d = self.d
        if self.gram is None:
            self.gram = np.zeros((d, d), np.float64)
        if self.sums is None:
            self.sums = np.zeros(d, np.float64)
        if self.units is None:
            self.units = np.zeros(0, np.int64)
        if self.hist is None:
            self.hist = np.zeros((0, d, self.nbins), np.int64)
        if self.unit_rows is None:
            self.unit_rows = np.zeros(0, np.int64)
        if self.cmin is None:
            self.cmin = np.full(d, np.inf)
        if self.cmax is None:
            self.cmax = np.full(d, -np.inf)


def merge(parts: Iterable[Partial], d: int, nbins: int, n_units: int) -> Partial:
    """Sum partial results in the given order (the same order gives bit-identical totals)."""
    total = Partial(d, nbins)
    total.hist = np.zeros((n_units, d, nbins), np.int64)
    total.unit_rows = np.zeros(n_units, np.int64)
    total.units = np.arange(n_units, dtype=np.int64)
    for p in parts:
        merge_into(total, p)
    return total


def merge_into(total: Partial, p: Partial) -> Partial:
    """Add one partial result into ``total`` (in place) and return it."""
    total.n += p.n
    total.skipped += p.skipped
    total.gram += p.gram
    total.sums += p.sums
    if len(p.units):
        total.hist[p.units] += p.hist
        total.unit_rows[p.units] += p.unit_rows
    np.minimum(total.cmin, p.cmin, out=total.cmin)
    np.maximum(total.cmax, p.cmax, out=total.cmax)
    if p.density is not None:
        total.density = p.density.copy() if total.density is None else total.density + p.density
    if p.slot_gram is not None and p.slot_sums is not None and p.slot_n is not None:
        if total.slot_gram is None or total.slot_sums is None or total.slot_n is None:
            total.slot_gram, total.slot_sums, total.slot_n = (p.slot_gram.copy(), p.slot_sums.copy(),
                                                              p.slot_n.copy())
        else:
            total.slot_gram += p.slot_gram
            total.slot_sums += p.slot_sums
            total.slot_n += p.slot_n
    return total
