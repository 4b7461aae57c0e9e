"""TFLite weight decoding without TensorFlow: the sparsity format (what DENSIFY undoes) and dequantisation.

The sparsity format follows TFLite's ``sparsity_format_converter``: the dense tensor is traversed in
``traversal_order`` (original dimensions first, then block dimensions); each traversal level is either
DENSE (``dense_size`` entries) or SPARSE_CSR (``array_segments`` / ``array_indices``, indexed by the
position reached in the level above); ``block_map[b]`` names the original dimension that block
dimension ``n + b`` subdivides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DimMeta", "densify", "dequantize"]

DENSE = 0  # tflite.DimensionType.DENSE
SPARSE_CSR = 1  # tflite.DimensionType.SPARSE_CSR


@dataclass(frozen=True)
class DimMeta:
    """One traversal level of a sparse tensor."""

    format: int  # DENSE or SPARSE_CSR
    dense_size: int = 0  # number of entries of a DENSE level
    segments: np.ndarray | None = None  # SPARSE_CSR: start of each parent's run in ``indices`` (len parents + 1)
    indices: np.ndarray | None = None  # SPARSE_CSR: coordinate of each stored entry along this level


def _expand_dense(prev: np.ndarray, coords: np.ndarray, size: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if size < 0 or len(prev) * size > limit:
        raise ValueError(f"sparse tensor: a dense level of size {size} addresses more entries than the tensor's "
                         f"{limit} values")
    new_prev = (prev[:, None] * size + np.arange(size)[None, :]).ravel()
    new_coords = np.concatenate([np.repeat(coords, size, axis=0), np.tile(np.arange(size), len(prev))[:, None]], 1)
    return new_prev, new_coords


def _expand_csr(prev: np.ndarray, coords: np.ndarray, meta: DimMeta, limit: int) -> tuple[np.ndarray, np.ndarray]:
    segments = np.asarray(meta.segments, dtype=np.int64)
    indices = np.asarray(meta.indices, dtype=np.int64)
    if prev.size and prev.max() + 1 >= len(segments):
        raise ValueError(f"sparse tensor: array_segments has {len(segments)} entries, needs {prev.max() + 2}")
    if indices.size and indices.min() < 0:
        raise ValueError(f"sparse tensor: array_indices holds the negative index {indices.min()}")
    starts, ends = segments[prev], segments[prev + 1]
    counts = ends - starts
    if counts.size and (counts.min() < 0 or starts.min() < 0 or counts.sum() > limit):
        raise ValueError("sparse tensor: array_segments are not increasing or address more entries than the "
                         f"tensor's {limit} values")
    # Positions starts[j] .. ends[j]-1 for every parent j, in parent order (depth-first order of TFLite).
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(starts, counts) + offsets
    if positions.size and positions.max() >= len(indices):
        raise ValueError(f"sparse tensor: array_indices has {len(indices)} entries, segments point past it")
    new_coords = np.concatenate([np.repeat(coords, counts, axis=0), indices[positions][:, None]], 1)
    return positions, new_coords


def _block_sizes(dense_rank: int, traversal_order: Sequence[int], dims: Sequence[DimMeta]) -> dict[int, int]:
    """Block size of each block dimension b (traversal entry n + b)."""
    return {int(t) - dense_rank: dims[level].dense_size for level, t in enumerate(traversal_order) if t >= dense_rank}


def densify(
    values: np.ndarray,
    shape: Sequence[int],
    traversal_order: Sequence[int],
    block_map: Sequence[int],
    dims: Sequence[DimMeta],
    check: Callable[[int, str], None] | None = None,
) -> np.ndarray:
    """Rebuild the dense tensor of a TFLite sparse tensor.

    Parameters
    ----------
    values : ndarray
        The stored (non-zero) values, flat, in traversal order.
    shape : sequence of int
        The dense shape (the tensor's ``shape``).
    traversal_order, block_map : sequence of int
        From the tensor's ``SparsityParameters``.
    dims : sequence of DimMeta
        One per traversal level.
    check : callable, optional
        ``check(nbytes, what)`` raises when the dense result would not fit the memory budget; called before
        anything is allocated. Every level is also bounded by the dense size, so a lying level costs nothing.

    Returns
    -------
    ndarray
        Dense array of ``shape`` and ``values.dtype``; entries not stored are zero.

    Examples
    --------
    A 2×3 matrix in CSR form (row 0 holds column 1, row 1 holds columns 0 and 2):

    >>> dims = [DimMeta(DENSE, 2), DimMeta(SPARSE_CSR, segments=np.array([0, 1, 3]), indices=np.array([1, 0, 2]))]
    >>> densify(np.array([5., 6., 7.]), (2, 3), (0, 1), (), dims)
    array([[0., 5., 0.],
           [6., 0., 7.]])
    """
    n = len(shape)
    if any(int(s) < 0 for s in shape):
        raise ValueError(f"sparse tensor: negative dimension in its shape {tuple(shape)}")
    limit = 1
    for s in shape:
        limit *= int(s)
    if check is not None:  # the dense result, and the coordinates of every entry while rebuilding it
        check(limit * (np.asarray(values).dtype.itemsize + 8 * (len(traversal_order) + n)),
              f"densifying a sparse tensor of shape {tuple(int(s) for s in shape)}")
    if len(traversal_order) != len(dims) or len(traversal_order) != n + len(block_map):
        raise ValueError(
            f"sparse tensor: {len(traversal_order)} traversal levels, {len(dims)} dim_metadata entries, "
            f"{n} dimensions and {len(block_map)} block dimensions do not fit together"
        )
    prev = np.zeros(1, dtype=np.int64)
    coords = np.zeros((1, 0), dtype=np.int64)
    for meta in dims:
        if meta.format == DENSE:
            prev, coords = _expand_dense(prev, coords, int(meta.dense_size), limit)
        else:
            prev, coords = _expand_csr(prev, coords, meta, limit)
    values = np.asarray(values).ravel()
    if len(coords) != len(values):
        raise ValueError(f"sparse tensor: the metadata addresses {len(coords)} values, the buffer holds {len(values)}")
    original = np.zeros((len(coords), n), dtype=np.int64)
    original[:, list(traversal_order[:n])] = coords[:, :n]
    blocks = _block_sizes(n, traversal_order, dims)
    for level in range(n, len(traversal_order)):
        b = int(traversal_order[level]) - n
        dim = int(block_map[b])
        original[:, dim] = original[:, dim] * blocks[b] + coords[:, level]
    if len(original) and ((original < 0).any() or (original >= np.asarray(shape, np.int64)).any()):
        raise ValueError(f"sparse tensor: a stored coordinate lies outside the shape {tuple(shape)}")
    dense = np.zeros(tuple(int(s) for s in shape), dtype=values.dtype)
    dense[tuple(original.T)] = values
    return dense


def dequantize(
    values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int
) -> tuple[np.ndarray, str]:
    """Affine dequantisation ``(q - zero_point) * scale``, per tensor or per channel along ``axis``.

    Returns the float32 array and a note: "int8 per-channel dequantised" / "uint8 per-tensor dequantised".

    Examples
    --------
    >>> q = np.array([[1, 2], [3, 4]], dtype=np.int8)
    >>> dequantize(q, np.array([0.5, 2.0]), np.array([0, 1]), axis=0)[0]
    array([[0.5, 1. ],
           [4. , 6. ]], dtype=float32)
    """
    scale = np.asarray(scale, dtype=np.float64).ravel()
    zero: np.ndarray = np.zeros_like(scale) if zero_point is None or np.size(zero_point) == 0 else np.asarray(zero_point).ravel()
    per_channel = scale.size > 1
    if per_channel:
        if values.shape[axis] != scale.size:
            raise ValueError(f"{scale.size} quantisation scales for {values.shape[axis]} channels along axis {axis}")
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), np.broadcast_to(zero, scale.shape).reshape(shape)
    out = ((values.astype(np.float64) - zero) * scale).astype(np.float32)
    return out, f"{values.dtype} {'per-channel' if per_channel else 'per-tensor'} dequantised"
