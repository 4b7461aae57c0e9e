"""Data-free layer metrics of convolution weights (docs/reference.md §6).

Every metric is a plain function of arrays; :func:`layer_metrics` computes all of them for many layers at
once, batching the entropy eigen-decompositions of all layers that share a filter size.

Definitions (n filters of d = kh·kw values, X the n × d filter matrix, W the layer weight):

- **sparsity**: t = ε·max|W| (rounded to float32, as torchconvquality compares in float32); a filter is
  sparse when all its |w| < t; sparsity = sparse filters / n. An all-zero layer uses t = 1: every
  filter is sparse, sparsity 1.0.
- **variance_entropy**: the eigenvalues of the covariance of X (the same numbers as s²/(n−1) from an SVD
  of the centred X), clamped at 0 below d·ε_float64·max (round-off of an exact zero),
  p = v/Σv, H = −Σ p log10 p with 0·log 0 = 0, and H = 0 when Σv = 0. Range [0, log10 d]. With fewer
  filters than taps (n < d) the eigenvalues come from the n × n Gram Xc Xcᵀ (the same nonzero ones), so no
  matrix is larger than the layer (a 1 × 100000 kernel would need an 80 GB covariance).
- **variance_entropy_norm**: H / T(n) with :func:`randomness_threshold` (torchconvquality's fit for 3×3,
  a simulated table for other sizes). > 1 reads random-like, ≈ 0.9 healthy, near 0 redundant.
- **variance_entropy_clean(_norm)**: the same over the non-sparse filters, normalised by T(n_clean).
- **orthogonality**: rows of W.reshape(O, −1) L2-normalised (zero rows stay zero), G = W Wᵀ,
  1 − Σ|G − I| / (O(O − 1)), the sum running over all entries, diagonal included (as torchconvquality:
  a zero output channel costs |0 − 1| = 1). Computed on dimension 0 of the canonical weight, i.e. over
  output channels, and over input channels for a transposed convolution, whose weight is (I, O/g, …).
  G comes from one float32 syrk normalised by its diagonal (error ~1e-8); a row whose squares underflow
  float32 (all |w| < ~1e-19) counts as a zero row, as in torchconvquality.
- **norm_l1, norm_l2**: Σ|w| and ‖w‖₂ of the whole layer weight. **norm_l1_std, norm_l2_std**: the same
  norms per weight, Σ|w|/N and ‖w‖₂/√N (mean absolute weight and RMS weight), so that layers of
  different sizes compare. torchconvquality 0.3.0 (the newest release on the package index) reports no
  norms; a later source tree is said to add L1/L2 norms "of standardised weights", but the norms of
  z-scored weights are constants (‖z‖₂ = √N), so filterdb normalises by the number of weights instead.
- **neighbour_corr**: the Pearson correlation of all pairs of horizontally and vertically adjacent taps of
  the layer's filters, pooled (one mean for the left/upper taps, one for the right/lower ones). ≈ 0 for
  random initialisation, 0.1 – 0.6 for trained layers. NaN for kernels with fewer than 2 taps in both
  dimensions (1×1), or when the taps have no variance (an all-zero layer).

Edge cases, where torchconvquality 0.3.0 gives NaN or fails and filterdb gives a defined value:

- **one filter** (n = 1): entropy 0 (tcq: NaN from 0/0), norm 0; orthogonality NaN when O = 1
  (tcq: NaN, or −inf from a round-off residue divided by 0). NaN becomes ``None`` in reports: "undefined", not a number to average.
- **fewer filters than d, rank-deficient layers, rank-1 layers**: zero variances contribute 0·log 0 = 0
  (tcq: NaN whenever a singular value is exactly 0, e.g. a tap that is 0 in every filter). A rank-1
  layer has entropy exactly 0.
- **normalised entropy when H = 0**: 0, whatever T(n); T(n) ≤ 0 only for n ≤ 2 (3×3), where H is 0.
- **all-zero layer**: sparsity 1.0, entropy 0, entropy_clean 0 over no filters (tcq: the same, with a
  clean norm of −0.0 from T(0) = −0.31),
  orthogonality 1 − O/(O(O − 1)) from the diagonal terms (as tcq), neighbour_corr NaN.
- **no or one non-sparse filter**: variance_entropy_clean = 0 and its norm 0 (tcq: NaN for one).
- **1×1 kernels**: entropy 0 and variance_entropy_norm NaN (one value per filter has no spectrum).
  Filter sizes without a threshold (see :func:`filterdb._thresholds.supported_sizes`): norm NaN.
- **non-finite weights** (NaN/±Inf): counted in ``n_nonfinite``; every metric is computed on the weight
  with those values replaced by 0, so the row stays comparable, and :func:`filterdb.check.check_model`
  reports the layer as "non-finite" (tcq: NaN everywhere or an SVD error).
- **float16 / int8 storage**: readers deliver float32 (dequantised) weights; the metrics see those and
  ``storage_dtype`` records the original type.
- **layers without 2-D filters** (Conv1d, Conv3d) and empty layers: every metric is NaN ("no 2-D
  filters"), except ``n_nonfinite``.

Examples
--------
>>> import numpy as np
>>> from filterdb.metrics import variance_entropy, sparsity
>>> x = np.eye(9, dtype=np.float32)          # nine orthogonal filters: maximal diversity
>>> round(variance_entropy(x), 3)
0.903
>>> sparsity(np.zeros((4, 9), np.float32))   # an all-zero layer is all sparse
1.0
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ._thresholds import randomness_threshold
from .errors import UsageError
from .types import ConvLayer

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "layer_metrics",
    "layer_metric_columns",
    "metrics_frame",
    "object_column",
    "sparsity",
    "sparse_mask",
    "variance_entropy",
    "randomness_threshold",
    "orthogonality",
    "neighbour_tap_correlation",
    "weight_norms",
]

COLUMNS = (
    "name", "kind", "op_type", "shape", "groups", "kernel", "n_filters", "conv_depth", "conv_depth_norm",
    "depth_source", "storage_dtype", "sparsity", "variance_entropy", "variance_entropy_norm",
    "variance_entropy_clean", "variance_entropy_clean_norm", "orthogonality", "norm_l1", "norm_l2",
    "norm_l1_std", "norm_l2_std", "neighbour_corr", "n_nonfinite",
    # extras (added after the contract columns; never renamed)
    "n_sparse", "n_clean", "entropy_threshold",
)
"""Columns of :func:`layer_metrics`, in order."""

_METRIC_COLUMNS = (
    "sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
    "variance_entropy_clean_norm", "orthogonality", "norm_l1", "norm_l2", "norm_l1_std", "norm_l2_std",
    "neighbour_corr", "n_sparse", "n_clean", "entropy_threshold",
)

# Eigenvalues below this fraction (times d) of the largest are round-off of an exact zero: the covariance's
# eigenvalues carry absolute errors of about eps_float64 * max, far below any real variance of float32 data.
_EIG_RTOL = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------------- validation
def _check_eps(eps: float, name: str = "eps") -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number in (0, 1], got {eps!r}") from None
    if not 0.0 < value <= 1.0:
        raise UsageError(f"{name} must be in (0, 1], got {eps!r}")
    return value


def _as_filters(filters: Any, name: str = "filters") -> np.ndarray:
    array = np.asarray(filters)
    if array.ndim != 2:
        raise UsageError(f"{name} must be a 2-D (n_filters, kh*kw) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UsageError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def _finite(array: np.ndarray) -> tuple[np.ndarray, int]:
    """The array with non-finite values replaced by 0, and how many there were."""
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every value is: one cheap
    # pass instead of a boolean mask for the (usual) clean layer.
    if np.isfinite(array.sum(dtype=np.float64)):
        return array, 0
    bad = ~np.isfinite(array)
    return np.where(bad, 0, array).astype(array.dtype, copy=False), int(bad.sum())


# ------------------------------------------------------------------------------------- single-array metrics
def sparse_mask(filters: Any, *, eps: float = 0.01) -> np.ndarray:
    """Boolean mask of the sparse filters: all |w| < eps · max|W| (t = 1 for an all-zero layer).

    Parameters
    ----------
    filters : array_like, shape (n, d)
        The layer's filters, one per row.
    eps : float, default 0.01
        Fraction of the layer's largest |w|, in (0, 1].

    Returns
    -------
    numpy.ndarray of bool, shape (n,)

    Examples
    --------
    >>> sparse_mask(np.array([[1.0, -2.0], [0.001, 0.0]]))
    array([False,  True])
    """
    x = _as_filters(filters)
    eps = _check_eps(eps)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    x, _ = _finite(x.astype(np.float32, copy=False))
    return _sparse_mask_f32(np.abs(x).max(axis=1), eps)


def _sparse_mask_f32(row_max: np.ndarray, eps: float) -> np.ndarray:
    # torchconvquality compares float32 |w| with a Python float, which torch rounds to float32: do the same
    # so that filters exactly at the boundary get the same verdict.
    t = np.float32(float(row_max.max()) * eps) if row_max.size else np.float32(1.0)
    if t == 0:
        t = np.float32(1.0)
    return row_max < t


def sparsity(filters: Any, *, eps: float = 0.01) -> float:
    """Share of sparse filters: filters whose every |w| is below eps · max|W_layer| (docs/reference.md §6).

    Parameters
    ----------
    filters : array_like, shape (n, d)
        The layer's filters, one per row (``ConvLayer.filters()``).
    eps : float, default 0.01
        Fraction of the layer's largest |w| under which a value counts as zero, in (0, 1].

    Returns
    -------
    float
        In [0, 1]; 1.0 for an all-zero layer; NaN for an empty layer.

    Examples
    --------
    >>> sparsity(np.array([[1.0, 1.0], [0.0, 0.005]]))
    0.5
    """
    mask = sparse_mask(filters, eps=eps)
    return float(mask.mean()) if mask.size else float("nan")


def _entropy_from_eigvals(ev: np.ndarray, dims: np.ndarray | None = None) -> np.ndarray:
    """Variance entropy (log10) of each row of eigenvalues ev (B, m): clamp, normalise, 0·log 0 = 0.

    ``dims`` (B,): the filter size d of each row, which scales the round-off clamp (default m; the eigenvalues
    of an n × n filter Gram, n < d, carry the round-off of sums over d taps).
    """
    ev = np.array(ev, dtype=np.float64, copy=True)
    top = ev.max(axis=1, keepdims=True) if ev.shape[1] else np.zeros((ev.shape[0], 1))
    scale = np.full((ev.shape[0], 1), ev.shape[1], np.float64) if dims is None else \
        np.asarray(dims, np.float64).reshape(-1, 1)
    ev[ev < scale * _EIG_RTOL * np.maximum(top, 0.0)] = 0.0
    ev[ev < 0] = 0.0
    total = ev.sum(axis=1, keepdims=True)
    p = np.divide(ev, total, out=np.zeros_like(ev), where=total > 0)
    logp = np.log10(p, out=np.zeros_like(p), where=p > 0)
    h = -(p * logp).sum(axis=1)
    return np.maximum(h, 0.0)  # -0.0 and round-off below zero read as 0


def _centred_scatter(x64: np.ndarray) -> np.ndarray:
    """The smaller of Xcᵀ Xc (d × d: (n−1) times the covariance; the scale cancels in p) and Xc Xcᵀ (n × n)
    of the column-centred float64 matrix: both have the same nonzero eigenvalues, so the same entropy, and
    the smaller one costs at most the size of X (a 1 × 100000 kernel would need d² = 80 GB otherwise)."""
    n, d = x64.shape
    if n == 0:
        return np.zeros((min(d, 1), min(d, 1)))
    xc = x64 - x64.mean(axis=0)
    return xc @ xc.T if n < d else xc.T @ xc


def variance_entropy(filters: Any) -> float:
    """Variance entropy H of a layer's filters, log10 (docs/reference.md §6).

    Eigenvalues of the filters' covariance (= s²/(n−1) of the centred matrix's singular values),
    p = v / Σv, H = −Σ p log10 p, with 0·log 0 = 0 and H = 0 when Σv = 0 (one filter, identical filters,
    an all-zero layer, 1×1 kernels). Non-finite values count as 0.

    Parameters
    ----------
    filters : array_like, shape (n, d)
        The layer's filters, one per row.

    Returns
    -------
    float
        In [0, log10 d] (0.954 for 3×3).

    Examples
    --------
    >>> round(variance_entropy(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])), 4)  # log10(2)
    0.301
    """
    x = _as_filters(filters)
    x, _ = _finite(x)
    ev = np.linalg.eigvalsh(_centred_scatter(x.astype(np.float64)))
    return float(_entropy_from_eigvals(ev[None, :], np.array([x.shape[1]]))[0])


def _normalised(h: float, n: int, kernel: tuple[int, ...]) -> tuple[float, float]:
    """(H / T(n), T(n)) with the documented conventions: 0 when H = 0; NaN where T is undefined."""
    d = math.prod(kernel)
    if d <= 1:
        return float("nan"), float("nan")
    t = randomness_threshold(max(int(n), 1), kernel)
    if h == 0.0:
        return 0.0, t
    return (h / t if t > 0 else float("nan")), t


def orthogonality(weight: Any) -> float:
    """Orthogonality of a layer's output channels (docs/reference.md §6).

    Each slice ``weight[o]`` is flattened and L2-normalised (zero rows stay zero); with G = W Wᵀ,
    orthogonality = 1 − Σ|G − I| / (O(O − 1)), summed over all entries including the diagonal.

    Parameters
    ----------
    weight : array_like, shape (O, ...)
        A convolution weight in canonical layout (any number of trailing dimensions).

    Returns
    -------
    float
        1 for orthonormal channels, 0 for identical ones; NaN for O = 1 (undefined) or O = 0.

    Examples
    --------
    >>> orthogonality(np.eye(4).reshape(4, 1, 2, 2))
    1.0
    """
    w = np.asarray(weight)
    if w.ndim < 2:
        raise UsageError(f"weight must have an output-channel axis and at least one more, got shape {w.shape}")
    w, _ = _finite(w)
    return _orthogonality(w.reshape(w.shape[0], -1))


def _orthogonality(w2: np.ndarray) -> float:
    o = w2.shape[0]
    if o < 2:
        return float("nan")
    # One float32 syrk on the raw rows (numpy hands A @ A.T to BLAS syrk: half the flops of a GEMM), then
    # normalise G by its diagonal in float64: G_ij / (|w_i| |w_j|) equals the Gram of the normalised rows.
    # This is FLOP-bound, so float32 halves the cost; its error is ~1e-8 on the result (tested at 1e-6).
    w32 = np.ascontiguousarray(w2, dtype=np.float32)
    if o * o > _GRAM_BLOCK_ENTRIES:
        return _orthogonality_blocked(w32)
    g = (w32 @ w32.T).astype(np.float64)
    norms = np.sqrt(np.maximum(np.diagonal(g), 0.0))
    norms[norms == 0] = 1.0  # zero rows stay zero (and so do rows whose squares underflow float32, as in tcq)
    g /= norms[:, None]
    g /= norms[None, :]
    diag = np.diagonal(g)
    # Σ|G − I| without building I: every off-diagonal |g| plus |g_ii − 1| on the diagonal.
    total = np.abs(g).sum() - np.abs(diag).sum() + np.abs(diag - 1.0).sum()
    return float(1.0 - total / (o * (o - 1)))


# Above this many entries (O², 4096 output channels) the O × O Gram of orthogonality is summed block by block:
# a 1 × 1 layer of 100,000 channels (400 KB of weights) would otherwise allocate 40 GB at once.
_GRAM_BLOCK_ENTRIES = 1 << 24


def _orthogonality_blocked(w32: np.ndarray) -> float:
    """:func:`_orthogonality` with G formed in row blocks of at most _GRAM_BLOCK_ENTRIES entries."""
    o = w32.shape[0]
    norms = np.sqrt(np.maximum(np.einsum("ok,ok->o", w32, w32).astype(np.float64), 0.0))
    norms[norms == 0] = 1.0
    rows = max(1, _GRAM_BLOCK_ENTRIES // o)
    total = 0.0
    for a in range(0, o, rows):
        b = min(o, a + rows)
        g = (w32[a:b] @ w32.T).astype(np.float64)
        g /= norms[a:b, None]
        g /= norms[None, :]
        diag = g[np.arange(b - a), np.arange(a, b)]
        total += float(np.abs(g).sum() - np.abs(diag).sum() + np.abs(diag - 1.0).sum())
    return float(1.0 - total / (o * (o - 1)))


def neighbour_tap_correlation(filters: Any, *, kernel: tuple[int, int]) -> float:
    """Pooled lag-1 correlation of horizontally and vertically adjacent filter taps.

    All pairs (f[i, j], f[i, j+1]) and (f[i, j], f[i+1, j]) of all filters of the layer are pooled into
    one Pearson correlation. Random initialisation gives ≈ 0; trained layers 0.1 – 0.6 (smooth filters).

    Parameters
    ----------
    filters : array_like, shape (n, kh*kw)
        The layer's filters, row-major taps.
    kernel : tuple of int
        (kh, kw).

    Returns
    -------
    float
        In [−1, 1]; NaN when kh < 2 and kw < 2, or when the taps have no variance.

    Examples
    --------
    >>> f = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])  # 2x2 filters: rows constant
    >>> round(neighbour_tap_correlation(f, kernel=(2, 2)), 3)
    0.0
    """
    x = _as_filters(filters)
    if len(kernel) != 2 or math.prod(kernel) != x.shape[1]:
        raise UsageError(f"kernel must be (kh, kw) with kh*kw == {x.shape[1]} (the filters' width), got {kernel!r}")
    x, _ = _finite(x)
    return _neighbour_corr(x.astype(np.float64), (int(kernel[0]), int(kernel[1])))


def _neighbour_pairs(kernel: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (first, second) of every horizontally and vertically adjacent tap pair."""
    kh, kw = kernel
    idx = np.arange(kh * kw).reshape(kh, kw)
    first = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    second = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    return first, second


