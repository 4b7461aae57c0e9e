"""Fingerprints: compact per-model summaries (< 64 KB) that rank a whole store against one model quickly.

A fingerprint keeps, for up to :data:`MAX_LAYERS` convolutions (the largest, when a model has more): the weight
shape, a hash of the exact bytes, the layer's L2 norm and storage precision, and a **sketch**: the
:data:`KERNELS` kernels (one output channel's weights over one input channel, a k×k slice) of largest norm,
each a float16 unit vector of its central 3×3 taps. Kernels are what channel pruning keeps (the largest
channels hold the largest kernels), what survives input pruning (a kernel does not depend on the other
inputs), and what a per-channel scale (batch norm folded, per-channel quantisation) leaves unchanged once
normalised.

Two fingerprints are matched **by content, never by slot**: every sketched layer of one model is compared
with every layer of the other of the same kernel size and channel counts within 4× (what
:func:`filterdb.lineage.compare` can pair), the similarity of two layers being the mean, over one sketch's
kernels, of its best ``|cos|`` in the other sketch, taken above a chance level (the same kernels turned by
90°: smoothness kept, orientation lost). Each layer keeps its best counterpart, so a format that lists
layers in another order, a truncated backbone or a re-headed copy score like the model itself. The score of
a pair is the mean of the two directions (each model's layers against the other's). Ranking is vectorised
over a whole store: one matrix product per kernel size and chunk of stored layers (docs/lineage.md).

Stores keep fingerprints as their per-model data of kind ``fingerprint``; one of another version is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping

import numpy as np

from .._atomic import atomic_write
from ._weights import ModelWeights

__all__ = ["Fingerprint", "fingerprint", "FingerprintStack", "FingerprintScores", "score_stack", "MAX_LAYERS",
           "KERNELS", "TAPS", "FINGERPRINT_VERSION"]

# 3: per-layer sketches of the largest kernels, matched by content across layers (order-free, survive pruning);
# 2: channels sampled by size, scored slot by slot
FINGERPRINT_VERSION = 3
MAX_LAYERS = 96  # convolutions kept (the largest ones when a model has more)
KERNELS = 16  # kernels kept per convolution
TAPS = 9  # a kernel's central 3x3 taps (2x2 and 1-D kernels zero-padded)
COARSE_KERNELS = 4  # the coarse pass: each sketch's largest kernels only
COARSE_SCORE = 0.15  # coarse score at least this: scored in full (docs/lineage.md: below every related pair's)
PAIRS_PER_PRODUCT = 65536  # query layers x stored layers per matrix product: ~64 MB of similarities at a time


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """The summary of one model; arrays have one row per kept convolution."""

    name: str
    sha256: str
    shapes: np.ndarray  # (L, 4) int32: out channels, in channels (per group), kernel height, kernel width
    hashes: np.ndarray  # (L,) uint64: first 8 bytes of the sha256 of the layer's float32 weights
    norms: np.ndarray  # (L,) float32: layer L2 norms
    bits: np.ndarray  # (L,) uint8: storage precision in bits
    kernels: np.ndarray  # (L, KERNELS, TAPS) float16 unit rows, largest kernels first (zeros: none / 1x1 layer)

    @property
    def n_layers(self) -> int:
        return int(self.shapes.shape[0])

    def renamed(self, name: str) -> Fingerprint:
        return Fingerprint(name, self.sha256, self.shapes, self.hashes, self.norms, self.bits, self.kernels)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as named numpy arrays (the store keeps them as per-model data)."""
        return {"version": np.array(FINGERPRINT_VERSION, dtype=np.int32), "name": np.array(self.name),
                "sha256": np.array(self.sha256), "shapes": self.shapes, "hashes": self.hashes, "norms": self.norms,
                "bits": self.bits, "kernels": self.kernels}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Fingerprint | None:
        """A fingerprint from :meth:`to_arrays`' arrays; None when any is missing or of another version,
        shape or dtype (an older, damaged or foreign file: the caller rebuilds it)."""
        try:
            if int(np.asarray(arrays["version"]).reshape(())) != FINGERPRINT_VERSION:
                return None
            fields = {k: np.asarray(arrays[k]) for k in ("shapes", "hashes", "norms", "bits", "kernels")}
            name, sha = str(np.asarray(arrays["name"]).reshape(())), str(np.asarray(arrays["sha256"]).reshape(()))
        except (KeyError, ValueError, TypeError):
            return None
        n = fields["shapes"].shape[0] if fields["shapes"].ndim == 2 else -1
        expected = {"shapes": ((n, 4), "i"), "hashes": ((n,), "u"), "norms": ((n,), "f"), "bits": ((n,), "u"),
                    "kernels": ((n, KERNELS, TAPS), "f")}
        if not 0 < n <= MAX_LAYERS or any(fields[k].shape != shape or fields[k].dtype.kind != kind
                                         for k, (shape, kind) in expected.items()):
            return None
        if not np.isfinite(fields["kernels"]).all() or (fields["shapes"] < 0).any():
            return None
        return cls(name, sha, fields["shapes"].astype(np.int32), fields["hashes"].astype(np.uint64),
                   fields["norms"].astype(np.float32), fields["bits"].astype(np.uint8),
                   fields["kernels"].astype(np.float16))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as .npz atomically (:mod:`filterdb._atomic`), outside a store."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "wb") as f:
            np.savez(f, **self.to_arrays())  # type: ignore[arg-type]  # numpy's stub: keywords are arrays

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint | None:
        """Read a fingerprint file; None when it is unreadable, damaged or of another version (then rebuild it)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls.from_arrays({k: data[k] for k in data.files})
        except (OSError, ValueError, KeyError, EOFError):
            return None


def _kernel_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """A weight's kernel as (height, width): 1-D kernels are 1×k, 3-D ones are flattened after the first axis."""
    if len(shape) == 3:
        return 1, int(shape[2])
    if len(shape) == 4:
        return int(shape[2]), int(shape[3])
    return int(shape[2]), int(np.prod(shape[3:]))


