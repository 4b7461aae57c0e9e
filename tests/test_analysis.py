"""Analyses over a real store: streaming PCA vs scikit-learn, drift vs the authors' notebook definitions
(tests/notebook_reference.py), numba vs numpy kernels, degeneration, bad input, and a store written to while an
analysis runs."""

from __future__ import annotations

import dataclasses

import notebook_reference as nb
import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.decomposition import PCA

from filterdb import ingest_record
from filterdb.analysis import (
    AnalysisError,
    PCAResult,
    StreamingPCA,
    coefficient_histograms,
    degeneration,
    drift,
    fit_pca,
    make_plan,
)
from filterdb.analysis.drift import drift_from_coefficients
from filterdb.analysis.kernels import HAVE_NUMBA, PassSpec, run_rows
from filterdb.analysis.pca import scale_filters
from filterdb.errors import UsageError
from filterdb.readers import make_layer
from filterdb.store import StoreError, init_store, open_store
from filterdb.testing import ZOO_MODELS, category_record
from filterdb.types import ModelInfo, ModelRecord
from filterdb.store import remove_models


EPS32 = np.finfo(np.float32).eps
KERNELS = ["numpy"] + (["numba"] if HAVE_NUMBA else [])


@pytest.fixture()
def store(synthetic_zoo):
    """The session's synthetic zoo (filterdb.testing.ZOO_MODELS), read-only."""
    return synthetic_zoo


def _scaled_filters(store, where=None, params=None):
    return np.concatenate(list(store.iter_filters("3x3", where, params, scaled=True))).astype(np.float64)


def _row_groups(store, column):
    layers = store.layers("kernel = ?", ["3x3"])
    groups = np.repeat(layers[column].to_numpy(), layers["n_filters"].to_numpy())
    models = np.repeat(layers["model_id"].to_numpy(), layers["n_filters"].to_numpy())
    return groups, models


# -- streaming PCA ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", KERNELS)
def test_streaming_pca_equals_sklearn(kernel):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((20000, 9)) @ (np.eye(9) + 0.4 * rng.standard_normal((9, 9)))).astype(np.float32)
    ref = PCA().fit(scale_filters(x))
    one = StreamingPCA(kernel=kernel).fit(x)
    many = StreamingPCA(kernel=kernel, batch_size=777).fit(x)
    parts = StreamingPCA(kernel=kernel)
    for chunk in np.array_split(x, 7):
        parts.partial_fit(chunk)
    for est in (one, many, parts):
        assert est.n_samples_seen_ == len(x)
        np.testing.assert_allclose(est.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-6)
        np.testing.assert_allclose(est.explained_variance_, ref.explained_variance_, atol=1e-6)
        np.testing.assert_allclose(est.mean_, ref.mean_, atol=1e-6)
        # the documented sign rule is scikit-learn's: components compare directly, not up to sign
        np.testing.assert_allclose(est.components_, ref.components_, atol=1e-5)
        np.testing.assert_allclose(est.transform(x), ref.transform(scale_filters(x)), atol=1e-4)


def test_streaming_pca_contract():
    x = np.random.default_rng(0).standard_normal((500, 9))
    est = StreamingPCA(n_components=3, kernel="numpy").fit(x)
    assert est.components_.shape == (3, 9) and est.transform(x).shape == (500, 3)
    with pytest.raises(ValueError, match="n_components must be in \\[1, 9\\], got 10"):
        StreamingPCA(n_components=10).fit(x)
    with pytest.raises(ValueError, match="X has 4 features, the PCA was fitted with 9"):
        est.transform(x[:, :4])
    with pytest.raises(AnalysisError, match="not fitted yet"):
        StreamingPCA().transform(x)
    unscaled = StreamingPCA(scale=False).fit(x)
    np.testing.assert_allclose(unscaled.explained_variance_, PCA().fit(x).explained_variance_, rtol=1e-6)


@pytest.mark.parametrize("kernel", KERNELS)
def test_store_pca_equals_sklearn_across_engines(store, kernel):
    x = _scaled_filters(store)
    ref = PCA().fit(x)
    for kwargs in ({"n_threads": 1, "task_rows": 10_000_000}, {"n_threads": 2, "task_rows": 1000}):
        basis = fit_pca(store, kernel=kernel, **kwargs)
        assert basis.n_filters == len(x) and basis.n_models == len(ZOO_MODELS)
        np.testing.assert_allclose(basis.explained_variance_ratio, ref.explained_variance_ratio_, atol=1e-6)
        np.testing.assert_allclose(basis.components, ref.components_, atol=1e-5)
        np.testing.assert_allclose(basis.mean, ref.mean_, atol=1e-6)
    assert np.isclose(basis.cumulative[-1], 1.0)


