"""Data-free scores of a layer's output channels: what each channel adds that the others do not.

A channel is one output filter bank ``W[c]`` (its ``I/g × k × k`` weights flattened). Three facts are read
from the weights alone:

- **zero**: every weight of the channel is at most ``zero_eps`` times the layer's largest ``|w|`` (the
  sparsity rule of docs/metrics.md applied to whole channels). Such a channel contributes nothing but its
  bias: removing it is free where the bias (and a following batch norm's shift) is zero too.
- **duplicate**: the channel's direction is within ``duplicate_cos`` (cosine, signed: a negated copy is not
  redundant after a ReLU) of a channel that is kept, so the layer keeps that information when it goes.
- **importance**: the norm of the part of ``W[c]`` that the channels chosen before it do not explain, in
  the greedy order of a column-pivoted QR decomposition (the classic rank-revealing column-subset choice):
  the strongest channel first, then whichever adds the most new direction, and so on. Magnitude alone
  ranks two copies of one strong filter both high; this score ranks the second copy near zero. A layer with
  more channels than values per channel (a stem on a grey image: 16 channels of 1×3×3) spans its whole
  filter space with the first few, so past that rank the residual is zero by construction and says
  nothing about the channel: such a layer is scored by the channels' norms instead.

Everything comes from one Gram matrix ``G = W Wᵀ`` per layer (``O × O``): the cosines are ``G`` scaled by the
norms, and LAPACK's pivoted Cholesky of ``G`` (``dpstrf``) picks the same pivots with the same residual
norms as the pivoted QR of ``Wᵀ``, at the cost of one matrix product instead of a QR of ``I·k·k × O``.

The ``energy`` and ``compensated`` strategies rank channels by energy, not novelty: of the above they need only
``zero`` and ``duplicate_of`` (and ``max_cosine`` of the duplicates), and the pivot order only to say which of
two near-duplicates is the earlier one. They first screen the layer in float32 (:func:`_screen`): unit rows,
one matrix product of a quarter of their columns plus a Cauchy–Schwarz bound for the rest, all within a proven
rounding bound of the float64 cosines. A layer where no pair can reach ``duplicate_cos`` has no duplicate
whatever the order, so neither the float64 Gram matrix nor the pivoted Cholesky is computed; any other layer
is scored exactly as :func:`channel_scores` scores it. Same plans, byte for byte (tests/test_prune_screen.py);
the time saved is measured in docs/prune.md, "Speed".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChannelScores", "channel_scores", "layer_scores", "unpaired_scores", "STRATEGIES"]

# How the plan ranks a layer's channels (PlanSettings.strategy, `filterdb prune --strategy`; docs/prune.md):
STRATEGIES: dict[str, str] = {
    "novelty": "greedy novelty: the pivoted-QR residual of each channel against the channels before it",
    "energy": "filter energy: the channel's squared weights times the squared input weights its consumer gives "
              "it, each against its layer's mean (layer-wise normalisation: no layer is zeroed for its shape)",
    "compensated": "energy, with near-duplicate channels ranked by what their kept twin does not explain "
                   "(energy × sin of the angle): they go first, and filterdb.integrations.torch_pruning merges "
                   "them into the twin and folds the removed channels' means into the next layer",
}


@dataclass(frozen=True)
class ChannelScores:
    """Per output channel of one layer (arrays of length ``out_channels``)."""

    importance: np.ndarray  # float64, new-information norm in the pivoted-QR order, scaled so the max is 1
    order: np.ndarray  # int64, channels from most to least important (the QR pivot order)
    zero: np.ndarray  # bool, every weight ≤ zero_eps × the layer's max |w|
    duplicate_of: np.ndarray  # int64, the kept channel this one nearly duplicates, -1 when none
    # float64, the largest cosine to any other channel (layer_scores' energy strategies: exact for the channels
    # that reach duplicate_cos, elsewhere an upper bound below it; they use it for duplicates only)
    max_cosine: np.ndarray

    @property
    def n_zero(self) -> int:
        return int(self.zero.sum())

    @property
    def n_duplicate(self) -> int:
        return int((self.duplicate_of >= 0).sum())


def channel_scores(weight: np.ndarray, *, zero_eps: float = 0.01, duplicate_cos: float = 0.95) -> ChannelScores:
    """Score the output channels of one convolution weight ``(O, I/g, *kernel)``.

    Examples
    --------
    >>> w = np.zeros((3, 1, 3, 3)); w[0, 0, 1, 1] = 1.0; w[1] = 2 * w[0]; w[2, 0, 0, 0] = 0.5  # 0 repeats 1
    >>> s = channel_scores(w)
    >>> s.duplicate_of.tolist(), s.order.tolist()
    ([1, -1, -1], [1, 2, 0])
    """
    flat = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    n = flat.shape[0]
    absolute_max = np.abs(flat).max(axis=1) if flat.size else np.zeros(n)
    layer_max = float(absolute_max.max()) if n else 0.0
    zero = absolute_max <= zero_eps * layer_max if layer_max > 0 else np.ones(n, dtype=bool)
    gram = flat @ flat.T
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    if flat.shape[1] >= n:
        importance, order = _greedy_novelty(gram, norms)
    else:  # more channels than filter values: novelty is zero past rank by construction (see the module doc)
        importance = norms / norms.max() if n and norms.max() > 0 else np.zeros(n)
        order = np.argsort(-importance, kind="stable").astype(np.int64)
    importance[zero] = 0.0
    max_cosine, duplicate_of = _duplicates(gram, norms, zero, order, duplicate_cos)
    return ChannelScores(importance=importance, order=order, zero=zero, duplicate_of=duplicate_of,
                         max_cosine=max_cosine)


def unpaired_scores(weight: np.ndarray, *, zero_eps: float = 0.01) -> ChannelScores:
    """Scores that compare no pair of channels (no duplicates; importance the channel norms), in memory linear in
    the weights: for a layer too wide for the O x O matrices of :func:`channel_scores`, which the plan leaves
    alone."""
    rows = np.asarray(weight).reshape(weight.shape[0], -1)
    n = rows.shape[0]
    absolute_max = np.maximum(rows.max(axis=1), -rows.min(axis=1)).astype(np.float64) if rows.size else np.zeros(n)
    layer_max = float(absolute_max.max()) if n else 0.0
    zero = absolute_max <= zero_eps * layer_max if layer_max > 0 else np.ones(n, dtype=bool)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    top = float(norms.max()) if n and np.isfinite(norms).all() else 0.0
    importance = np.where(zero, 0.0, norms / top) if top > 0 else np.zeros(n)
    return ChannelScores(importance=importance, order=np.argsort(-importance, kind="stable").astype(np.int64),
                         zero=zero, duplicate_of=np.full(n, -1, dtype=np.int64), max_cosine=np.zeros(n))


def _greedy_novelty(gram: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pivot order and residual norms of the pivoted Cholesky of ``gram``, the largest scaled to 1."""
    n = len(norms)
    importance = np.zeros(n)
    if n == 0 or float(norms.max()) == 0.0:
        return importance, np.argsort(-norms, kind="stable").astype(np.int64)
    # scipy is imported here, not at the top: loading scipy.linalg is a third of `filterdb prune`'s start-up,
    # and the default strategy reaches this line only for a layer with near-duplicate channels
    import scipy.linalg.lapack

    factor, pivots, rank, _ = scipy.linalg.lapack.dpstrf(gram, tol=-1.0, lower=0)
    pivots = pivots.astype(np.int64) - 1  # LAPACK counts from 1
    # past the numerical rank the trailing block is not factored: those channels add nothing new
    importance[pivots[:rank]] = np.abs(np.diag(factor)[:rank]) / norms.max()
    order = pivots[np.argsort(-importance[pivots], kind="stable")]
    return importance, order