def _neighbour_corr_from_gram(gram: np.ndarray, sums: np.ndarray, n: int, kernel: tuple[int, int]) -> float:
    """Pooled Pearson correlation of adjacent taps from the raw Gram XᵀX and the column sums: no extra pass."""
    kh, kw = kernel
    if (kh < 2 and kw < 2) or n == 0:
        return float("nan")
    i, j = _pair_indices(kernel)
    return _pooled_corr(float(gram[i, j].sum()), float(sums[i].sum()), float(sums[j].sum()),
                        float(gram[i, i].sum()), float(gram[j, j].sum()), n * len(i))


def _neighbour_corr_direct(x64: np.ndarray, kernel: tuple[int, int]) -> float:
    """The same from the (n, kh·kw) filters themselves, for kernels too long for a d × d Gram."""
    kh, kw = kernel
    n = x64.shape[0]
    if (kh < 2 and kw < 2) or n == 0:
        return float("nan")
    i, j = _pair_indices(kernel)
    x3 = x64.reshape(n, kh, kw)
    cross = float(np.einsum("fab,fab->", x3[:, :, :-1], x3[:, :, 1:])) + \
        float(np.einsum("fab,fab->", x3[:, :-1, :], x3[:, 1:, :]))
    sums = x64.sum(axis=0)
    squares = np.einsum("fk,fk->k", x64, x64)
    return _pooled_corr(cross, float(sums[i].sum()), float(sums[j].sum()), float(squares[i].sum()),
                        float(squares[j].sum()), n * len(i))