def test_pca_selection_and_save_load(store, tmp_path):
    basis = fit_pca(store, where="visual_category = ?", params=["medical"])
    ref = PCA().fit(_scaled_filters(store, "visual_category = ?", ["medical"]))
    np.testing.assert_allclose(basis.explained_variance_ratio, ref.explained_variance_ratio_, atol=1e-6)
    basis.save(tmp_path / "basis.npz")
    basis.to_json(tmp_path / "basis.json")
    for path in ("basis.npz", "basis.json"):
        loaded = PCAResult.load(tmp_path / path)
        np.testing.assert_array_equal(loaded.components, basis.components)
        assert loaded.n_filters == basis.n_filters and loaded.selection["params"] == ["medical"]
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(AnalysisError, match="unreadable basis file"):
        PCAResult.load(tmp_path / "junk.npz")


def test_numba_and_numpy_kernels_agree():
    if not HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(3)
    rows = (rng.standard_normal((50_000, 9)) * 0.1).astype(np.float16)
    rows[::97] = 0
    comps = np.linalg.qr(rng.standard_normal((9, 9)))[0].T
    mean = rng.standard_normal(9) * 0.05
    starts, counts, units = np.array([0, 10_000, 30_001]), np.array([10_000, 20_001, 19_999]), np.array([0, 1, 0])
    out = {}
    for kernel in ("numba", "numpy"):
        spec = PassSpec(d=9, hist=True, minmax=True, components=comps, mean=mean, lo=-3.5, hi=3.5, kernel=kernel)
        out[kernel] = run_rows(rows, starts, counts, units, spec, 2)
    a, b = out["numba"], out["numpy"]
    assert a.n == b.n == 50_000
    np.testing.assert_allclose(a.gram, b.gram, atol=2e-6 * np.abs(b.gram).max())
    np.testing.assert_allclose(a.sums, b.sums, atol=1e-6 * np.abs(b.sums).max())
    np.testing.assert_array_equal(a.unit_rows, [29_999, 20_001])
    assert np.abs(a.hist - b.hist).sum() <= 1e-5 * a.hist.sum()  # float32 rounding at bin edges only
    np.testing.assert_allclose(a.cmin, b.cmin, atol=1e-5)
    # exact f16 -> f32 conversion: the numba Gram equals a float64 reference to float32 accumulation error
    x = scale_filters(rows.astype(np.float32))
    np.testing.assert_allclose(a.gram, x.T @ x, atol=1e-6 * np.abs(a.gram).max())


# -- drift ------------------------------------------------------------------------------------------
def _reference_drift(coeffs, groups, models, eta, bins, lo, hi, model_weighting):
    """docs/reference.md §5 written out directly: the notebook's density histograms (notebook_reference), and
    for ``model_weighting`` the mean of the models' histograms under the same density / eps rule."""
    labels = list(dict.fromkeys(groups))
    d = coeffs.shape[1]
    width = (hi - lo) / bins

    def dist(rows_of_group, i):
        if not model_weighting:
            return nb.density_eps(coeffs[rows_of_group, i], (lo, hi), bins)
        ps = []
        for m in dict.fromkeys(models[rows_of_group]):
            h = np.histogram(coeffs[rows_of_group & (models == m), i], bins=bins, range=(lo, hi))[0].astype(float)
            ps.append(h / h.sum())
        p = np.mean(ps, axis=0) / width
        p[p == 0] = EPS32
        return p / p.sum()

    out = np.zeros((len(labels), len(labels)))
    for a, ga in enumerate(labels):
        for b, gb in enumerate(labels):
            for i in range(d):
                p, q = dist(groups == ga, i), dist(groups == gb, i)
                out[a, b] += eta[i] * (entropy(p, q) + entropy(q, p))
    return labels, out


