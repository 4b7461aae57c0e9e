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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg.lapack

__all__ = ["ChannelScores", "channel_scores", "layer_scores", "STRATEGIES"]

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
    max_cosine: np.ndarray  # float64, the largest cosine to any other channel

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


def _greedy_novelty(gram: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pivot order and residual norms of the pivoted Cholesky of ``gram``, the largest scaled to 1."""
    n = len(norms)
    importance = np.zeros(n)
    if n == 0 or float(norms.max()) == 0.0:
        return importance, np.argsort(-norms, kind="stable").astype(np.int64)
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
        base = channel_scores(weight, zero_eps=zero_eps, duplicate_cos=duplicate_cos)
        if strategy == "novelty":
            out.append(base)
            continue
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


def _energy(weight: np.ndarray, consumer: np.ndarray | None) -> np.ndarray:
    """sqrt of (own energy / layer mean) × (consumer's input energy / its mean), per output channel."""
    flat = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    own = (flat ** 2).sum(axis=1)
    own = own / own.mean() if own.size and own.mean() > 0 else own
    n = flat.shape[0]
    if consumer is not None and consumer.ndim >= 3:
        c = np.asarray(consumer, dtype=np.float64)
        if c.shape[1] == n:  # a conv that reads all n channels (groups 1)
            listened = (c ** 2).sum(axis=tuple(a for a in range(c.ndim) if a != 1))
        elif c.shape[0] == n and c.shape[1] == 1:  # depthwise: channel c feeds filter c only
            listened = (c ** 2).reshape(n, -1).sum(axis=1)
        else:
            listened = None
        if listened is not None and listened.mean() > 0:
            own = own * (listened / listened.mean())
    return np.sqrt(own)
