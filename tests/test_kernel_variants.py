"""The specialised 3x3 numba kernel and the generic one agree with the numpy path (float16 and float32)."""

import numpy as np
import pytest

from filterdb.analysis.kernels import HAVE_NUMBA, PassSpec, run_rows


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("d", [9, 25, 1])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_numba_kernels_match_numpy(d, dtype):
    rng = np.random.default_rng(d)
    rows = (rng.standard_normal((20_011, d)) * 0.1).astype(dtype)
    rows[::53] = 0
    comps = np.linalg.qr(rng.standard_normal((d, d)))[0].T
    mean = rng.standard_normal(d) * 0.05
    starts, counts, units = np.array([5, 300, 7_000]), np.array([290, 6_700, 13_011]), np.array([1, 0, 1])
    out = {}
    for kernel in ("numba", "numpy"):
        spec = PassSpec(d=d, hist=True, minmax=True, components=comps, mean=mean, lo=-2.5, hi=2.5, nbins=33,
                        kernel=kernel)
        out[kernel] = run_rows(rows, starts, counts, units, spec, 2)
    a, b = out["numba"], out["numpy"]
    np.testing.assert_allclose(a.gram, b.gram, atol=2e-6 * np.abs(b.gram).max())
    np.testing.assert_allclose(a.sums, b.sums, atol=1e-6 * np.abs(b.sums).max())
    np.testing.assert_array_equal(a.unit_rows, b.unit_rows)
    assert np.abs(a.hist - b.hist).sum() <= 1e-4 * a.hist.sum()
    np.testing.assert_allclose(a.cmin, b.cmin, atol=1e-5)
    np.testing.assert_allclose(a.cmax, b.cmax, atol=1e-5)
    # gram-only and minmax-only passes give the same moments / extremes as the combined one
    g = run_rows(rows, starts, counts, units, PassSpec(d=d), 2)
    np.testing.assert_array_equal(g.gram, a.gram)
    mm = run_rows(rows, starts, counts, units, PassSpec(d=d, gram=False, minmax=True, components=comps, mean=mean), 2)
    np.testing.assert_array_equal(mm.cmin, a.cmin)
    np.testing.assert_array_equal(mm.cmax, a.cmax)