def _central_taps(slices: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, h, w) kernels → (n, TAPS): the central 3×3 (smaller kernels zero-padded at the end)."""
    top, left = max(0, (h - 3) // 2), max(0, (w - 3) // 2)
    crop = slices[:, top: top + 3, left: left + 3]
    out = np.zeros((slices.shape[0], TAPS), dtype=np.float64)
    flat = crop.reshape(crop.shape[0], -1)
    out[:, : flat.shape[1]] = flat
    return out


def _sketch(w: np.ndarray) -> np.ndarray:
    """(KERNELS, TAPS) float16: the largest-norm kernels of one layer as unit vectors (zeros for 1x1 layers)."""
    out = np.zeros((KERNELS, TAPS), dtype=np.float16)
    h, wd = _kernel_hw(w.shape)
    if h * wd < 2:
        return out  # a 1x1 kernel is one number: no shape to match (the layer still counts by its hash)
    slices = w.reshape(w.shape[0] * w.shape[1], h, wd)
    norms = np.sqrt(np.sum(slices.reshape(slices.shape[0], -1) ** 2, axis=1))
    k = min(KERNELS, int(np.sum(norms > 0)))
    if k == 0:
        return out
    top = np.argpartition(-norms, k - 1)[:k] if k < len(norms) else np.arange(len(norms))
    top = top[np.lexsort((top, -norms[top]))]  # largest first, ties by position: deterministic
    taps = _central_taps(slices[top], h, wd)
    length = np.linalg.norm(taps, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(length > 0, taps / length, 0.0)
    out[:k] = np.nan_to_num(unit).astype(np.float16)
    return out


def fingerprint(weights: ModelWeights) -> Fingerprint:
    """The fingerprint of a model (see the module docstring); a few ms for most models."""
    layers = list(weights.layers)
    if len(layers) > MAX_LAYERS:  # the largest layers: a choice that does not depend on the format's layer order
        sizes = np.array([layer.weight.size for layer in layers])
        keep = np.sort(np.lexsort((np.arange(len(layers)), -sizes))[:MAX_LAYERS])
        layers = [layers[i] for i in keep]
    n = len(layers)
    shapes = np.zeros((n, 4), dtype=np.int32)
    hashes = np.zeros(n, dtype=np.uint64)
    norms = np.zeros(n, dtype=np.float32)
    bits = np.zeros(n, dtype=np.uint8)
    kernels = np.zeros((n, KERNELS, TAPS), dtype=np.float16)
    for i, layer in enumerate(layers):
        w = np.nan_to_num(layer.weight.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        shapes[i] = (w.shape[0], w.shape[1], *_kernel_hw(w.shape))
        hashes[i] = np.frombuffer(hashlib.sha256(np.ascontiguousarray(layer.weight).tobytes()).digest()[:8],
                                  dtype=np.uint64)[0]
        norms[i] = float(np.sqrt(np.sum(w * w)))
        bits[i] = layer.bits
        kernels[i] = _sketch(w)
    return Fingerprint(weights.name, weights.sha256 or "", shapes, hashes, norms, bits, kernels)


# ---- many fingerprints at once -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FingerprintStack:
    """The sketched layers of many fingerprints, grouped by kernel size, for vectorised scoring."""

    names: list[str]
    shas: list[str]
    hash_sets: list[np.ndarray]  # per model: its layers' sorted hashes (identical copies in any layer order)
    n_layers: np.ndarray  # (N,) layers kept
    n_sketched: np.ndarray  # (N,) layers with a sketch (kernels larger than 1x1)
    groups: dict[tuple[int, int], _Group]

    @classmethod
    def of(cls, prints: list[Fingerprint]) -> FingerprintStack:
        per_kernel: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for m, fp in enumerate(prints):
            for i in range(fp.n_layers):
                if fp.kernels[i, 0].any():
                    per_kernel.setdefault((int(fp.shapes[i, 2]), int(fp.shapes[i, 3])), []).append((m, i))
        groups = {}
        for kernel, members in per_kernel.items():
            model = np.array([m for m, _ in members], dtype=np.int64)
            kernels = np.stack([prints[m].kernels[i] for m, i in members], axis=1).astype(np.float32)
            groups[kernel] = _Group(model, np.array([prints[m].shapes[i, :2] for m, i in members], dtype=np.int64),
                                    kernels, np.ascontiguousarray(kernels[:COARSE_KERNELS]))
        sketched = np.array([int(fp.kernels[:, 0].any(axis=1).sum()) for fp in prints], dtype=np.int64)
        return cls([p.name for p in prints], [p.sha256 for p in prints], [np.sort(p.hashes) for p in prints],
                   np.array([p.n_layers for p in prints], dtype=np.int64), sketched, groups)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, eq=False)
class _Group:
    """The stored layers of one kernel size, in model order."""

    model: np.ndarray  # (T,) the model each layer belongs to (non-decreasing)
    channels: np.ndarray  # (T, 2) out, in
    kernels: np.ndarray  # (KERNELS, T, TAPS) float32, kernel-major (the maxima then run over whole rows)
    coarse: np.ndarray  # (COARSE_KERNELS, T, TAPS) float32: the largest kernels (contiguous, for the coarse pass)


@dataclass(frozen=True)
class FingerprintScores:
    """A query's fingerprint against every model of a stack."""

    score: np.ndarray  # (N,) mean of both directions' mean best-layer excess similarity over chance
    identical: np.ndarray  # (N,) bool: the same file, or the same layer bytes in any order


