"""Storage grids and the rounding test behind ``same-weights``.

A copy is ``same-weights`` only when the difference is what a format's rounding explains, and a format's
tolerance applies only when the lower-precision side's values lie on that format's grid: bfloat16 (the low 16
bits of every float32 are zero), float16 (every value representable), an 8-bit grid (detected from the values)
or a file that records such a storage type. Between two float32 files whose values lie on no grid, only batch
norm folding's tolerance applies (a per-channel scale, computed in float32): a fine-tune of 50 SGD steps, which
moves every weight by ~2e-4 relative, is then ``derived``, not a copy.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Grid", "GRID_BITS", "grid_of", "grid_step", "rounds_to"]

Grid = Literal["float32", "bfloat16", "float16", "int8"]
GRID_BITS: dict[str, int] = {"float32": 32, "bfloat16": 16, "float16": 16, "int8": 8}
_LOW_STORAGE: dict[str, Grid] = {"bfloat16": "bfloat16", "float16": "float16", "int8": "int8", "uint8": "int8",
                                 "int4": "int8"}
FOLD_RELATIVE = 2.0**-16  # batch norm folded in float32: a few float32 ulps per value, with margin
FOLD_ABSOLUTE = 2.0**-20  # ... of the layer's largest weight (values near zero)


def grid_of(weight: np.ndarray, storage_dtype: str = "float32") -> Grid:
    """The coarsest storage grid all of a layer's values lie on ("float32": none).

    A file that records a low-precision storage type is on its grid; a float32 file is checked by value, so
    that float16 values saved as float32 (or int8 values dequantised into a float32 file) are recognised.
    """
    if storage_dtype in _LOW_STORAGE:
        return _LOW_STORAGE[storage_dtype]
    w = np.ascontiguousarray(weight, dtype=np.float32).ravel()
    w = w[np.isfinite(w)]
    if w.size == 0 or not w.any():
        return "float32"  # nothing to tell (no values, or all zero)
    if (steps := grid_step(weight)).any():
        rows = weight.reshape(weight.shape[0], -1)
        if np.all((steps > 0) | ~np.any(rows != 0, axis=1)):
            return "int8"
    if not np.any(w.view(np.uint32) & np.uint32(0xFFFF)):
        return "bfloat16"
    with np.errstate(over="ignore"):
        if np.array_equal(w.astype(np.float16).astype(np.float32), w):
            return "float16"
    return "float32"


def grid_step(weight: np.ndarray) -> np.ndarray:
    """Per output channel: the step of the 8-bit quantisation grid its values sit on (0 where there is none).

    Tries the grids int8 and uint8 exporters use: symmetric per tensor and per channel (step max|w|/127) and
    asymmetric (step (max - min)/255, offset min). A float channel is on none of them (its values are not all
    within 1e-3 steps of a grid point); a quantised one is, whatever its size.
    """
    rows = weight.reshape(weight.shape[0], -1).astype(np.float64)
    steps = np.zeros(rows.shape[0])
    if rows.size == 0 or not np.isfinite(rows).all():
        return steps

    def on_grid(values: np.ndarray, step: np.ndarray, offset: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            q = (values - offset) / step
        return np.all(np.abs(q - np.round(q)) < 1e-3, axis=-1) & (step[..., 0] > 0)

    peak = np.abs(rows).max(axis=1, keepdims=True)
    candidates = [
        (np.full_like(peak, np.abs(rows).max() / 127.0), np.zeros_like(peak)),  # symmetric per tensor
        (peak / 127.0, np.zeros_like(peak)),  # symmetric per channel
        (np.full_like(peak, (rows.max() - rows.min()) / 255.0), np.full_like(peak, rows.min())),  # uint8 per tensor
    ]
    first = int(np.argmax(peak[:, 0] > 0))  # the first channel with values decides cheaply for float tensors
    if not any(on_grid(rows[first:first + 1], step[first:first + 1], offset[first:first + 1])[0]
               for step, offset in candidates):
        return steps
    for step, offset in candidates:
        hit = on_grid(rows, step, offset) & (steps == 0)
        steps[hit] = step[hit, 0]
    return steps


def rounds_to(high: np.ndarray, low: np.ndarray, low_grid: Grid, high_grid: Grid = "float32",
              precision: float = 0.0) -> bool:
    """Whether ``low`` is ``high`` rounded onto ``low_grid``, up to a per-channel scale (folded batch norm).

    Each channel of ``high`` is scaled onto ``low`` by least squares; then at least 99 % of the weights must lie
    within the rounding error of ``low``'s grid: 2^-8 relative (bfloat16), 2^-10 relative (float16), three
    quarters of the 8-bit step (int8; plus ``high``'s step when both are quantised), or float32 arithmetic
    alone (no grid: batch norm folding). ``precision`` widens it by that share of each layer's largest weight
    (weights read back from a float16 store).
    """
    h = high.reshape(high.shape[0], -1).astype(np.float64)
    lo = low.reshape(low.shape[0], -1).astype(np.float64)
    if not (np.isfinite(h).all() and np.isfinite(lo).all()):
        return bool(np.array_equal(high, low, equal_nan=True))
    step_low = grid_step(low) if low_grid == "int8" else np.zeros(lo.shape[0])
    step_high = grid_step(high) if high_grid == "int8" else np.zeros(h.shape[0])
    coarse = np.abs(lo) > 2.0 * step_low[:, None]  # the fit skips values that rounding changed by > 25 %
    hf, lf = np.where(coarse, h, 0.0), np.where(coarse, lo, 0.0)
    fitted = np.einsum("ij,ij->i", hf, lf) / np.maximum(np.einsum("ij,ij->i", hf, hf), 1e-300)
    fitted = np.where(coarse.any(axis=1), fitted, 1.0)
    max_low = float(np.abs(lo).max()) if lo.size else 0.0
    max_high = float(np.abs(h).max()) if h.size else 0.0
    relative = {"bfloat16": 2.0**-8, "float16": 2.0**-10, "int8": FOLD_RELATIVE, "float32": FOLD_RELATIVE}[low_grid]
    floor = 2.0**-24 if low_grid == "float16" else FOLD_ABSOLUTE * max_low
    within = []
    # a least-squares scale absorbs folded batch norm, but coarse rounding of a small channel skews it: try 1 too
    for alpha in (np.ones_like(fitted), fitted):
        tolerance = (relative * np.abs(lo) + floor
                     + 0.75 * (step_low + np.abs(alpha) * step_high)[:, None]  # half a step + the fit's error
                     + 1.5 * precision * (max_low + np.abs(alpha)[:, None] * max_high))
        within.append(np.abs(alpha[:, None] * h - lo) <= tolerance + 1e-12)
    best = np.where(within[0].mean(axis=1, keepdims=True) >= within[1].mean(axis=1, keepdims=True),
                    within[0], within[1])
    return float(np.mean(best)) >= 0.99
