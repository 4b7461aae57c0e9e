"""The compute kernels of the streaming analyses: one fused pass per call, numba or numpy.

Every kernel takes stored filter rows ``(n, d)`` (float16 or float32, d = kh·kw) and a list of segments
``(start, count, unit)`` — contiguous row ranges that belong to one histogram unit (a (group, model) pair,
see :mod:`filterdb.analysis._plan`). In one pass over the rows it

1. converts float16 to float32 (numba: a bit trick, exact for zero, subnormal and normal values),
2. leaves out every filter that holds a NaN or an infinity (counted per unit in ``skipped``; the plan
   already leaves out layers known to hold one, see docs/reference.md §3), and divides each filter by its
   own max |w| (docs/reference.md §3; all-zero filters stay zero; a filter whose max |w| is below 2⁻⁶⁴ —
   float32 subnormals included — is first multiplied by 2⁶⁴, exactly, so that 1/max stays finite),
3. ``gram``: accumulates the raw Gram matrix ``XᵀX`` and the column sums (float32 per 256-row block,
   float64 in total),
4. ``hist``: projects onto a basis, ``c = x·Vᵀ − μ·Vᵀ``, and counts each coefficient into ``nbins`` equal
   bins of ``[lo, hi]`` per (unit, component); values outside the range go to the end bins,
5. ``minmax``: the minimum and maximum of each coefficient (for the paper's global-range histograms),
6. ``density``: the joint 2-D histogram of the first two coefficients, ``density_bins`` equal bins of
   ``[lo, hi]`` per axis (the report's density figure), one per pass (not per unit).

The numba kernels release the GIL, so one thread per core scales; the numpy path computes the same
numbers (to float32 rounding: a coefficient within ~1e-7 of a bin edge may land in the neighbouring bin)
and is used when numba is not installed (the ``fast`` extra) or when asked for with ``kernel="numpy"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import UsageError
from ._partial import Partial, merge, merge_into  # re-exported: the kernels return Partials

__all__ = ["HAVE_NUMBA", "KernelName", "Partial", "PassSpec", "f16_to_f32", "merge", "merge_into", "resolve_kernel",
           "run_rows"]

KernelName = Literal["auto", "numba", "numpy"]
BLK = 256  # rows per block in the numba kernel: the block (d x 256 float32) stays in L1
# A filter whose max |w| is below TINY is multiplied by LIFT (a power of two: exact) before 1/max is taken:
# 1/max of a float32 subnormal (or of anything below ~3e-39) overflows to inf, and inf * 0 is NaN.
TINY = 2.0**-64
LIFT = 2.0**64
_F32_EXP = 0x7F800000  # float32 exponent bits: all set = NaN or infinity
_F16_EXP = 0x7C00

try:  # numba is optional (extra "fast"); without it the numpy path runs, about 3x slower
    import numba as _numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    _numba = None
    HAVE_NUMBA = False


def resolve_kernel(kernel: str = "auto") -> str:
    """'numba' or 'numpy' for a requested kernel name; FILTERDB_KERNEL overrides 'auto'."""
    if kernel not in ("auto", "numba", "numpy"):
        raise UsageError(f"kernel must be 'auto', 'numba' or 'numpy', got {kernel!r}")
    if kernel == "auto":
        kernel = os.environ.get("FILTERDB_KERNEL", "auto") or "auto"
        if kernel not in ("auto", "numba", "numpy"):
            raise UsageError(f"FILTERDB_KERNEL must be 'numba' or 'numpy', got {kernel!r}")
        if kernel == "auto":
            return "numba" if HAVE_NUMBA else "numpy"
    if kernel == "numba" and not HAVE_NUMBA:
        from ..errors import missing_dependency

        raise missing_dependency("numba", "the fast analysis kernel", extra="fast")
    return kernel


@dataclass(frozen=True)
class PassSpec:
    """What one pass computes; small and picklable (it travels to Dask workers)."""

    d: int  # values per filter (kh·kw)
    gram: bool = True  # accumulate XᵀX and column sums of the scaled filters
    hist: bool = False  # histograms of the projected coefficients
    minmax: bool = False  # per-component min / max of the projected coefficients
    components: np.ndarray | None = None  # (d, d) rows = principal axes; needed by hist / minmax
    mean: np.ndarray | None = None  # (d,) the PCA mean μ; needed by hist / minmax
    lo: float = -3.0  # histogram range, shared by every component
    hi: float = 3.0
    nbins: int = 70
    kernel: str = "numba"  # "numba" or "numpy" (already resolved)
    density: bool = False  # the joint histogram of coefficients 0 and 1 over [lo, hi]²; needs a basis
    density_bins: int = 160  # bins per axis of the density
    # gram slots: unit -> slot (0..k-1, or -1 for none); each slot keeps its own Gram matrix too (the bases of the
    # largest groups, in the same pass as the basis of all filters); None: no slots
    unit_slot: np.ndarray | None = None

    def projection(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (components, offset) with c = components @ x - offset."""
        if self.components is None or self.mean is None:
            return np.zeros((self.d, self.d), np.float32), np.zeros(self.d, np.float32)
        comps = np.ascontiguousarray(self.components, dtype=np.float32)
        offset = (np.asarray(self.components, np.float64) @ np.asarray(self.mean, np.float64)).astype(np.float32)
        return comps, offset