def _pooled_corr(cross: float, sa: float, sb: float, saa: float, sbb: float, count: int) -> float:
    cov = cross - sa * sb / count
    var_a = saa - sa * sa / count
    var_b = sbb - sb * sb / count
    den = math.sqrt(max(var_a, 0.0) * max(var_b, 0.0))
    return float(cov / den) if den > 0 else float("nan")


def _neighbour_corr(x64: np.ndarray, kernel: tuple[int, int]) -> float:
    if x64.shape[0] < x64.shape[1]:  # fewer filters than taps: no d × d Gram
        return _neighbour_corr_direct(x64, kernel)
    return _neighbour_corr_from_gram(x64.T @ x64, x64.sum(axis=0), x64.shape[0], kernel)


def weight_norms(weight: Any) -> dict[str, float]:
    """L1 and L2 norms of a layer weight, raw and per weight (see the module docstring).

    Examples
    --------
    >>> {k: round(v, 4) for k, v in weight_norms(np.array([3.0, -4.0])).items()}
    {'norm_l1': 7.0, 'norm_l2': 5.0, 'norm_l1_std': 3.5, 'norm_l2_std': 3.5355}
    """
    w, _ = _finite(np.asarray(weight))
    return _norms(w.astype(np.float64, copy=False).ravel())