def _null_order(h: int, w: int) -> np.ndarray:
    """The tap permutation that makes a kernel unrelated to itself in orientation: a quarter turn for square
    kernels (its central 3x3, or a 2x2), the taps reversed for others (1-D kernels)."""
    order = np.arange(TAPS)
    if h >= 3 and w >= 3:
        return np.rot90(order.reshape(3, 3)).reshape(-1)
    if h == w == 2:
        return np.array([1, 3, 0, 2, *range(4, TAPS)])
    n = min(h, 3) * min(w, 3)
    order[:n] = order[:n][::-1]
    return order


def _best_matches(q: np.ndarray, s: np.ndarray, q_live: np.ndarray, s_live: np.ndarray) -> tuple[np.ndarray, ...]:
    """For query sketches q (Lq, K, TAPS) and stored ones s (K', C, TAPS) (kernel-major): both directions' mean
    best |cos|, each (Lq, C): the mean over q's live kernels of its best |cos| among s's, and the mean over s's
    live kernels (s_live (K', C)) of its best among q's. One matrix product for all pairs of layers; both
    maxima run over a leading axis (whole rows at a time), which numpy does far faster than over a short last one.
    """
    lq, k = q.shape[:2]
    ks, c = s.shape[:2]
    sims = q.reshape(lq * k, TAPS) @ s.reshape(ks * c, TAPS).T
    np.abs(sims, out=sims)
    sims = sims.reshape(lq, k, ks, c)
    forward = sims.max(axis=2)  # (lq, k, c): dead stored kernels are zeros, never a best match above a live one
    forward = np.einsum("ikc,ik->ic", forward, q_live) / np.maximum(1, q_live.sum(axis=1))[:, None]
    backward = sims.max(axis=1)  # (lq, ks, c)
    backward = np.einsum("ikc,kc->ic", backward, s_live) / np.maximum(1, s_live.sum(axis=0))[None, :]
    return forward, backward


def _excess(similarity: np.ndarray, null: np.ndarray) -> np.ndarray:
    return np.clip((similarity - null) / np.maximum(1e-6, 1.0 - null), 0.0, 1.0)


