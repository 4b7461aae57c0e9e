"""Noise floors: the drift between two fixed halves of a group's own layers, and when it cannot be estimated.

A group's layers are split by a fixed hash of the layer id (the store's ``half`` column, the same on every
run); the floor is the drift between the two halves, with the settings of the matrix it belongs to. Each half
holds half the filters, so the floor errs high. It is not estimated (None, with the reason) for a group of one
model — its halves would be layers of that one model, which leaves out how models differ, so any drift would
look "beyond noise" — nor for a group with fewer than :data:`MIN_HALF_LAYERS` layers in a half.

Unit histograms of a pass are regrouped here: (group, model) histograms for a drift matrix, (group, half)
ones for the floors, from one pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .histograms import HistogramResult
from .pca import PCAResult

__all__ = ["HALF_SEP", "MIN_HALF_LAYERS", "half_names", "noise_floors", "regroup"]

MIN_HALF_LAYERS = 2  # a floor needs at least this many layers in each half of the group
HALF_SEP = "\x1f"  # between a group's name and its half in the names of the halves


def half_names(groups: Sequence[str]) -> list[str]:
    """The names of the halves of ``groups``: group i half h is entry 2i + h."""
    return [f"{g}{HALF_SEP}{h}" for g in groups for h in (0, 1)]


def regroup(names: Sequence[str], unit_group: np.ndarray, unit_model: np.ndarray, hist_units: np.ndarray,
            unit_rows: np.ndarray, edges: np.ndarray, basis: PCAResult, by: str | None, range_mode: str,
            notes: tuple[str, ...] = ()) -> HistogramResult:
    """Group histograms, and (group, model) ones, as sums of the unit histograms whose ``unit_group >= 0``."""
    use = np.flatnonzero(np.asarray(unit_group) >= 0)
    groups_used, models_used = np.asarray(unit_group, np.int64)[use], np.asarray(unit_model, np.int64)[use]
    span = int(models_used.max()) + 1 if len(use) else 1
    keys, inverse = np.unique(groups_used * span + models_used, return_inverse=True)  # (group, model) as one int
    inverse = np.asarray(inverse).ravel()
    pairs = np.stack([keys // span, keys % span], 1)
    g = len(names)
    d, bins = hist_units.shape[1], hist_units.shape[2]
    pair_counts = _sum_by(hist_units, inverse, len(pairs), columns=use)  # no copy of the unit histograms
    pair_rows = np.bincount(inverse, weights=np.asarray(unit_rows)[use], minlength=len(pairs)).astype(np.int64)
    keep = pair_rows > 0  # a (group, model) whose filters were all left out (NaN) is no model of the group
    pairs, pair_counts, pair_rows = pairs[keep].reshape(-1, 2), pair_counts[keep], pair_rows[keep]
    counts = _sum_by(pair_counts, pairs[:, 0], g) if len(pairs) else np.zeros((g, d, bins), np.int64)
    n_filters = np.bincount(pairs[:, 0], weights=pair_rows, minlength=g).astype(np.int64)
    n_models = np.bincount(pairs[:, 0], minlength=g).astype(np.int64)
    return HistogramResult(tuple(names), edges, counts, n_filters, n_models, pair_counts, pairs[:, 0], pairs[:, 1],
                           pair_rows, basis, range_mode, by, notes)


def _sum_by(values: np.ndarray, index: np.ndarray, n: int, columns: np.ndarray | None = None) -> np.ndarray:
    """``out[k]`` = the sum of the rows ``columns[i]`` of ``values`` with ``index[i] == k`` (``columns``: all rows
    in order), as one sparse 0/1 matrix product: exact in int64, no copy of ``values`` (``np.add.at`` or a
    sort and copy of tens of thousands of unit histograms costs seconds at paper scale)."""
    from scipy.sparse import csr_matrix

    flat = values.reshape(len(values), int(np.prod(values.shape[1:])))
    cols = np.arange(len(index)) if columns is None else np.asarray(columns, np.int64)
    pick = csr_matrix((np.ones(len(index), np.int64), (np.asarray(index, np.int64), cols)), shape=(n, len(values)))
    return np.asarray(pick @ flat, np.int64).reshape(n, *values.shape[1:])


def noise_floors(groups: Sequence[str], n_models: Mapping[str, int], half_matrix: np.ndarray,
                 half_filters: np.ndarray, layers_per_half: Mapping[tuple[str, int], int]
                 ) -> tuple[dict[str, float | None], dict[str, str]]:
    """(group -> floor or None, group -> why there is none). ``half_matrix``: the drift matrix of the halves
    (:func:`half_names` order); ``half_filters``: filters per half, same order."""
    floors: dict[str, float | None] = {}
    why: dict[str, str] = {}
    for i, g in enumerate(groups):
        sizes = [int(layers_per_half.get((g, h), 0)) for h in (0, 1)]
        if n_models.get(g, 0) < 2:
            floors[g], why[g] = None, "one model"
        elif min(sizes) < MIN_HALF_LAYERS:
            floors[g], why[g] = None, f"too few layers: {sizes[0]} and {sizes[1]} in its halves"
        elif min(half_filters[2 * i], half_filters[2 * i + 1]) == 0:
            floors[g], why[g] = None, "a half without filters"
        else:
            floors[g] = float(half_matrix[2 * i, 2 * i + 1])
    return floors, why