# -- numba ------------------------------------------------------------------------------------------
if HAVE_NUMBA:
    _jit = _numba.njit(nogil=True, fastmath=True, cache=True)
    # min/max must see every value exactly: no fastmath reassociation of comparisons with NaN tricks
    _jit_exact = _numba.njit(nogil=True, cache=True)

    @_jit
    def _lift_tiny(xb, m, nb, d):
        # rows whose max |x| is below TINY: times LIFT (exact), so that 1 / max stays finite
        # (all-zero rows, common in real layers, stay out of this path: they scale to zero anyway)
        tiny = False
        for r in range(nb):
            tiny |= (m[r] < np.float32(TINY)) & (m[r] > np.float32(0.0))
        if tiny:
            for r in range(nb):
                if m[r] < np.float32(TINY) and m[r] > np.float32(0.0):
                    m[r] *= np.float32(LIFT)
                    for j in range(d):
                        xb[j, r] *= np.float32(LIFT)

    @_jit
    def _block(xb, m, nb, d, gram, hist, minmax, comps, offset, lo, invw, nbins, gl, s, h, mn, mx, cb, bi,
               density, dinvw, dbins, dens, dbi):
        # per-filter abs-max scaling (m holds the row max |x|)
        _lift_tiny(xb, m, nb, d)
        for r in range(nb):
            mm = m[r]
            m[r] = np.float32(1.0) / mm if mm > 0 else np.float32(0.0)
        for j in range(d):
            for r in range(nb):
                xb[j, r] *= m[r]
        if gram:
            for i in range(d):
                acc = np.float32(0.0)
                for r in range(nb):
                    acc += xb[i, r]
                s[i] += acc
                for j in range(i, d):
                    acc = np.float32(0.0)
                    for r in range(nb):
                        acc += xb[i, r] * xb[j, r]
                    gl[i, j] += acc
        if hist or minmax or density:
            top = np.float32(nbins - 1)
            dtop = np.float32(dbins - 1)
            for k in range(d):
                off = offset[k]
                for r in range(nb):
                    cb[r] = -off
                for i in range(d):
                    v = comps[k, i]
                    for r in range(nb):
                        cb[r] += v * xb[i, r]
                if minmax:
                    for r in range(nb):
                        if cb[r] < mn[k]:
                            mn[k] = cb[r]
                        if cb[r] > mx[k]:
                            mx[k] = cb[r]
                if hist:
                    for r in range(nb):
                        t = (cb[r] - lo) * invw
                        t = min(max(t, np.float32(0.0)), top)
                        bi[r] = np.int32(t)
                    for r in range(nb):
                        h[k, bi[r]] += 1
                if density and k < 2:
                    for r in range(nb):
                        t = (cb[r] - lo) * dinvw
                        t = min(max(t, np.float32(0.0)), dtop)
                        dbi[k, r] = np.int32(t)
            if density:
                for r in range(nb):
                    dens[dbi[0, r] * dbins + dbi[1, r]] += 1

    @_jit
    def _finish(gl, g):
        d = gl.shape[0]
        for i in range(d):
            for j in range(i, d):
                g[i, j] += gl[i, j]
                if i != j:
                    g[j, i] += gl[i, j]

    @_jit
    def _bad_rows(bits, b0, nb, d, mask):
        # whether some row of rows[b0 : b0 + nb] holds a NaN or an infinity (all exponent bits set)
        top = bits[b0, 0] & mask
        for r in range(nb):
            for j in range(d):
                top = max(top, bits[b0 + r, j] & mask)
        return top == mask

    @_jit
    def _row_ok(bits, row, d, mask):
        for j in range(d):
            if (bits[row, j] & mask) == mask:
                return False
        return True

    @_jit
    def _fused_u16(rows, starts, counts, units, gram, hist, minmax, comps, offset, lo, invw, nbins,
                   g, s, h, mn, mx, sk, density, dinvw, dbins, dens):
        d = rows.shape[1]
        xb = np.empty((d, BLK), np.float32)
        ub = xb.view(np.uint32)
        sg = np.empty((d, BLK), np.uint32)
        m = np.empty(BLK, np.float32)
        cb = np.empty(BLK, np.float32)
        bi = np.empty(BLK, np.int32)
        dbi = np.empty((2, BLK), np.int32)
        gl = np.zeros((d, d), np.float64)
        dinvw32 = np.float32(dinvw)
        lo32 = np.float32(lo)
        invw32 = np.float32(invw)
        mask = np.uint16(_F16_EXP)
        for q in range(starts.shape[0]):
            u = units[q]
            end = starts[q] + counts[q]
            for b0 in range(starts[q], end, BLK):
                nb_in = min(BLK, end - b0)
                check = _bad_rows(rows, b0, nb_in, d, mask)
                nb = 0
                for r in range(nb_in):
                    if check and not _row_ok(rows, b0 + r, d, mask):
                        sk[u] += 1
                        continue
                    for j in range(d):
                        hv = np.uint32(rows[b0 + r, j])
                        ub[j, nb] = (hv & np.uint32(0x7FFF)) << np.uint32(13)
                        sg[j, nb] = (hv & np.uint32(0x8000)) << np.uint32(16)
                    nb += 1
                for r in range(nb):
                    m[r] = np.float32(0.0)
                for j in range(d):
                    for r in range(nb):
                        xb[j, r] *= np.float32(5.192296858534828e33)  # 2**112 re-biases the exponent
                        m[r] = max(m[r], xb[j, r])
                    for r in range(nb):
                        ub[j, r] |= sg[j, r]
                _block(xb, m, nb, d, gram, hist, minmax, comps, offset, lo32, invw32, nbins, gl, s, h[u], mn, mx,
                       cb, bi, density, dinvw32, dbins, dens, dbi)
        _finish(gl, g)

    @_jit
    def _fused_f32(rows, starts, counts, units, gram, hist, minmax, comps, offset, lo, invw, nbins,
                   g, s, h, mn, mx, sk, density, dinvw, dbins, dens):
        # rows: the float32 rows viewed as uint32 (their bits)
        d = rows.shape[1]
        xb = np.empty((d, BLK), np.float32)
        ub = xb.view(np.uint32)
        m = np.empty(BLK, np.float32)
        cb = np.empty(BLK, np.float32)
        bi = np.empty(BLK, np.int32)
        dbi = np.empty((2, BLK), np.int32)
        gl = np.zeros((d, d), np.float64)
        dinvw32 = np.float32(dinvw)
        lo32 = np.float32(lo)
        invw32 = np.float32(invw)
        mask = np.uint32(_F32_EXP)
        for q in range(starts.shape[0]):
            u = units[q]
            end = starts[q] + counts[q]
            for b0 in range(starts[q], end, BLK):
                nb_in = min(BLK, end - b0)
                check = _bad_rows(rows, b0, nb_in, d, mask)
                nb = 0
                for r in range(nb_in):
                    if check and not _row_ok(rows, b0 + r, d, mask):
                        sk[u] += 1
                        continue
                    for j in range(d):
                        ub[j, nb] = rows[b0 + r, j]
                    nb += 1
                for r in range(nb):
                    m[r] = np.float32(0.0)
                for j in range(d):
                    for r in range(nb):
                        m[r] = max(m[r], abs(xb[j, r]))
                _block(xb, m, nb, d, gram, hist, minmax, comps, offset, lo32, invw32, nbins, gl, s, h[u], mn, mx,
                       cb, bi, density, dinvw32, dbins, dens, dbi)
        _finish(gl, g)

    # -- the kernel specialised for 3x3 filters (d = 9, the bulk of every store) ---------------------
    # Compile-time d lets LLVM unroll the component loops and keep the projection in registers. Per
    # 256-row block: (1) transpose the float16 bits to a column-major block (scalar, 9 loads + 9 stores
    # per row), (2) one SIMD pass per column converts float16 -> float32 with the bit trick (bitcasts in
    # registers, no extra passes) and takes the row max |x|, (3) scale, (4) Gram + sums, (5) project,
    # bin and (6) scatter the 9 bin indices row by row (consecutive increments go to different
    # components, so they don't wait on each other). min/max are kept per lane and reduced at the end.
    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _u32_as_f32(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.FloatType())

        return _types.float32(_types.uint32), codegen

    @_intrinsic
    def _f32_as_u32(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(32))

        return _types.uint32(_types.float32), codegen

    @_numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
    def _tail9(xb, m, nb, gram, hist, minmax, comps, offset, lo, invw, top, nbins, gl, sl, hu, mnb, mxb, bi,
               density, dinvw, dtop, dbins, dens, dbi):
        for r in range(nb):
            mm = m[r]
            m[r] = np.float32(1.0) / mm if mm > 0 else np.float32(0.0)
        for j in range(9):
            for r in range(nb):
                xb[j, r] *= m[r]
        if gram:
            for i in range(9):
                acc = np.float32(0.0)
                for r in range(nb):
                    acc += xb[i, r]
                sl[i] += acc
                for j in range(i, 9):
                    acc = np.float32(0.0)
                    for r in range(nb):
                        acc += xb[i, r] * xb[j, r]
                    gl[i, j] += acc
        if hist or minmax or density:
            for k in range(9):
                c0, c1, c2 = comps[k, 0], comps[k, 1], comps[k, 2]
                c3, c4, c5 = comps[k, 3], comps[k, 4], comps[k, 5]
                c6, c7, c8 = comps[k, 6], comps[k, 7], comps[k, 8]
                off = offset[k]
                kb = np.int32(k * nbins)
                if density and k < 2:  # the density's two components: a loop of their own (see below)
                    for r in range(nb):
                        c = (c0 * xb[0, r] + c1 * xb[1, r] + c2 * xb[2, r] + c3 * xb[3, r] + c4 * xb[4, r]
                             + c5 * xb[5, r] + c6 * xb[6, r] + c7 * xb[7, r] + c8 * xb[8, r]) - off
                        if minmax:
                            mnb[k, r] = min(mnb[k, r], c)
                            mxb[k, r] = max(mxb[k, r], c)
                        if hist:
                            t = (c - lo) * invw
                            t = min(max(t, np.float32(0.0)), top)
                            bi[k, r] = np.int32(t) + kb
                        t = (c - lo) * dinvw
                        t = min(max(t, np.float32(0.0)), dtop)
                        dbi[k, r] = np.int32(t)
                else:
                    # the hot loop, as before the density existed: a third branch in it (density and k < 2)
                    # kept LLVM from vectorising it, and the histogram pass ran 1.5x slower with density off
                    for r in range(nb):
                        c = (c0 * xb[0, r] + c1 * xb[1, r] + c2 * xb[2, r] + c3 * xb[3, r] + c4 * xb[4, r]
                             + c5 * xb[5, r] + c6 * xb[6, r] + c7 * xb[7, r] + c8 * xb[8, r]) - off
                        if minmax:
                            mnb[k, r] = min(mnb[k, r], c)
                            mxb[k, r] = max(mxb[k, r], c)
                        if hist:
                            t = (c - lo) * invw
                            t = min(max(t, np.float32(0.0)), top)
                            bi[k, r] = np.int32(t) + kb
            if hist:
                for r in range(nb):
                    for k in range(9):
                        hu[bi[k, r]] += 1
            if density:
                for r in range(nb):
                    dens[dbi[0, r] * dbins + dbi[1, r]] += 1

    @_jit
    def _end9(gl, sl, g, s, minmax, mnb, mxb, mn, mx):
        for i in range(9):
            s[i] += sl[i]
            for j in range(i, 9):
                g[i, j] += gl[i, j]
                if i != j:
                    g[j, i] += gl[i, j]
        if minmax:
            for k in range(9):
                for r in range(BLK):
                    mn[k] = min(mn[k], mnb[k, r])
                    mx[k] = max(mx[k], mxb[k, r])

    @_numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
    def _convert9_u16(tb, xb, m, nb):
        # float16 bits (column-major block) -> float32 and the row max |x|; returns the largest exponent field
        # seen (an integer max: vectorises), which is 0x7C00 when some value is NaN or infinite
        top = np.uint32(0)
        for r in range(nb):
            m[r] = np.float32(0.0)
        for j in range(9):
            for r in range(nb):
                hv = np.uint32(tb[j, r])
                top = max(top, hv & np.uint32(_F16_EXP))
                a = _u32_as_f32((hv & np.uint32(0x7FFF)) << np.uint32(13)) * np.float32(5.192296858534828e33)
                m[r] = max(m[r], a)
                xb[j, r] = _u32_as_f32(_f32_as_u32(a) | ((hv & np.uint32(0x8000)) << np.uint32(16)))
        return top

    @_numba.njit(nogil=True, fastmath=True, cache=True, inline="always")
    def _rowmax9_f32(xb, m, nb):
        # the row max |x| of a float32 block; returns the largest exponent field seen (0x7F800000: NaN / inf)
        top = np.uint32(0)
        for r in range(nb):
            m[r] = np.float32(0.0)
        for j in range(9):
            for r in range(nb):
                top = max(top, _f32_as_u32(xb[j, r]) & np.uint32(_F32_EXP))
                m[r] = max(m[r], abs(xb[j, r]))
        return top

    @_jit
    def _compact9(flat, base, nb, mask, out):
        # rare path: copy the rows of flat[base : base + 9 nb] free of NaN / inf into the columns of ``out``
        # (the raw bits); returns how many
        fill = 0
        for r in range(nb):
            ok = True
            for j in range(9):
                if (flat[base + r * 9 + j] & mask) == mask:
                    ok = False
            if ok:
                for j in range(9):
                    out[j, fill] = flat[base + r * 9 + j]
                fill += 1
        return fill

    @_jit
    def _fused9_u16(flat, starts, counts, units, gram, hist, minmax, comps, offset, lo, invw, nbins,
                    g, s, h, mn, mx, sk, density, dinvw, dbins, dens):
        tb = np.empty((9, BLK), np.uint16)
        xb = np.empty((9, BLK), np.float32)
        m = np.empty(BLK, np.float32)
        bi = np.empty((9, BLK), np.int32)
        dbi = np.empty((2, BLK), np.int32)
        dinvw32, dtop = np.float32(dinvw), np.float32(dbins - 1)
        mnb = np.full((9, BLK), np.inf, np.float32)
        mxb = np.full((9, BLK), -np.inf, np.float32)
        gl = np.zeros((9, 9), np.float64)
        sl = np.zeros(9, np.float64)
        lo32, invw32, top = np.float32(lo), np.float32(invw), np.float32(nbins - 1)
        for q in range(starts.shape[0]):
            hu = h[units[q]].reshape(-1)
            end = starts[q] + counts[q]
            for b0 in range(starts[q], end, BLK):
                nb = min(BLK, end - b0)
                base = b0 * 9
                for r in range(nb):
                    for j in range(9):
                        tb[j, r] = flat[base + r * 9 + j]
                if _convert9_u16(tb, xb, m, nb) == np.uint32(_F16_EXP):  # rare: rows holding NaN / inf
                    kept = _compact9(flat, base, nb, np.uint16(_F16_EXP), tb)
                    sk[units[q]] += nb - kept
                    nb = kept
                    _convert9_u16(tb, xb, m, nb)
                _lift_tiny(xb, m, nb, 9)
                _tail9(xb, m, nb, gram, hist, minmax, comps, offset, lo32, invw32, top, nbins, gl, sl, hu, mnb, mxb,
                       bi, density, dinvw32, dtop, dbins, dens, dbi)
        _end9(gl, sl, g, s, minmax, mnb, mxb, mn, mx)

    @_jit
    def _fused9_f32(flat, starts, counts, units, gram, hist, minmax, comps, offset, lo, invw, nbins,
                    g, s, h, mn, mx, sk, density, dinvw, dbins, dens):
        # flat: the float32 rows, C order, viewed as uint32 (their bits)
        xb = np.empty((9, BLK), np.float32)
        ub = xb.view(np.uint32)
        m = np.empty(BLK, np.float32)
        bi = np.empty((9, BLK), np.int32)
        dbi = np.empty((2, BLK), np.int32)
        dinvw32, dtop = np.float32(dinvw), np.float32(dbins - 1)
        mnb = np.full((9, BLK), np.inf, np.float32)
        mxb = np.full((9, BLK), -np.inf, np.float32)
        gl = np.zeros((9, 9), np.float64)
        sl = np.zeros(9, np.float64)
        lo32, invw32, top = np.float32(lo), np.float32(invw), np.float32(nbins - 1)
        for q in range(starts.shape[0]):
            hu = h[units[q]].reshape(-1)
            end = starts[q] + counts[q]
            for b0 in range(starts[q], end, BLK):
                nb = min(BLK, end - b0)
                base = b0 * 9
                for r in range(nb):
                    for j in range(9):
                        ub[j, r] = flat[base + r * 9 + j]
                if _rowmax9_f32(xb, m, nb) == np.uint32(_F32_EXP):  # rare: rows holding NaN / inf
                    kept = _compact9(flat, base, nb, np.uint32(_F32_EXP), ub)
                    sk[units[q]] += nb - kept
                    nb = kept
                    _rowmax9_f32(xb, m, nb)
                _lift_tiny(xb, m, nb, 9)
                _tail9(xb, m, nb, gram, hist, minmax, comps, offset, lo32, invw32, top, nbins, gl, sl, hu, mnb, mxb,
                       bi, density, dinvw32, dtop, dbins, dens, dbi)
        _end9(gl, sl, g, s, minmax, mnb, mxb, mn, mx)

    @_numba.njit(nogil=True, fastmath=True, cache=True)
    def _f16_to_f32_nb(h, out):
        u = out.view(np.uint32)
        for i in range(h.size):
            hv = np.uint32(h[i])
            u[i] = (hv & np.uint32(0x7FFF)) << np.uint32(13)
        for i in range(h.size):
            out[i] = out[i] * np.float32(5.192296858534828e33)
        for i in range(h.size):
            u[i] = u[i] | ((np.uint32(h[i]) & np.uint32(0x8000)) << np.uint32(16))


