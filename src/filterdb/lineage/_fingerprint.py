"""Fingerprints: compact per-model summaries (< 64 KB) that rank a whole store against one model in a second.

A fingerprint keeps, for each of the first :data:`MAX_LAYERS` convolutions: the weight shape, a hash of the
exact bytes, the layer's L2 norm and storage precision, and for its :data:`CHANNELS` largest output channels two
unit vectors (float16): the weights of the first :data:`INPUTS` input channels (first 9 taps each), and the
mean kernel over all inputs (which survives input channels being pruned). Two fingerprints are scored slot by
slot (layer i against layer i) with a best-match of channels above a chance level, the same idea as
:func:`filterdb.lineage.compare` on a sample of the weights, vectorised over all models at once.

Stores keep fingerprints as their per-model data of kind ``fingerprint`` (computed on first use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._atomic import atomic_write
from ._weights import ModelWeights

__all__ = ["Fingerprint", "fingerprint", "FingerprintStack", "MAX_LAYERS", "CHANNELS", "INPUTS",
           "FINGERPRINT_VERSION"]

FINGERPRINT_VERSION = 2  # 2: channels sampled by size (survive channel pruning), not the first ones
MAX_LAYERS = 80  # convolutions kept (the first ones: where derived models share the most)
CHANNELS = 8  # output channels kept per convolution
INPUTS = 4  # input channels kept per output channel
TAPS = 9  # kernel taps kept (a 3x3 kernel whole; larger kernels are truncated, smaller ones zero-padded)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """The summary of one model; arrays have one row per kept convolution."""

    name: str
    sha256: str
    shapes: np.ndarray  # (L, 3) int32: out channels, in channels (per group), kernel taps
    hashes: np.ndarray  # (L,) uint64: first 8 bytes of the sha256 of the layer's float32 weights
    norms: np.ndarray  # (L,) float32: layer L2 norms (direction: the model trained further has larger ones)
    bits: np.ndarray  # (L,) uint8: storage precision in bits
    channels: np.ndarray  # (L, CHANNELS, INPUTS * TAPS) float16 unit rows (zeros where absent)
    means: np.ndarray  # (L, CHANNELS, TAPS) float16 unit rows: each channel's mean kernel over its inputs

    @property
    def n_layers(self) -> int:
        return int(self.shapes.shape[0])

    def renamed(self, name: str) -> Fingerprint:
        return Fingerprint(name, self.sha256, self.shapes, self.hashes, self.norms, self.bits, self.channels,
                           self.means)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as named numpy arrays (the store keeps them as per-model data)."""
        return {"version": np.array(FINGERPRINT_VERSION, dtype=np.int32), "name": np.array(self.name),
                "sha256": np.array(self.sha256), "shapes": self.shapes, "hashes": self.hashes, "norms": self.norms,
                "bits": self.bits, "channels": self.channels, "means": self.means}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Fingerprint | None:
        """A fingerprint from :meth:`to_arrays`' arrays; None when any is missing or of another version,
        shape or dtype (a damaged or foreign file: the caller rebuilds it)."""
        try:
            if int(np.asarray(arrays["version"]).reshape(())) != FINGERPRINT_VERSION:
                return None
            fields = {k: np.asarray(arrays[k]) for k in ("shapes", "hashes", "norms", "bits", "channels", "means")}
            name, sha = str(np.asarray(arrays["name"]).reshape(())), str(np.asarray(arrays["sha256"]).reshape(()))
        except (KeyError, ValueError, TypeError):
            return None
        n = fields["shapes"].shape[0] if fields["shapes"].ndim == 2 else -1
        expected = {"shapes": ((n, 3), "i"), "hashes": ((n,), "u"), "norms": ((n,), "f"), "bits": ((n,), "u"),
                    "channels": ((n, CHANNELS, INPUTS * TAPS), "f"), "means": ((n, CHANNELS, TAPS), "f")}
        if not 0 < n <= MAX_LAYERS or any(fields[k].shape != shape or fields[k].dtype.kind != kind
                                         for k, (shape, kind) in expected.items()):
            return None
        if not (np.isfinite(fields["channels"]).all() and np.isfinite(fields["means"]).all()):
            return None
        return cls(name, sha, fields["shapes"].astype(np.int32), fields["hashes"].astype(np.uint64),
                   fields["norms"].astype(np.float32), fields["bits"].astype(np.uint8),
                   fields["channels"].astype(np.float16), fields["means"].astype(np.float16))

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


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((norms > 0) & np.isfinite(norms), rows / norms, 0.0)
    return np.nan_to_num(out).astype(np.float16)


