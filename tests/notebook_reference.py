"""The authors' analysis, written from their published notebook (repository paulgavrikov/CNN-Filter-DB, file
main.ipynb) and the medical follow-up (paulgavrikov/neurips22w_medical_conv_filters), for the tests.

Kept apart from filterdb on purpose: it imports nothing from filterdb, only numpy, pandas, scipy and
scikit-learn, and follows the notebook line by line:

- ``scale``: each filter divided by its max |w|, an all-zero filter by 1;
- ``PCA(n_components=9)`` on every scaled filter, with the sign rule of scikit-learn 0.24.1 (the version the
  authors ran) applied explicitly: ``svd_flip`` with ``u_based_decision=True`` makes the entry of largest
  |value| of each column of U (the coefficients over all filters, first such row on ties) positive;
- the range: min and max of all coefficients;
- per group and coefficient ``np.histogram(..., bins=70, range=..., density=True)``, cast to float64, empty
  bins set to float32 eps, renormalised to sum 1;
- KL_sym = ``scipy.stats.entropy(p, q) + entropy(q, p)`` (natural log), D = Σ_i η_i KL_sym;
- groups = pandas ``groupby`` of the label (rows without a label drop out of the groups, not of the PCA);
  depth deciles by ``pd.cut(conv_depth_norm, 10 equal bins over [0, 1], include_lowest=True)``;
- display order: rows sorted by their mean drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import entropy
from sklearn.decomposition import PCA

EPS = np.finfo(np.float32).eps
BINS = 70


def scale(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """The notebook's ``scale``: X / max|X| per row; a zero row is divided by 1. In float64 for the tests (the
    notebook ran in float32, ``dtype=np.float32``, which the benchmark uses for a like-for-like cost)."""
    x = np.asarray(x, dtype)
    den = np.abs(x).max(axis=1)
    den = np.where(den == 0, 1, den)[:, None]
    return x / den


@dataclass
class Basis:
    mean: np.ndarray
    components: np.ndarray  # rows
    explained_variance_ratio: np.ndarray

    def transform(self, xs: np.ndarray) -> np.ndarray:
        return (xs - self.mean) @ self.components.T


def fit_pca(xs: np.ndarray) -> Basis:
    """scikit-learn's PCA on the scaled filters, then scikit-learn 0.24.1's U-based signs."""
    pca = PCA(n_components=xs.shape[1], svd_solver="full").fit(xs)
    u = pca.transform(xs)  # = U · S: the same column signs as U
    rows = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[rows, np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return Basis(pca.mean_.copy(), pca.components_ * signs[:, None], pca.explained_variance_ratio_.copy())


def density_eps(values: np.ndarray, value_range: tuple[float, float], bins: int = BINS) -> np.ndarray:
    """One histogram as the notebook turns it into probabilities."""
    p = np.histogram(values, bins=bins, range=value_range, density=True)[0].astype(np.float64)
    p[p == 0] = EPS
    return p / p.sum()


def drift_matrix(coefficients: np.ndarray, labels: Sequence, weights: np.ndarray,
                 value_range: tuple[float, float], bins: int = BINS) -> tuple[list, np.ndarray]:
    """(groups in pandas groupby order, D between every pair). Rows whose label is missing belong to no group."""
    frame = pd.DataFrame({"label": pd.Series(list(labels), dtype=object)})
    groups = list(frame.groupby("label", sort=True, observed=True).groups.items())
    names = [g for g, _ in groups]
    dists = [[density_eps(coefficients[np.asarray(idx), i], value_range, bins) for i in range(coefficients.shape[1])]
             for _, idx in groups]
    out = np.zeros((len(names), len(names)))
    for a in range(len(names)):
        for b in range(len(names)):
            out[a, b] = sum(weights[i] * (entropy(dists[a][i], dists[b][i]) + entropy(dists[b][i], dists[a][i]))
                            for i in range(coefficients.shape[1]))
    return names, out


def display_order(names: list, matrix: np.ndarray) -> list:
    """The notebook's display: groups by ascending mean row value."""
    return [names[i] for i in np.argsort(matrix.mean(axis=1), kind="stable")]


def depth_deciles(conv_depth_norm: np.ndarray) -> pd.Categorical:
    return pd.cut(np.asarray(conv_depth_norm, np.float64), np.linspace(0, 1, 11), include_lowest=True)


def paper(filters: np.ndarray, labels: Sequence, bins: int = BINS, dtype: type = np.float64
          ) -> tuple[Basis, tuple[float, float], list, np.ndarray]:
    """The notebook end to end: (basis, range, groups, matrix) for one grouping of the rows of ``filters``."""
    xs = scale(filters, dtype)
    basis = fit_pca(xs)
    c = basis.transform(xs)
    value_range = (float(c.min()), float(c.max()))
    names, matrix = drift_matrix(c, labels, basis.explained_variance_ratio, value_range, bins)
    return basis, value_range, names, matrix


def medical(filters: np.ndarray, labels: Sequence, mean: np.ndarray, components: np.ndarray,
            bins: int = BINS) -> tuple[list, np.ndarray]:
    """The medical follow-up: coefficients on a given basis, range (−3, 3), uniform weights 1/d."""
    c = (scale(filters) - mean) @ np.asarray(components).T
    d = c.shape[1]
    return drift_matrix(c, labels, np.full(d, 1.0 / d), (-3.0, 3.0), bins)