def _norms(flat64: np.ndarray) -> dict[str, float]:
    size = flat64.size
    if size == 0:
        return dict(norm_l1=float("nan"), norm_l2=float("nan"), norm_l1_std=float("nan"), norm_l2_std=float("nan"))
    l1 = float(np.abs(flat64).sum())
    l2 = math.sqrt(float(flat64 @ flat64))
    return dict(norm_l1=l1, norm_l2=l2, norm_l1_std=l1 / size, norm_l2_std=l2 / math.sqrt(size))


# ------------------------------------------------------------------------------------------ batched entry
def layer_metrics(layers: Sequence[ConvLayer], *, sparsity_eps: float = 0.01) -> pd.DataFrame:
    """All metrics of many conv layers, one row per layer in input order (columns: :data:`COLUMNS`).

    The covariance matrices of all layers with the same filter size are stacked and decomposed by one
    ``numpy.linalg.eigvalsh`` call; orthogonality is one ``W Wᵀ`` (BLAS syrk) per layer.

    Parameters
    ----------
    layers : sequence of ConvLayer
        Layers as readers deliver them (``ModelRecord.layers``); layers without 2-D kernels get NaN metrics.
    sparsity_eps : float, default 0.01
        ε of the sparsity threshold t = ε·max|W|, in (0, 1].

    Returns
    -------
    pandas.DataFrame
        ``shape`` and ``kernel`` are tuples; NaN marks an undefined metric (see the module docstring).

    Examples
    --------
    >>> from filterdb.readers._registry import make_layer
    >>> rng = np.random.default_rng(0)
    >>> df = layer_metrics([make_layer("conv1", "Conv", rng.standard_normal((64, 64, 3, 3)))])
    >>> bool(df.loc[0, "variance_entropy_norm"] > 1.0)  # random weights read as random
    True
    """
    return metrics_frame(layer_metric_columns(layers, sparsity_eps=sparsity_eps))