@pytest.mark.parametrize("model_weighting", [False, True])
@pytest.mark.parametrize("range_mode", ["minmax", "fixed"])
@pytest.mark.parametrize("weights", ["explained", "uniform"])
def test_drift_math_equals_reference(store, model_weighting, range_mode, weights):
    x = _scaled_filters(store)
    ref = PCA().fit(x)
    c = ref.transform(x)
    groups, models = _row_groups(store, "visual_category")
    eta = ref.explained_variance_ratio_ if weights == "explained" else np.full(9, 1 / 9)
    rng = None if range_mode == "minmax" else (-3.0, 3.0)
    labels, matrix = drift_from_coefficients(
        c, groups, models=models, explained_variance_ratio=eta if weights == "explained" else None, bins=70,
        range=rng, model_weighting=model_weighting)
    lo, hi = (c.min(), c.max()) if rng is None else rng
    ref_labels, expected = _reference_drift(c, groups, models, eta, 70, lo, hi, model_weighting)
    assert labels == ref_labels
    np.testing.assert_allclose(matrix, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model_weighting", [False, True])
@pytest.mark.parametrize("range_mode", ["minmax", "bound"])
@pytest.mark.parametrize("weights", ["explained", "uniform"])
def test_store_drift_equals_reference(store, model_weighting, range_mode, weights):
    result = drift(store, by="visual_category", range=range_mode, weights=weights, model_weighting=model_weighting,
                   min_filters=0, order="none")
    x = _scaled_filters(store)
    ref = PCA().fit(x)
    c = ref.transform(x)
    groups, models = _row_groups(store, "visual_category")
    eta = ref.explained_variance_ratio_ if weights == "explained" else np.full(9, 1 / 9)
    lo, hi = (c.min(), c.max()) if range_mode == "minmax" else (-(3 + np.linalg.norm(ref.mean_)),
                                                                  3 + np.linalg.norm(ref.mean_))
    labels, expected = _reference_drift(c, groups, models, eta, 70, lo, hi, model_weighting)
    assert list(result.groups) == labels
    np.testing.assert_allclose(result.range, (lo, hi), rtol=1e-5)
    # float32 coefficients against float64 ones: a value within ~1e-7 of a bin edge may change bins
    np.testing.assert_allclose(result.matrix, expected, rtol=2e-2, atol=1e-4)
    m = result.matrix
    assert np.array_equal(m, m.T) and np.all(np.diag(m) == 0) and np.all(m[~np.eye(len(m), dtype=bool)] > 0)
    assert result.sizes["n_models"] == [4, 2, 1]
    assert result.sizes["n_filters"] == [int((groups == g).sum()) for g in labels]


def test_drift_identical_groups_is_zero(tmp_path):
    st = init_store(tmp_path / "twins")
    record = category_record(5, "medical")
    twin = ModelRecord(ModelInfo(source="twin", format="synthetic"),
                       tuple(make_layer(f"copy_{layer.name}", "Conv", layer.weight) for layer in record.layers))
    ingest_record(st, record, {"Name": "a", "Task": "x"})
    ingest_record(st, twin, {"Name": "b", "Task": "y"})
    for range_mode in ("bound", "minmax"):
        for weighting in (False, True):
            result = drift(st, by="task", range=range_mode, model_weighting=weighting, min_filters=0)
            assert result.matrix.shape == (2, 2) and np.all(result.matrix == 0.0)
    labels, m = drift_from_coefficients(np.tile(np.random.default_rng(0).standard_normal((300, 9)), (2, 1)),
                                        ["a"] * 300 + ["b"] * 300)
    assert m[0, 1] == 0.0 and m[1, 0] == 0.0


def test_drift_order_summary_and_depth(store):
    result = drift(store, by="visual_category", min_filters=0)
    means = result.matrix.sum(1) / 2
    assert list(means) == sorted(means) and result.groups[-1] == "plants"  # outlier last
    summary = result.summary()
    assert summary["n_pairs"] == 3 and summary["max"] == result.matrix.max()
    assert set(summary["max_pair"]) == {"plants", result.groups[0]} or "plants" in summary["max_pair"]
    depth = drift(store, by="depth", min_filters=0)
    assert depth.groups == ("[0.0, 0.1]", "(0.4, 0.5]", "(0.9, 1.0]")  # natural order kept
    assert '"groups"' in depth.to_json()
    same_basis = drift(store, by="visual_category", basis=result.basis, min_filters=0)
    np.testing.assert_array_equal(same_basis.matrix, result.matrix)


@pytest.mark.parametrize("kernel", KERNELS)
def test_histograms_kernels_and_threads_agree(store, kernel):
    a = coefficient_histograms(store, by="task", kernel=kernel, task_rows=10_000_000)
    b = coefficient_histograms(store, by="task", kernel="numpy", task_rows=500)
    assert a.groups == b.groups and a.counts.shape == (3, 9, 70)
    np.testing.assert_array_equal(a.n_filters, b.n_filters)
    assert np.abs(a.counts - b.counts).sum() <= 1e-4 * a.counts.sum()
    assert np.all(a.counts.sum(-1) == a.n_filters[:, None])


# -- bad input --------------------------------------------------------------------------------------
def test_bad_input(store, tmp_path):
    with pytest.raises(UsageError, match="unknown column 'colour'"):
        drift(store, by="colour")
    with pytest.raises(UsageError, match="unknown column 'taks'; did you mean 'task'"):
        drift(store, by="taks")
    for bad in ((3, -3), (0, 0), (float("nan"), 1), (-np.inf, np.inf), (1,), "wide"):
        with pytest.raises(UsageError, match="range must"):
            drift(store, by="task", range=bad)
    for bad in (0, 10_001, 2.5, True):
        with pytest.raises(UsageError, match="bins must be an integer from 1 to 10,000"):
            drift(store, by="task", bins=bad)
    with pytest.raises(UsageError, match="unknown preset 'papper'; did you mean 'paper'"):
        drift(store, by="task", preset="papper")
    with pytest.raises(StoreError, match="query failed"):
        drift(store, by="no_such + 1")
    with pytest.raises(AnalysisError, match="no 3x3 filters matching"):
        fit_pca(store, where="task = ?", params=["Nothing"])
    with pytest.raises(AnalysisError, match="no 5x5 filters"):
        fit_pca(store, shape="5x5")
    with pytest.raises(AnalysisError, match="shape must look like '3x3'"):
        fit_pca(store, shape="3by3")
    with pytest.raises(AnalysisError, match="needs at least 2 groups.*'plants': 1224 filters / 1 models"):
        drift(store, by="visual_category", min_filters=3000)
    result = drift(store, by="visual_category", min_models=2, min_filters=0)
    assert "plants" in result.dropped and "plants" not in result.groups
    assert any("plants" in n for n in result.notes)
    # a requested group with no filters: named in the notes, never a crash
    result = drift(store, by="visual_category", groups=["natural", "medical", "x-ray"], min_filters=0)
    assert result.groups == ("natural", "medical") or set(result.groups) == {"natural", "medical"}
    assert any("'x-ray' has no 3x3 filters" in n for n in result.notes)
    with pytest.raises(ValueError, match="weights must be 'explained' or 'uniform'"):
        drift(store, by="task", weights="eta")
    with pytest.raises(AnalysisError, match="basis has 4 values per filter"):
        drift(store, by="task", basis=PCAResult("2x2", np.zeros(4), np.eye(4), np.ones(4), np.ones(4) / 4, 10))
    empty = init_store(tmp_path / "empty")
    with pytest.raises(AnalysisError, match="no 3x3 filters"):
        drift(empty, by="task")


def test_store_written_during_analysis(store, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(store.root, root)
    st = open_store(root, "a")
    before = fit_pca(st)
    plan = make_plan(st, "3x3", by="task")  # the snapshot an analysis works on
    ingest_record(st, category_record(99, "plants"), {"Name": "late", "Visual Category": "plants", "Task": "Detection"})
    from filterdb.analysis._run import run_pass
    from filterdb.engine import LocalEngine

    total = run_pass(plan, PassSpec(d=9), LocalEngine(2), 1000)
    assert total.n == before.n_filters  # the model added meanwhile is not part of the snapshot
    np.testing.assert_allclose(total.gram, before.explained_variance * 0 + total.gram)
    after = fit_pca(st)
    assert after.n_filters > before.n_filters
    remove_models(st, "m0")  # its shard disappears under the old snapshot: a clear error, not a crash
    with pytest.raises(StoreError, match="shard missing"):
        run_pass(plan, PassSpec(d=9), LocalEngine(1), 1000)


# -- degeneration -----------------------------------------------------------------------------------
def test_degeneration(tmp_path):
    st = init_store(tmp_path / "zoo")
    rng = np.random.default_rng(0)
    good = category_record(1, "natural")
    random = ModelRecord(ModelInfo(source="untrained", format="synthetic"),
                         (make_layer("r0", "Conv", rng.standard_normal((64, 64, 3, 3))),))
    sparse_w = rng.standard_normal((64, 64, 3, 3))
    sparse_w[:48] *= 1e-4
    sparse = ModelRecord(ModelInfo(source="pruned", format="synthetic"), (make_layer("s0", "Conv", sparse_w),))
    ingest_record(st, good, {"Name": "good", "Task": "Classification"})
    ingest_record(st, random, {"Name": "untrained", "Task": "GAN-Discriminator"})
    ingest_record(st, sparse, {"Name": "pruned", "Task": "Classification"})
    result = degeneration(st, by="task")
    per_model = result.per_model.set_index("model")
    assert per_model.loc["untrained", "random_layers"] == 1.0 and per_model.loc["untrained", "random_filters"] == 1.0
    assert per_model.loc["pruned", "sparse_layers"] == 1.0
    assert per_model.loc["good", "any_layers"] < 1.0
    per_group = result.per_group.set_index("task")
    assert per_group.loc["GAN-Discriminator", "random_layers"] == 1.0
    n_cls = per_group.loc["Classification", "n_filters"]
    assert np.isclose(per_group.loc["Classification", "sparse_filters"], 4096 / n_cls)
    assert set(result.per_depth["depth_decile"]) == {"[0.0, 0.1]", "(0.4, 0.5]", "(0.9, 1.0]", "unknown"}
    assert 0 < result.overall["any_filters"] < 1 and '"per_model"' in result.to_json()
    from filterdb.check import Thresholds

    strict = degeneration(st, thresholds=Thresholds(random=1.5, low_diversity=0.2))
    assert strict.per_model.set_index("model").loc["untrained", "random_layers"] == 0.0
    with pytest.raises(AnalysisError, match="no conv layers match"):
        degeneration(st, where="task = ?", params=["none"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_layers_with_non_finite_weights_are_left_out(tmp_path, kernel):
    """Decided once (docs/reference.md §3): layers holding NaN / inf weights leave every distribution analysis,
    and the notes count them; the rest gives the numbers of a store without them."""
    clean, dirty = init_store(tmp_path / "clean"), init_store(tmp_path / "dirty")
    for seed, category, task in ZOO_MODELS[:5]:
        record = category_record(seed, category)
        meta = {"Name": f"m{seed}", "Visual Category": category, "Task": task}
        ingest_record(clean, record, meta)
        if seed in (1, 4):  # one more layer holding a NaN, and one holding an infinity
            w = np.random.default_rng(seed).standard_normal((8, 4, 3, 3)).astype(np.float32)
            w[3, 1, 0, 2] = np.nan if seed == 1 else np.inf
            extra = dataclasses.replace(make_layer("bad", "Conv", w), conv_depth=3, conv_depth_norm=1.0)
            record = dataclasses.replace(record, layers=(*record.layers, extra))
        ingest_record(dirty, record, meta)
    a = fit_pca(clean, kernel=kernel)
    b = fit_pca(dirty, kernel=kernel)
    assert b.n_filters == a.n_filters
    np.testing.assert_allclose(b.components, a.components, atol=1e-12)
    assert any("2 layer(s) with 64 filters hold NaN or infinite weights" in n for n in b.selection["notes"])
    for by in ("task", "depth"):
        da = drift(clean, by, preset="paper", kernel=kernel)
        db = drift(dirty, by, preset="paper", kernel=kernel)
        assert db.groups == da.groups and db.sizes == da.sizes
        np.testing.assert_allclose(db.matrix, da.matrix, rtol=1e-12)
        assert np.isfinite(db.matrix).all() and any("NaN or infinite" in n for n in db.notes)
    if kernel == "numpy":  # the 2-D coefficient density (report figures) follows the same rule
        from filterdb.analysis._density import coefficient_density

        ca, cb = coefficient_density(clean, 0, 1, basis=a, bins=16), coefficient_density(dirty, 0, 1, basis=a, bins=16)
        assert cb.n_filters == ca.n_filters and np.array_equal(cb.counts, ca.counts)
