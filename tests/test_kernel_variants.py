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
                        kernel=kernel, density=d > 1, density_bins=41)
        out[kernel] = run_rows(rows, starts, counts, units, spec, 2)
    a, b = out["numba"], out["numpy"]
    if d > 1:  # the density of coefficients 0 and 1: np.histogram2d of the same coefficients (float64) bounds both
        assert a.density.sum() == b.density.sum() == counts.sum()
        assert np.abs(a.density - b.density).sum() <= 1e-4 * a.density.sum()
        sel = np.concatenate([np.arange(s0, s0 + c0) for s0, c0 in zip(starts, counts)])
        x = rows[sel].astype(np.float64)
        peak = np.abs(x).max(axis=1, keepdims=True)
        c = (np.divide(x, peak, out=np.zeros_like(x), where=peak > 0) - mean) @ comps[:2].T
        ref = np.histogram2d(np.clip(c[:, 0], -2.5, 2.5), np.clip(c[:, 1], -2.5, 2.5), bins=41,
                             range=[(-2.5, 2.5), (-2.5, 2.5)])[0]
        assert np.abs(a.density - ref).sum() <= 1e-3 * ref.sum()
        # the density changes nothing else of the pass
        plain = run_rows(rows, starts, counts, units, PassSpec(d=d, hist=True, minmax=True, components=comps,
                                                               mean=mean, lo=-2.5, hi=2.5, nbins=33), 2)
        np.testing.assert_array_equal(plain.hist, a.hist)
        assert plain.density is None
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


def _tiny_and_bad_rows(dtype, d, seed=7):
    """Normal filters mixed with tiny ones (max |w| 1e-39 subnormal, 1e-30, 1e-44) and rows holding NaN / inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3_000, d))
    x[5::7] *= 1e-39 if dtype == np.float32 else 1e-6  # float16's subnormals start at 6e-8
    x[6::11] *= 1e-30 if dtype == np.float32 else 1e-5
    x[7::13] *= 1e-44 if dtype == np.float32 else 1e-7
    x[::97] = 0.0
    bad = np.zeros(len(x), bool)
    bad[[10, 400, 2_999]] = True
    x[10, 0], x[400, d - 1], x[2_999, d // 2] = np.nan, np.inf, -np.inf
    x = x.astype(dtype)
    good = x[~bad].astype(np.float64)
    peak = np.abs(good).max(axis=1, keepdims=True)
    scaled = np.divide(good, peak, out=np.zeros_like(good), where=peak > 0)  # float64 reference
    return x, bad, scaled


@pytest.mark.parametrize("kernel", ["numpy"] + (["numba"] if HAVE_NUMBA else []))
@pytest.mark.parametrize("d", [9, 4])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_tiny_and_non_finite_filters(kernel, d, dtype):
    """Tiny and subnormal filters scale to finite values equal to a float64 reference; rows holding NaN or inf
    are left out and counted, per unit, by both kernels."""
    x, bad, scaled = _tiny_and_bad_rows(dtype, d)
    comps = np.linalg.qr(np.random.default_rng(1).standard_normal((d, d)))[0].T
    spec = PassSpec(d=d, hist=True, minmax=True, components=comps, mean=np.zeros(d), lo=-3.0, hi=3.0, nbins=40,
                    kernel=kernel)
    part = run_rows(x, np.array([0, 1_000]), np.array([1_000, 2_000]), np.array([0, 1]), spec, 2)
    assert part.n == len(x) - 3 and part.skipped == 3
    np.testing.assert_array_equal(part.unit_rows, [998, 1_999])
    assert np.isfinite(part.gram).all() and np.isfinite(part.cmin).all() and np.isfinite(part.cmax).all()
    np.testing.assert_allclose(part.gram, scaled.T @ scaled, atol=1e-6 * len(x))
    np.testing.assert_allclose(part.sums, scaled.sum(axis=0), atol=1e-6 * len(x))
    c = scaled @ comps.T
    np.testing.assert_allclose(part.cmin, c.min(axis=0), atol=1e-5)
    np.testing.assert_allclose(part.cmax, c.max(axis=0), atol=1e-5)
    assert part.hist.sum() == d * (len(x) - 3)


@pytest.mark.parametrize("kernel", ["numpy"] + (["numba"] if HAVE_NUMBA else []))
def test_streaming_pca_tiny_and_non_finite(kernel):
    from sklearn.decomposition import PCA

    from filterdb.analysis import StreamingPCA

    x, bad, scaled = _tiny_and_bad_rows(np.float32, 9)
    ref = PCA().fit(scaled)
    for sign_rule in ("loadings", "u-based"):
        est = StreamingPCA(kernel=kernel, batch_size=701, sign_rule=sign_rule).fit(x)
        assert est.n_samples_seen_ == len(x) - 3
        np.testing.assert_allclose(est.mean_, ref.mean_, atol=1e-6)
        np.testing.assert_allclose(est.explained_variance_, ref.explained_variance_, rtol=1e-5)
        if sign_rule == "loadings":  # scikit-learn >= 1.5's rule: equal, not equal up to sign
            np.testing.assert_allclose(est.components_, ref.components_, atol=1e-5)
        else:  # scikit-learn 0.24.1's: the largest |coefficient| of each component is positive
            c = (scaled - est.mean_) @ est.components_.T
            assert np.all(c[np.argmax(np.abs(c), axis=0), np.arange(9)] > 0)
            np.testing.assert_allclose(np.abs(est.components_), np.abs(ref.components_), atol=1e-5)