def layer_metric_columns(layers: Sequence[ConvLayer], *, sparsity_eps: float = 0.01) -> dict[str, np.ndarray]:
    """The table of :func:`layer_metrics` as one numpy array per column (:data:`COLUMNS`), without pandas.

    Floats are float64 with NaN for undefined; ``n_sparse`` / ``n_clean`` hold int or None; the other columns
    are object arrays. :func:`metrics_frame` turns it into the DataFrame (``filterdb check`` needs none).
    """
    eps = _check_eps(sparsity_eps, "sparsity_eps")
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the per-layer matrices are small, and on a busy machine OpenBLAS's spinning threads made
    # YOLOv8n's metrics ten times slower (bench/results/check_process.md); the bits no longer vary with cores.
    with threadpool_limits(1, user_api="blas"):
        return _metric_columns(layers, eps)


def _metric_columns(layers: Sequence[ConvLayer], eps: float) -> dict[str, np.ndarray]:
    rows: list[dict[str, Any]] = []
    # per matrix side: the scatter matrices (or filter Grams) to decompose, and where each result goes (row,
    # column); the side is d, or n for layers with fewer filters than taps (see _centred_scatter)
    pending: dict[int, list[tuple[np.ndarray, int, str]]] = defaultdict(list)
    for index, layer in enumerate(layers):
        if not isinstance(layer, ConvLayer):
            raise TypeError(f"layers[{index}] must be a filterdb.ConvLayer, got {type(layer).__name__}")
        weight = np.asarray(layer.weight, dtype=np.float32)
        kernel = layer.kernel
        row: dict[str, Any] = {
            "name": layer.name,
            "kind": layer.kind,
            "op_type": layer.op_type,
            "shape": tuple(int(s) for s in weight.shape),
            "groups": int(layer.groups),
            "kernel": kernel,
            "n_filters": layer.n_filters,
            "conv_depth": layer.conv_depth,
            "conv_depth_norm": layer.conv_depth_norm,
            "depth_source": layer.depth_source,
            "storage_dtype": layer.storage_dtype,
        }
        row.update(_NAN_METRICS)
        if len(kernel) == 2 and weight.size > 0:
            row["n_nonfinite"] = _layer_stats(weight, kernel, eps, row, len(rows), pending)
        else:
            row["n_nonfinite"] = _finite(weight)[1]
        rows.append(row)

    for side, items in pending.items():
        eigvals = np.linalg.eigvalsh(np.stack([scatter for scatter, _, _ in items]))
        dims = np.array([math.prod(rows[row_index]["kernel"]) for _, row_index, _ in items])
        entropies = _entropy_from_eigvals(eigvals, dims).tolist()
        for (_, row_index, column), h in zip(items, entropies):
            row = rows[row_index]
            n = row["n_filters"] if column == "variance_entropy" else row["n_clean"]
            row[column] = h
            norm, threshold = _normalised(h, n, row["kernel"])
            row[column + "_norm"] = norm
            if column == "variance_entropy":
                row["entropy_threshold"] = threshold

    data: dict[str, Any] = {column: [row[column] for row in rows] for column in COLUMNS}
    for column in _FLOAT_COLUMNS:
        data[column] = np.array(data[column], dtype=np.float64)
    for column in ("n_filters", "groups", "n_nonfinite"):
        data[column] = np.array(data[column], dtype=np.int64)
    for column in ("n_sparse", "n_clean"):  # NaN (no 2-D filters) stays missing
        data[column] = object_column([None if v != v else int(v) for v in data[column]])
    for column in (*_OBJECT_COLUMNS, *_TEXT_COLUMNS):
        data[column] = object_column(data[column])
    return data