def _layer_scores(query: Fingerprint, stack: FingerprintStack, coarse: bool,
                  models: np.ndarray | None) -> np.ndarray:
    """(N,) the mean of both directions' mean best-layer excess over chance, with every sketch's :data:`KERNELS`
    kernels, or (``coarse``) only its :data:`COARSE_KERNELS` largest; ``models`` (bool mask): score only those
    (the others 0)."""
    n = len(stack)
    forward_sum = np.zeros(n)  # Σ over the query's layers of the best excess found in each model
    backward_sum = np.zeros(n)  # Σ over each model's layers of its best excess among the query's
    q_sketched = query.kernels[:, 0].any(axis=1)
    used = COARSE_KERNELS if coarse else KERNELS
    for (h, w), group in stack.groups.items():
        mine = np.flatnonzero(q_sketched & (query.shapes[:, 2] == h) & (query.shapes[:, 3] == w))
        if not len(mine):
            continue
        stored = group.coarse if coarse else group.kernels
        rows = None if models is None else np.flatnonzero(models[group.model])
        total = len(group.model) if rows is None else len(rows)
        if not total:
            continue
        q = np.ascontiguousarray(query.kernels[mine, :used], dtype=np.float32)
        q_live = (np.abs(q).sum(axis=2) > 0).astype(np.float32)
        q_null = np.ascontiguousarray(q[:, :, np.argsort(_null_order(h, w))])  # cos(q, P s) = cos(P⁻¹ q, s)
        q_channels = query.shapes[mine, :2].astype(np.int64)
        best_forward = np.zeros((len(mine), n))
        chunk = max(64, PAIRS_PER_PRODUCT * (KERNELS // used) ** 2 // len(mine))
        for start in range(0, total, chunk):
            part = slice(start, min(total, start + chunk)) if rows is None else rows[start: start + chunk]
            s = np.ascontiguousarray(stored[:, part])
            s_live = (np.abs(s).sum(axis=2) > 0).astype(np.float32)
            fwd, bwd = _best_matches(q, s, q_live, s_live)
            fwd_null, bwd_null = _best_matches(q_null, s, q_live, s_live)
            channels = group.channels[part]
            low = np.minimum(q_channels[:, None, :], channels[None, :, :])
            high = np.maximum(q_channels[:, None, :], channels[None, :, :])
            compatible = np.all(low * 4 >= high, axis=2)  # what compare can pair: channels within 4x
            fwd = np.where(compatible, _excess(fwd, fwd_null), 0.0)
            bwd = np.where(compatible, _excess(bwd, bwd_null), 0.0)
            owners = group.model[part]
            starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            ids = owners[starts]
            # each query layer's best layer in each model (layers of a model are contiguous in the group)
            best_forward[:, ids] = np.maximum(best_forward[:, ids], np.maximum.reduceat(fwd, starts, axis=1))
            backward_sum += np.bincount(owners, weights=bwd.max(axis=0), minlength=n)
        forward_sum += best_forward.sum(axis=0)
    forward = forward_sum / max(1, int(q_sketched.sum()))
    backward = backward_sum / np.maximum(1, stack.n_sketched)
    return np.where(stack.n_sketched > 0, 0.5 * (forward + backward), 0.0)


def score_stack(query: Fingerprint, stack: FingerprintStack) -> FingerprintScores:
    """Score one fingerprint against every fingerprint of a stack (vectorised per kernel size).

    Every sketched layer of the query is compared with every stored layer of the same kernel size whose
    channel counts are within 4× of its own; each layer keeps its best counterpart in each model (in both
    directions), and a model's score is the mean of the two directions' mean layer excess over chance.
    A coarse pass first scores every model with each sketch's :data:`COARSE_KERNELS` largest kernels (16×
    fewer similarities); only the models it scores at least :data:`COARSE_SCORE` are scored in full (the
    others keep the coarse score, below any candidate threshold). The coarse pass is always run, whatever
    the stack's size, so a pair's score does not depend on what else is stored.
    """
    q_hashes = np.sort(query.hashes)
    identical = np.array([bool(query.sha256) and s == query.sha256 for s in stack.shas], dtype=bool)
    identical |= np.array([len(h) == len(q_hashes) and bool(np.array_equal(h, q_hashes)) for h in stack.hash_sets],
                          dtype=bool)
    rough = _layer_scores(query, stack, True, None)
    keep = (rough >= COARSE_SCORE) | identical
    score = np.where(keep, 0.0, np.minimum(rough, COARSE_SCORE))
    if keep.any():
        score = np.where(keep, _layer_scores(query, stack, False, keep), score)
    return FingerprintScores(score, identical)