def _taps(kernels: np.ndarray) -> np.ndarray:
    """(..., *kernel) → (..., TAPS): the first TAPS taps, zero-padded."""
    flat = kernels.reshape(*kernels.shape[:2], -1) if kernels.ndim > 2 else kernels[..., None]
    out = np.zeros((*flat.shape[:2], TAPS), dtype=np.float64)
    n = min(TAPS, flat.shape[2])
    out[..., :n] = flat[..., :n]
    return out


def fingerprint(weights: ModelWeights) -> Fingerprint:
    """The fingerprint of a model (see the module docstring); a few ms for most models."""
    layers = weights.layers[:MAX_LAYERS]
    n = len(layers)
    shapes = np.zeros((n, 3), dtype=np.int32)
    hashes = np.zeros(n, dtype=np.uint64)
    norms = np.zeros(n, dtype=np.float32)
    bits = np.zeros(n, dtype=np.uint8)
    channels = np.zeros((n, CHANNELS, INPUTS * TAPS), dtype=np.float16)
    means = np.zeros((n, CHANNELS, TAPS), dtype=np.float16)
    for i, layer in enumerate(layers):
        w = np.nan_to_num(layer.weight.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        shapes[i] = (w.shape[0], w.shape[1], int(np.prod(w.shape[2:])))
        hashes[i] = np.frombuffer(hashlib.sha256(np.ascontiguousarray(layer.weight).tobytes()).digest()[:8],
                                  dtype=np.uint64)[0]
        norms[i] = float(np.sqrt(np.sum(w * w)))
        bits[i] = layer.bits
        # the largest channels (L1): what magnitude-based channel pruning keeps, so a pruned child keeps them too
        head = w[np.sort(np.argsort(-np.abs(w).reshape(w.shape[0], -1).sum(axis=1), kind="stable")[:CHANNELS])]
        taps = _taps(head[:, :INPUTS])  # (c, inputs, TAPS)
        block = np.zeros((head.shape[0], INPUTS, TAPS))
        block[:, : taps.shape[1]] = taps
        channels[i, : head.shape[0]] = _unit_rows(block.reshape(head.shape[0], -1))
        means[i, : head.shape[0]] = _unit_rows(_taps(head.mean(axis=1, keepdims=True))[:, 0])
    return Fingerprint(weights.name, weights.sha256 or "", shapes, hashes, norms, bits, channels, means)


@dataclass(frozen=True, eq=False)
class FingerprintStack:
    """Many fingerprints padded to one array per field, for vectorised scoring."""

    names: list[str]
    shas: list[str]
    shapes: np.ndarray  # (N, MAX_LAYERS, 3); zero rows: no layer
    hashes: np.ndarray  # (N, MAX_LAYERS)
    norms: np.ndarray
    bits: np.ndarray
    channels: np.ndarray  # (N, MAX_LAYERS, CHANNELS, INPUTS * TAPS) float32
    means: np.ndarray
    n_layers: np.ndarray  # (N,)

    @classmethod
    def of(cls, prints: list[Fingerprint]) -> FingerprintStack:
        n = len(prints)

        def pad(field: str, tail: tuple[int, ...], dtype: Any) -> np.ndarray:
            out = np.zeros((n, MAX_LAYERS, *tail), dtype=dtype)
            for k, fp in enumerate(prints):
                value = getattr(fp, field)
                out[k, : len(value)] = value
            return out

        return cls([p.name for p in prints], [p.sha256 for p in prints], pad("shapes", (3,), np.int32),
                   pad("hashes", (), np.uint64), pad("norms", (), np.float32), pad("bits", (), np.uint8),
                   # float32 in memory: a query then multiplies without converting (≈ 12 KB per model)
                   pad("channels", (CHANNELS, INPUTS * TAPS), np.float32), pad("means", (CHANNELS, TAPS), np.float32),
                   np.array([p.n_layers for p in prints], dtype=np.int32))

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class FingerprintScores:
    """A query's fingerprint against every model of a stack."""

    score: np.ndarray  # (N,) excess channel similarity over chance, discounted for unpaired layers
    identical: np.ndarray  # (N,) bool: every layer's bytes the same
    same_shapes: np.ndarray  # (N,) bool: the same layer shapes throughout
    closeness: np.ndarray  # (N,) lowest per-layer best-match similarity over layers with equal inputs
    parent: np.ndarray  # (N,) int8: +1 the query is the parent, -1 the model is, 0 unknown
    parent_confidence: np.ndarray  # (N,)


def _slot_match(query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean over the query's live channels of its best |cos| among each model's channels, for one layer slot.

    query (C, D), rows (N, C, D) → (N,): one matrix product (BLAS) for all models.
    """
    live = np.abs(query).sum(axis=-1) > 0
    if not live.any():
        return np.zeros(rows.shape[0], dtype=np.float32)
    q = query[live].astype(np.float32)
    flat = rows.reshape(-1, rows.shape[-1])
    sims = np.abs(flat.astype(np.float32, copy=False) @ q.T).reshape(rows.shape[0], rows.shape[1], -1)
    return sims.max(axis=1).mean(axis=1)


_ROT90 = np.array([2, 5, 8, 1, 4, 7, 0, 3, 6])  # a 3x3 kernel's taps turned by 90 degrees


def _null(rows: np.ndarray, n_inputs: np.ndarray) -> np.ndarray:
    """One slot's channels made unrelated to the query's: kept inputs shifted by one, or kernels turned.

    rows (N, C, k·TAPS), n_inputs (N,): the same null as :func:`filterdb.lineage.compare`'s chance level
    (a model whose slot has a single input gets its kernels turned by 90 degrees instead).
    """
    inputs = rows.shape[-1] // TAPS
    shaped = rows.reshape(*rows.shape[:-1], inputs, TAPS)
    out = shaped[..., _ROT90]
    if inputs > 1:
        kept = np.minimum(n_inputs, inputs)
        for k in range(2, inputs + 1):
            where = kept == k
            if where.any():
                block = shaped[where]
                out[where] = np.concatenate([np.roll(block[:, :, :k], 1, axis=-2), block[:, :, k:]], axis=-2)
    return out.reshape(rows.shape)


def score_stack(query: Fingerprint, stack: FingerprintStack) -> FingerprintScores:
    """Score one fingerprint against every fingerprint of a stack (vectorised)."""
    n_slots = min(query.n_layers, MAX_LAYERS)
    q_shapes = np.zeros((MAX_LAYERS, 3), dtype=np.int32)
    q_shapes[:n_slots] = query.shapes[:n_slots]
    present = (stack.shapes[:, :, 0] > 0) & (q_shapes[None, :, 0] > 0)
    same_taps = present & (stack.shapes[:, :, 2] == q_shapes[None, :, 2])
    same_inputs = same_taps & (stack.shapes[:, :, 1] == q_shapes[None, :, 1])
    q_channels = np.zeros((MAX_LAYERS, CHANNELS, INPUTS * TAPS), dtype=np.float16)
    q_channels[:n_slots] = query.channels[:n_slots]
    q_means = np.zeros((MAX_LAYERS, CHANNELS, TAPS), dtype=np.float16)
    q_means[:n_slots] = query.means[:n_slots]

    n = len(stack)
    full, full_null, mean, mean_null = (np.zeros((n, MAX_LAYERS), dtype=np.float32) for _ in range(4))
    for slot in range(n_slots):  # only the query's layers: the rest score 0
        users = np.flatnonzero(same_taps[:, slot])
        if not len(users):
            continue
        rows, inputs = stack.channels[users, slot], stack.shapes[users, slot, 1]
        full[users, slot] = _slot_match(q_channels[slot], rows)
        full_null[users, slot] = _slot_match(q_channels[slot], _null(rows, inputs))
        rows = stack.means[users, slot]
        mean[users, slot] = _slot_match(q_means[slot], rows)
        mean_null[users, slot] = _slot_match(q_means[slot], _null(rows, np.ones_like(inputs)))
    with np.errstate(invalid="ignore", divide="ignore"):
        excess_full = np.clip((full - full_null) / np.maximum(1e-6, 1 - full_null), 0, 1)
        excess_mean = np.clip((mean - mean_null) / np.maximum(1e-6, 1 - mean_null), 0, 1)
    # layers with the same inputs compare whole channels; pruned inputs leave the mean kernels, worth less
    slot_score = np.where(same_inputs, excess_full, np.where(same_taps, 0.5 * excess_mean, 0.0))
    n_total = np.maximum(stack.n_layers, n_slots).clip(1, MAX_LAYERS)
    score = slot_score.sum(axis=1) / n_total
    identical = (same_inputs.sum(axis=1) == n_total) & (stack.n_layers == query.n_layers)
    q_hashes = np.zeros(MAX_LAYERS, dtype=np.uint64)
    q_hashes[:n_slots] = query.hashes[:n_slots]
    identical &= np.all((stack.hashes == q_hashes[None]) | ~present, axis=1)
    # the same layers listed in another order (formats order layers differently): the same sorted hashes
    identical |= (stack.n_layers == query.n_layers) & np.all(np.sort(stack.hashes, axis=1) == np.sort(q_hashes), axis=1)
    identical |= np.array([bool(query.sha256) and s == query.sha256 for s in stack.shas])
    same_shapes = np.all((stack.shapes == q_shapes[None]), axis=(1, 2))
    closeness = np.where(same_inputs, full, 2.0).min(axis=1)
    closeness = np.where(same_inputs.any(axis=1), closeness, 0.0)

    # direction: pruned (fewer channels) is the child, then lower precision, then smaller norms (less trained)
    fewer_q = np.sum(present & (q_shapes[None, :, 0] < stack.shapes[:, :, 0]), axis=1)
    fewer_m = np.sum(present & (stack.shapes[:, :, 0] < q_shapes[None, :, 0]), axis=1)
    q_bits = int(query.bits.min()) if query.n_layers else 32
    m_bits = np.where(stack.n_layers > 0, np.where(stack.bits > 0, stack.bits, 255).min(axis=1), 32)
    q_norms = np.zeros(MAX_LAYERS, dtype=np.float32)
    q_norms[:n_slots] = query.norms[:n_slots]
    changed = same_inputs & (stack.hashes != q_hashes[None])
    votes = np.where(changed, np.sign(stack.norms - q_norms[None]), 0.0)
    n_votes = changed.sum(axis=1)
    lean = np.where(n_votes > 0, votes.sum(axis=1) / np.maximum(n_votes, 1), 0.0)  # > 0: model trained further
    parent = np.sign(lean).astype(np.int8)
    confidence = 0.5 + 0.5 * np.abs(lean)
    by_bits = m_bits != q_bits
    parent = np.where(by_bits, np.where(m_bits < q_bits, 1, -1), parent).astype(np.int8)
    confidence = np.where(by_bits, 0.9, confidence)
    by_pruning = fewer_q != fewer_m
    parent = np.where(by_pruning, np.where(fewer_m > fewer_q, 1, -1), parent).astype(np.int8)
    confidence = np.where(by_pruning, 0.95, confidence)
    return FingerprintScores(score, identical, same_shapes, closeness, parent, confidence)