def _duplicates(gram: np.ndarray, norms: np.ndarray, zero: np.ndarray, order: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Largest |cosine| per channel, and for each channel the earlier (more important) one it repeats."""
    n = len(norms)
    safe = np.where(norms > 0, norms, 1.0)
    cos = gram / safe[:, None] / safe[None, :]
    np.fill_diagonal(cos, 0.0)
    cos[zero, :] = 0.0
    cos[:, zero] = 0.0
    max_cosine = cos.max(axis=1) if n > 1 else np.zeros(n)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    if n > 1:  # in importance order, each channel's first earlier channel at the threshold (one pass, no loop)
        close = cos[np.ix_(order, order)] >= threshold
        close &= np.tri(n, k=-1, dtype=bool)
        found = close.any(axis=1)
        duplicate_of[order[found]] = order[close[found].argmax(axis=1)]
    return max_cosine, duplicate_of


def layer_scores(weights: list[np.ndarray], consumers: list[np.ndarray | None], strategy: str = "novelty", *,
                 zero_eps: float = 0.01, duplicate_cos: float = 0.95) -> list[ChannelScores]:
    """Scores of every layer's channels under one of :data:`STRATEGIES`.

    ``consumers[i]`` is the weight of the layer that reads layer ``i``'s channels (``None`` when unknown): its
    input weights of a channel say how much the network listens to that channel, which the channel's own
    weights cannot say when a batch norm rescales them.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    out = []
    for weight, consumer in zip(weights, consumers):
        if strategy == "novelty":
            out.append(channel_scores(weight, zero_eps=zero_eps, duplicate_cos=duplicate_cos))
            continue
        base = _screen(weight, zero_eps, duplicate_cos)
        importance = _energy(weight, consumer)
        if strategy == "compensated":
            duplicate = base.duplicate_of >= 0
            sine = np.sqrt(np.clip(1.0 - base.max_cosine ** 2, 0.0, 1.0))
            importance = np.where(duplicate, importance * sine, importance)
        importance[base.zero] = 0.0
        top = float(importance.max()) if importance.size else 0.0
        importance = importance / top if top > 0 else importance
        order = np.argsort(-importance, kind="stable").astype(np.int64)
        out.append(ChannelScores(importance=importance, order=order, zero=base.zero,
                                 duplicate_of=base.duplicate_of, max_cosine=base.max_cosine))
    return out


# float32's unit roundoff: a float32 dot product of length d is within d·u·|x|·|y| of the exact one, whatever
# the summation order (Higham, "Accuracy and Stability of Numerical Algorithms", eq. 3.5, γ_d)
_U32 = 2.0 ** -24


def _screen(weight: np.ndarray, zero_eps: float, duplicate_cos: float) -> ChannelScores:
    """``zero`` and ``duplicate_of`` as :func:`channel_scores` gives them, from a float32 screen.

    Each row is scaled to unit norm: the norm in float64, then the row (if float64), the scale and the product
    each rounded to float32, a relative error ≤ 3u per value (u = 2⁻²⁴). A float32 cosine of two such rows is
    then within ``(d + 6)·u`` of the exact cosine (6u from the rows, γ_d ≈ d·u for the dot product, as
    |x̂|·|ŷ| ≤ 1), and channel_scores' float64 cosines are within far less than u of it. When no screened
    cosine (:func:`_max_cosine_bound`) reaches ``duplicate_cos`` minus twice ``(d + 8)·u``, no channel can be a
    duplicate in any order: the result is final. Otherwise the layer goes through :func:`channel_scores`
    unchanged. ``max_cosine`` is then an upper bound below ``duplicate_cos``, which the strategies use only for
    duplicates; ``importance`` and ``order`` are placeholders they replace.
    """
    rows = np.asarray(weight).reshape(weight.shape[0], -1)
    if rows.dtype not in (np.float32, np.float64):  # float16, integers: as channel_scores reads them
        rows = rows.astype(np.float64)
    n, d = rows.shape
    # max |w| = max(max w, -min w), exact in any float type (no |w| copy): channel_scores' zero mask
    absolute_max = (np.maximum(rows.max(axis=1), -rows.min(axis=1)).astype(np.float64) if rows.size
                    else np.zeros(n))
    layer_max = float(absolute_max.max()) if n else 0.0
    zero = absolute_max <= zero_eps * layer_max if layer_max > 0 else np.ones(n, dtype=bool)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    live = ~zero & (norms > 0)  # channel_scores zeroes the cosines of near-zero channels: a zero row does too
    if not np.isfinite(norms).all() or (live.any() and float(norms[live].min()) < 1e-30):
        # NaN or inf weights, or norms so small that 1/norm overflows float32: the exact path, as before
        return channel_scores(weight, zero_eps=zero_eps, duplicate_cos=duplicate_cos)
    scale = np.divide(1.0, norms, out=np.zeros(n), where=live)[:, None].astype(np.float32)
    unit = np.multiply(rows, scale, dtype=np.float32, casting="same_kind")
    at = duplicate_cos - (2.0 * (d + 8) * _U32 + 1e-9)
    max_cosine = _max_cosine_bound(unit, at) if n > 1 else np.zeros(n)
    if n > 1 and float(max_cosine.max()) >= at:  # a duplicate is possible: the exact path
        return channel_scores(weight, zero_eps=zero_eps, duplicate_cos=duplicate_cos)
    return ChannelScores(importance=np.zeros(n), order=np.arange(n, dtype=np.int64), zero=zero,
                         duplicate_of=np.full(n, -1, dtype=np.int64), max_cosine=max_cosine)


def _max_cosine_bound(unit: np.ndarray, at: float) -> np.ndarray:
    """Per unit row, an upper bound of its largest cosine to another row; the float32 cosine itself where the
    bound reaches ``at``.

    Cauchy–Schwarz on a split of the columns into a head A (the first quarter) and the rest B gives
    ``x·y ≤ x_A·y_A + |x_B|·|y_B|``: one matrix product of the rows ``[x_A, |x_B|]`` (a quarter of the
    columns plus one) bounds every pair, and only the rows whose bound reaches ``at`` get their full products.
    The rows ``[x_A, |x_B|]`` are unit vectors again, so the product's rounding (and the rounding of ``|x_B|``)
    stays within ``(d/4 + 3)·u`` of the bound, inside the screen's margin. A layer with few columns gets the
    full product at once.
    """
    n, d = unit.shape
    k = d // 4
    if k < 64:  # the whole Gram matrix is cheap; the bound would be too loose to save anything
        cos = unit @ unit.T
        np.fill_diagonal(cos, 0.0)
        return cos.max(axis=1).astype(np.float64)
    split = np.empty((n, k + 1), dtype=np.float32)
    split[:, :k] = unit[:, :k]
    split[:, k] = np.sqrt(np.einsum("ij,ij->i", unit[:, k:], unit[:, k:], dtype=np.float64))
    bound = split @ split.T
    np.fill_diagonal(bound, 0.0)
    upper = bound.max(axis=1).astype(np.float64)
    near = np.flatnonzero(upper >= at)
    if near.size:  # these rows' real cosines, against every row
        full = unit[near] @ unit.T
        full[np.arange(near.size), near] = 0.0
        upper[near] = full.max(axis=1)
    return upper


def _energy(weight: np.ndarray, consumer: np.ndarray | None) -> np.ndarray:
    """sqrt of (own energy / layer mean) × (consumer's input energy / its mean), per output channel."""
    # squares in float64 straight from the stored weights (no float64 copy first): the same values, summed in
    # the same order, as squaring a float64 copy
    own = _squares(weight).reshape(weight.shape[0], -1).sum(axis=1)
    own = own / own.mean() if own.size and own.mean() > 0 else own
    n = weight.shape[0]
    if consumer is not None and consumer.ndim >= 3:
        c = consumer
        if c.shape[1] == n:  # a conv that reads all n channels (groups 1)
            listened = _squares(c).sum(axis=tuple(a for a in range(c.ndim) if a != 1))
        elif c.shape[0] == n and c.shape[1] == 1:  # depthwise: channel c feeds filter c only
            listened = _squares(c).reshape(n, -1).sum(axis=1)
        else:
            listened = None
        if listened is not None and listened.mean() > 0:
            own = own * (listened / listened.mean())
    return np.sqrt(own)


def _squares(weight: np.ndarray) -> np.ndarray:
    return np.square(np.asarray(weight), dtype=np.float64)