def f16_to_f32(values: np.ndarray) -> np.ndarray:
    """float16 → float32 (numba bit trick when available; numpy's cast otherwise)."""
    values = np.ascontiguousarray(values)
    if values.dtype != np.float16:
        return values.astype(np.float32)
    if not HAVE_NUMBA:
        return values.astype(np.float32)
    out = np.empty(values.shape, np.float32)
    _f16_to_f32_nb(values.view(np.uint16).reshape(-1), out.reshape(-1))
    return out


# -- numpy ------------------------------------------------------------------------------------------
_NP_CHUNK = 65536  # rows per numpy step: temporaries stay in L2


def _numpy_rows(rows, starts, counts, units, spec, comps, offset, g, s, h, mn, mx, sk, dens):
    d = spec.d
    dinvw = np.float32(spec.density_bins / (spec.hi - spec.lo))
    dtop = np.float32(spec.density_bins - 1)
    lo = np.float32(spec.lo)
    invw = np.float32(spec.nbins / (spec.hi - spec.lo))
    top = np.float32(spec.nbins - 1)
    kidx = (np.arange(d, dtype=np.int64) * spec.nbins)[None, :]
    for start, count, unit in zip(starts.tolist(), counts.tolist(), units.tolist()):
        for a in range(start, start + count, _NP_CHUNK):
            b = min(a + _NP_CHUNK, start + count)
            x = rows[a:b].astype(np.float32)
            finite = np.isfinite(x).all(axis=1)
            if not finite.all():
                sk[unit] += int(len(x) - finite.sum())
                x = x[finite]
                if not len(x):
                    continue
            peak = np.abs(x).max(axis=1, initial=np.float32(0.0))
            tiny = peak < np.float32(TINY)
            if tiny.any():  # exact power-of-two lift, as in the numba kernels: 1 / peak stays finite
                x[tiny] *= np.float32(LIFT)
                peak[tiny] *= np.float32(LIFT)
            inv = np.divide(np.float32(1.0), peak, out=np.zeros_like(peak), where=peak > 0)
            x *= inv[:, None]
            if spec.gram:
                g += (x.T @ x).astype(np.float64)
                s += x.sum(axis=0, dtype=np.float64)
            if spec.hist or spec.minmax or spec.density:
                c = x @ comps.T
                c -= offset
                if spec.minmax:
                    np.minimum(mn, c.min(axis=0), out=mn)
                    np.maximum(mx, c.max(axis=0), out=mx)
                if spec.hist:
                    t = (c - lo) * invw
                    np.clip(t, np.float32(0.0), top, out=t)
                    idx = t.astype(np.int64) + kidx
                    h[unit] += np.bincount(idx.ravel(), minlength=d * spec.nbins).reshape(d, spec.nbins)
                if spec.density:
                    t2 = (c[:, :2] - lo) * dinvw
                    np.clip(t2, np.float32(0.0), dtop, out=t2)
                    i2 = t2.astype(np.int64)
                    dens += np.bincount(i2[:, 0] * spec.density_bins + i2[:, 1], minlength=dens.size)