def metrics_frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """The DataFrame of :func:`layer_metrics` from :func:`layer_metric_columns` (extra columns kept at the end)."""
    import pandas as pd  # lazily: `import filterdb.metrics` stays light

    data = dict(columns)
    for column in _TEXT_COLUMNS:  # as lists: pandas infers their dtypes (e.g. depths without None are int64)
        data[column] = list(data[column])
    for column in ("n_sparse", "n_clean"):  # nullable integers
        mask = np.array([v is None for v in data[column]], dtype=bool)
        data[column] = pd.arrays.IntegerArray(np.array([v or 0 for v in data[column]], dtype=np.int64), mask)
    return pd.DataFrame(data, columns=[*COLUMNS, *(c for c in data if c not in COLUMNS)])


def object_column(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``values``, one element each even when they are tuples or lists (a column of
    :func:`layer_metric_columns` such as ``shape``, or a caller's own, such as check's ``verdicts``)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


_FLOAT_COLUMNS = tuple(c for c in _METRIC_COLUMNS if c not in ("n_sparse", "n_clean"))
_OBJECT_COLUMNS = ("shape", "kernel")
_TEXT_COLUMNS = ("name", "kind", "op_type", "conv_depth", "conv_depth_norm", "depth_source", "storage_dtype")
_NAN_METRICS = dict.fromkeys(_METRIC_COLUMNS, float("nan"))


@lru_cache(maxsize=None)
def _pair_indices(kernel: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    first, second = _neighbour_pairs(kernel)
    first.setflags(write=False)
    second.setflags(write=False)
    return first, second


def _row_abs_max(absolute: np.ndarray) -> np.ndarray:
    """max over axis 1 of a C-contiguous (n, d) array: column-wise maxima over long strided rows for small d."""
    n, d = absolute.shape
    if d > 32:
        return absolute.max(axis=1)
    out = absolute[:, 0].copy()
    for j in range(1, d):
        np.maximum(out, absolute[:, j], out=out)
    return out


def _layer_stats(
    weight: np.ndarray,
    kernel: tuple[int, ...],
    eps: float,
    row: dict[str, Any],
    row_index: int,
    pending: dict[int, list[tuple[np.ndarray, int, str]]],
) -> int:
    """Fill the directly computed metrics of one 2-D layer, queue its scatter matrices; return n_nonfinite."""
    n = row["n_filters"]
    d = kernel[0] * kernel[1]
    x32 = weight.reshape(n, d)
    absolute = np.abs(x32)
    # The float64 sum of |w| is finite exactly when every weight is (float32 values cannot overflow it): the
    # L1 norm doubles as the non-finite check of the (usual) clean layer.
    l1 = float(absolute.sum(dtype=np.float64))
    n_nonfinite = 0
    if not math.isfinite(l1):
        weight, n_nonfinite = _finite(weight)
        x32 = weight.reshape(n, d)
        absolute = np.abs(x32)
        l1 = float(absolute.sum(dtype=np.float64))
    mask = _sparse_mask_f32(_row_abs_max(absolute), eps)
    n_sparse = int(np.count_nonzero(mask))
    if n < d:  # fewer filters than taps (long kernels): no d × d matrix, nothing larger than the weight
        _wide_layer_stats(weight, x32, kernel, mask, l1, row, row_index, pending)
        return n_nonfinite
    # One float64 copy with a column of ones appended: its Gram holds XᵀX, the column sums and n, from one
    # BLAS syrk (products of float32 values are exact in float64).
    xa = np.empty((n, d + 1))
    xa[:, :d] = x32
    xa[:, d] = 1.0
    gram_a = xa.T @ xa
    gram = gram_a[:d, :d]
    sums = gram_a[d, :d]
    trace = float(np.trace(gram))
    l2 = math.sqrt(max(trace, 0.0))
    _size_facts(row, weight, n, n_sparse, l1, l2)
    row["neighbour_corr"] = _neighbour_corr_from_gram(gram, sums, n, (int(kernel[0]), int(kernel[1])))
    # Covariance scatter = XᵀX − n μμᵀ, accumulated in float64 (cancellation only matters when the mean
    # dwarfs the spread by ~1e8, far from real weights).
    outer = np.multiply.outer(sums, sums)
    outer /= n
    scatter = gram - outer
    pending[d].append((scatter, row_index, "variance_entropy"))
    # Clean variant: the same matrix when no filter is sparse (the common case); else subtract the sparse
    # filters' share (tiny values: no cancellation), or recompute when most filters are sparse.
    if n_sparse == 0:
        clean = scatter
    elif n_sparse <= n // 2:
        sparse = xa[mask, :d]
        g_c = gram - sparse.T @ sparse
        s_c = sums - sparse.sum(axis=0)
        clean = g_c - np.outer(s_c, s_c) / (n - n_sparse)
    else:
        clean = _centred_scatter(xa[~mask, :d])
    pending[clean.shape[0]].append((clean, row_index, "variance_entropy_clean"))
    return n_nonfinite


def _size_facts(row: dict[str, Any], weight: np.ndarray, n: int, n_sparse: int, l1: float, l2: float) -> None:
    """The sparsity counts, norms and orthogonality of a layer's row (both layer-stats paths)."""
    size = weight.size
    row["sparsity"] = n_sparse / n
    row["n_sparse"] = n_sparse
    row["n_clean"] = n - n_sparse
    row["norm_l1"] = l1
    row["norm_l2"] = l2
    row["norm_l1_std"] = l1 / size
    row["norm_l2_std"] = l2 / math.sqrt(size)
    row["orthogonality"] = _orthogonality(weight.reshape(weight.shape[0], -1))


def _wide_layer_stats(weight: np.ndarray, x32: np.ndarray, kernel: tuple[int, ...], mask: np.ndarray, l1: float,
                      row: dict[str, Any], row_index: int, pending: dict[int, list[tuple[np.ndarray, int, str]]]
                      ) -> None:
    """_layer_stats for n < d: the n × n Grams of the centred filters instead of the d × d scatter (the same
    nonzero eigenvalues), the neighbour moments from the filters directly. Allocates a few n × d and n × n
    float64 arrays: a small multiple of the weight, which the reader's memory budget already admitted."""
    n, d = x32.shape
    x64 = x32.astype(np.float64)
    n_sparse = int(np.count_nonzero(mask))
    l2 = math.sqrt(float(np.einsum("fk,fk->", x64, x64)))
    _size_facts(row, weight, n, n_sparse, l1, l2)
    row["neighbour_corr"] = _neighbour_corr_direct(x64, (int(kernel[0]), int(kernel[1])))
    scatter = _centred_scatter(x64)
    pending[scatter.shape[0]].append((scatter, row_index, "variance_entropy"))
    clean = scatter if n_sparse == 0 else _centred_scatter(x64[~mask])
    pending[clean.shape[0]].append((clean, row_index, "variance_entropy_clean"))