def run_rows(rows: np.ndarray, starts: np.ndarray, counts: np.ndarray, units: np.ndarray, spec: PassSpec,
             n_units: int) -> Partial:
    """One pass of ``spec`` over the segments of ``rows``; histogram unit ids must be < n_units.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((1000, 9)).astype(np.float16)
    >>> part = run_rows(x, np.array([0]), np.array([1000]), np.array([0]), PassSpec(d=9, kernel="numpy"), 1)
    >>> part.n
    1000
    """
    starts = np.ascontiguousarray(starts, np.int64)
    counts = np.ascontiguousarray(counts, np.int64)
    units = np.ascontiguousarray(units, np.int64)
    acc = _Accumulator(spec, n_units)
    acc.add(rows, starts, counts, units)
    return acc.partial(units, counts)


class _Accumulator:
    """The accumulators of one pass over several row arrays (e.g. the shards of one task): the kernel adds
    into them in place, so a task allocates its histograms once, whatever number of shards it reads.
    Adding shard after shard gives the same floats as merging one Partial per shard in that order."""

    def __init__(self, spec: PassSpec, n_units: int) -> None:
        d = spec.d
        self.spec = spec
        self.n_units = n_units
        self.gram = np.zeros((d, d), np.float64)
        self.sums = np.zeros(d, np.float64)
        self.h = np.zeros((n_units if spec.hist else 1, d, spec.nbins), np.int64)
        self.skipped = np.zeros(len(self.h), np.int64)  # per histogram unit: rows with a NaN or an inf
        self.mn = np.full(d, np.inf, np.float32)
        self.mx = np.full(d, -np.inf, np.float32)
        self.comps, self.offset = spec.projection()
        self.invw = spec.nbins / (spec.hi - spec.lo)
        self.dbins = int(spec.density_bins) if spec.density else 1
        self.dinvw = self.dbins / (spec.hi - spec.lo)
        self.dens = np.zeros(self.dbins * self.dbins, np.int64)  # flat (dbins, dbins)

    def add(self, rows: np.ndarray, starts: np.ndarray, counts: np.ndarray, units: np.ndarray) -> None:
        """starts / counts / units: contiguous int64 arrays."""
        spec = self.spec
        d = spec.d
        if rows.ndim != 2 or rows.shape[1] != d:
            raise UsageError(f"rows must have shape (n, {d}), got {rows.shape}")
        hunits = units if spec.hist else np.zeros_like(units)
        if spec.kernel != "numba":
            _numpy_rows(rows, starts, counts, hunits, spec, self.comps, self.offset, self.gram, self.sums, self.h,
                        self.mn, self.mx, self.skipped, self.dens)
            return
        args = (starts, counts, hunits, spec.gram, spec.hist, spec.minmax, self.comps, self.offset, spec.lo, self.invw,
                spec.nbins, self.gram, self.sums, self.h, self.mn, self.mx, self.skipped, spec.density, self.dinvw,
                self.dbins, self.dens)
        if d == 9:  # the specialised kernel reads flat C-ordered rows
            if rows.dtype == np.float16:
                _fused9_u16(np.ascontiguousarray(rows).view(np.uint16).reshape(-1), *args)
            else:
                _fused9_f32(np.ascontiguousarray(rows, np.float32).view(np.uint32).reshape(-1), *args)
        elif rows.dtype == np.float16:
            _fused_u16(np.ascontiguousarray(rows).view(np.uint16), *args)
        else:
            _fused_f32(np.ascontiguousarray(rows, np.float32).view(np.uint32), *args)

    def partial(self, units: np.ndarray, counts: np.ndarray) -> Partial:
        """The Partial of everything added; ``units`` / ``counts``: all segments added (for unit_rows)."""
        spec = self.spec
        skipped = int(self.skipped.sum())
        part = Partial(spec.d, spec.nbins, n=int(counts.sum()) - skipped, gram=self.gram, sums=self.sums,
                       cmin=self.mn.astype(np.float64), cmax=self.mx.astype(np.float64), skipped=skipped)
        if spec.density:
            part.density = self.dens.reshape(self.dbins, self.dbins)
        if spec.hist:
            part.units = np.arange(self.n_units, dtype=np.int64)
            part.hist = self.h
            part.unit_rows = np.bincount(units, weights=counts, minlength=self.n_units).astype(np.int64) - self.skipped
        return part
