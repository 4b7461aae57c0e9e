"""Layer metrics (docs/reference.md §6) against hand-computed cases, scipy, a plain SVD loop and torchconvquality."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from filterdb.metrics import (
    COLUMNS,
    layer_metrics,
    neighbour_tap_correlation,
    orthogonality,
    randomness_threshold,
    sparse_mask,
    sparsity,
    variance_entropy,
    weight_norms,
)
from filterdb.readers import make_layer

CONTRACT_COLUMNS = [
    "name", "kind", "op_type", "shape", "groups", "kernel", "n_filters", "conv_depth", "conv_depth_norm",
    "depth_source", "storage_dtype", "sparsity", "variance_entropy", "variance_entropy_norm",
    "variance_entropy_clean", "variance_entropy_clean_norm", "orthogonality", "norm_l1", "norm_l2",
    "norm_l1_std", "norm_l2_std", "neighbour_corr", "n_nonfinite",
]


# ------------------------------------------------------------------------------------------ references
def svd_entropy(filters: np.ndarray) -> float:
    """The paper's definition, literally: SVD of the centred matrix, v = s²/(n−1), scipy's entropy."""
    x = np.asarray(filters, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    v = s**2 / (len(x) - 1)
    return 0.0 if v.sum() == 0 else float(scipy_entropy(v, base=10))


def reference_orthogonality(weight: np.ndarray) -> float:
    w = np.asarray(weight, dtype=np.float64).reshape(len(weight), -1)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    norms[norms == 0] = 1
    wn = w / norms
    o = len(w)
    return 1 - np.abs(wn @ wn.T - np.eye(o)).sum() / (o * (o - 1))


def reference_sparsity(filters: np.ndarray, eps: float = 0.01) -> tuple[float, np.ndarray]:
    t = np.float32(np.abs(filters).max() * eps) or np.float32(1)
    mask = (np.abs(filters) < t).all(axis=1)
    return float(mask.mean()), mask


# -------------------------------------------------------------------------------------- hand-computed
def test_two_axis_layer_entropy_by_hand():
    # ±e1 and ±2·e2: variances in ratio 1 : 4, so p = (0.2, 0.8) and two zero directions.
    x = np.array([[1, 0, 0, 0], [-1, 0, 0, 0], [0, 2, 0, 0], [0, -2, 0, 0]], dtype=np.float32)
    expected = -(0.2 * math.log10(0.2) + 0.8 * math.log10(0.8))
    assert variance_entropy(x) == pytest.approx(expected, abs=1e-12)
    assert variance_entropy(x) == pytest.approx(scipy_entropy([0.2, 0.8], base=10), abs=1e-12)


def test_two_filters_known_values():
    layer = make_layer("two", "Conv", np.array([[[[1, 0], [0, 0]]], [[[0, 0], [0, 2]]]], dtype=np.float32))
    row = layer_metrics([layer]).iloc[0]
    assert row["n_filters"] == 2
    assert row["sparsity"] == 0.0
    assert row["variance_entropy"] == 0.0  # two points span one direction: a single variance
    assert row["variance_entropy_norm"] == 0.0
    assert row["orthogonality"] == pytest.approx(1.0)  # disjoint supports
    assert row["norm_l1"] == pytest.approx(3.0)
    assert row["norm_l2"] == pytest.approx(math.sqrt(5))
    assert row["norm_l1_std"] == pytest.approx(3 / 8)
    assert row["norm_l2_std"] == pytest.approx(math.sqrt(5) / math.sqrt(8))


def test_all_zero_layer():
    layer = make_layer("zero", "Conv", np.zeros((8, 4, 3, 3), np.float32))
    row = layer_metrics([layer]).iloc[0]
    assert row["sparsity"] == 1.0
    assert row["n_sparse"] == 32 and row["n_clean"] == 0
    assert row["variance_entropy"] == 0.0 and row["variance_entropy_norm"] == 0.0
    assert row["variance_entropy_clean"] == 0.0 and row["variance_entropy_clean_norm"] == 0.0
    # every diagonal term |0 - 1| counts, as in torchconvquality: 1 - O / (O (O - 1))
    assert row["orthogonality"] == pytest.approx(1 - 1 / 7)
    assert math.isnan(row["neighbour_corr"])
    assert row["norm_l1"] == 0.0 and row["norm_l2"] == 0.0


def test_one_filter():
    layer = make_layer("one", "Conv", np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))
    row = layer_metrics([layer]).iloc[0]
    assert row["n_filters"] == 1
    assert row["variance_entropy"] == 0.0 and row["variance_entropy_norm"] == 0.0
    assert math.isnan(row["orthogonality"])  # undefined for O = 1
    assert row["sparsity"] == 0.0
    assert math.isnan(orthogonality(np.ones((1, 3, 3, 3))))


def test_fewer_filters_than_kernel_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 9)).astype(np.float32)  # rank <= 4: zero variances must count as 0·log 0
    assert variance_entropy(x) == pytest.approx(svd_entropy(x), abs=1e-9)
    row = layer_metrics([make_layer("few", "Conv", x.reshape(5, 1, 3, 3))]).iloc[0]
    assert np.isfinite(row["variance_entropy"]) and np.isfinite(row["variance_entropy_norm"])


def test_rank_one_layer_has_zero_entropy():
    rng = np.random.default_rng(2)
    pattern = rng.standard_normal(9)
    x = np.outer(rng.standard_normal(200), pattern).astype(np.float32)
    assert variance_entropy(x) == 0.0
    identical = np.tile(pattern, (50, 1)).astype(np.float32)  # identical filters: no variance at all
    assert variance_entropy(identical) == 0.0


def test_sparsity_boundary_is_strict_and_float32():
    t = np.float32(0.01)  # eps * max with max = 1
    below = np.nextafter(t, np.float32(0))
    x = np.array([[1.0] * 9, [t] * 9, [below] * 9, [below] * 8 + [t]], dtype=np.float32)
    np.testing.assert_array_equal(sparse_mask(x), [False, False, True, False])
    assert sparsity(x) == 0.25
    assert sparsity(x, eps=0.5) == 0.75


def test_sparsity_validation():
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\], got 0"):
        sparsity(np.ones((2, 9)), eps=0)
    with pytest.raises(ValueError, match=r"sparsity_eps must be in \(0, 1\], got 1.5"):
        layer_metrics([], sparsity_eps=1.5)
    with pytest.raises(ValueError, match=r"filters must be a 2-D"):
        variance_entropy(np.ones((2, 3, 3)))
    with pytest.raises(TypeError, match=r"layers\[0\] must be a filterdb.ConvLayer"):
        layer_metrics([np.ones((2, 2, 3, 3))])  # type: ignore[list-item]


def test_randomness_threshold_anchor_values():
    assert randomness_threshold(9) == pytest.approx(0.55, abs=0.005)
    assert randomness_threshold(64) == pytest.approx(0.91, abs=0.005)
    assert randomness_threshold(4096) == pytest.approx(0.951, abs=0.001)
    assert randomness_threshold(576, (3, 3)) == pytest.approx(0.949, abs=0.001)
    assert math.isnan(randomness_threshold(100, (1, 1)))
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        randomness_threshold(0)


@pytest.mark.parametrize("kernel", [(5, 5), (7, 7), (1, 3), (2, 2)])
def test_other_kernel_thresholds_separate_random_from_smooth(kernel):
    """Random Gaussian layers read > 1 nearly always; smooth (trained-like) layers read well below."""
    rng = np.random.default_rng(3)
    d = math.prod(kernel)
    n = 256
    t = randomness_threshold(n, kernel)
    assert 0 < t <= math.log10(d)
    random_norms = [variance_entropy(rng.standard_normal((n, d))) / t for _ in range(40)]
    assert np.mean(np.array(random_norms) > 1) >= 0.9
    # smooth filters: random combinations of 3 low-frequency patterns plus a little noise
    basis = rng.standard_normal((3, d))
    smooth = rng.standard_normal((n, 3)) @ basis + 0.05 * rng.standard_normal((n, d))
    assert variance_entropy(smooth) / t < 0.9


def test_non_finite_weights_are_counted_and_zeroed():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    bad = w.copy()
    bad[0, 0, 0, 0] = np.nan
    bad[3, 2, 1, 1] = np.inf
    bad[5, 5, 2, 2] = -np.inf
    clean = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    rows = layer_metrics([make_layer("bad", "Conv", bad), make_layer("clean", "Conv", clean)])
    assert rows.loc[0, "n_nonfinite"] == 3 and rows.loc[1, "n_nonfinite"] == 0
    metrics = ["sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean", "orthogonality",
               "norm_l1", "norm_l2", "neighbour_corr"]
    for column in metrics:
        assert rows.loc[0, column] == pytest.approx(rows.loc[1, column], abs=1e-12), column
        assert np.isfinite(rows.loc[0, column]), column


def test_layers_without_2d_filters_get_nan_metrics():
    rng = np.random.default_rng(5)
    conv1d = make_layer("c1", "Conv", rng.standard_normal((8, 4, 5)))
    conv3d = make_layer("c3", "Conv", rng.standard_normal((8, 4, 3, 3, 3)))
    rows = layer_metrics([conv1d, conv3d])
    for column in ["sparsity", "variance_entropy", "variance_entropy_norm", "orthogonality", "norm_l1",
                   "neighbour_corr"]:
        assert rows[column].isna().all(), column
    assert list(rows["kernel"]) == [(5,), (3, 3, 3)]
    assert (rows["n_nonfinite"] == 0).all()


def test_one_by_one_kernels():
    rng = np.random.default_rng(6)
    row = layer_metrics([make_layer("pw", "Conv", rng.standard_normal((32, 16, 1, 1)))]).iloc[0]
    assert row["variance_entropy"] == 0.0  # one value per filter: one variance, p = 1
    assert math.isnan(row["variance_entropy_norm"])  # no spectrum, no threshold
    assert math.isnan(row["neighbour_corr"])
    assert np.isfinite(row["orthogonality"]) and np.isfinite(row["sparsity"])


def test_columns_and_order():
    rng = np.random.default_rng(7)
    layers = [make_layer(f"l{i}", "Conv", rng.standard_normal(shape)) for i, shape in
              enumerate([(8, 3, 3, 3), (16, 8, 1, 1), (16, 1, 3, 3), (4, 4, 5, 5), (16, 8, 3, 3)])]
    frame = layer_metrics(layers)
    assert list(frame.columns)[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["name"]) == [f"l{i}" for i in range(5)]
    assert frame.loc[0, "shape"] == (8, 3, 3, 3) and frame.loc[0, "kernel"] == (3, 3)
    assert layer_metrics([]).columns.tolist() == list(COLUMNS)


def test_batched_equals_single_array_functions():
    rng = np.random.default_rng(8)
    shapes = [(8, 3, 3, 3), (32, 8, 3, 3), (16, 1, 3, 3), (4, 4, 5, 5), (16, 8, 3, 3), (12, 6, 1, 3)]
    layers = [make_layer(f"l{i}", "Conv", rng.standard_normal(s) * rng.uniform(0.01, 3)) for i, s in
              enumerate(shapes)]
    frame = layer_metrics(layers)
    for layer, (_, row) in zip(layers, frame.iterrows()):
        f = layer.filters()
        assert row["sparsity"] == sparsity(f)
        assert row["variance_entropy"] == pytest.approx(variance_entropy(f), abs=1e-12)
        assert row["variance_entropy"] == pytest.approx(svd_entropy(f), abs=1e-9)
        assert row["orthogonality"] == pytest.approx(orthogonality(layer.weight), abs=1e-12)
        assert row["orthogonality"] == pytest.approx(reference_orthogonality(layer.weight), abs=1e-6)
        assert row["neighbour_corr"] == pytest.approx(neighbour_tap_correlation(f, kernel=layer.kernel), abs=1e-12)
        assert row["norm_l2"] == pytest.approx(weight_norms(layer.weight)["norm_l2"])


def test_neighbour_correlation():
    rng = np.random.default_rng(9)
    random = rng.standard_normal((4096, 9))
    assert abs(neighbour_tap_correlation(random, kernel=(3, 3))) < 0.02
    # smooth filters: a blurred random field has strongly correlated neighbours
    coarse = rng.standard_normal((4096, 2, 2))
    smooth = np.stack([coarse[:, [0, 0, 1]][:, :, [0, 0, 1]][:, i] for i in range(3)], axis=1).reshape(4096, 9)
    smooth = smooth + 0.1 * rng.standard_normal(smooth.shape)
    assert neighbour_tap_correlation(smooth, kernel=(3, 3)) > 0.4
    assert math.isnan(neighbour_tap_correlation(random[:, :1], kernel=(1, 1)))
    with pytest.raises(ValueError, match=r"kernel must be \(kh, kw\) with kh\*kw == 9"):
        neighbour_tap_correlation(random, kernel=(2, 2))


def test_orthogonality_known_values():
    assert orthogonality(np.eye(4).reshape(4, 1, 2, 2)) == pytest.approx(1.0)
    assert orthogonality(np.ones((6, 2, 3, 3))) == pytest.approx(0.0, abs=1e-12)
    # scale of the rows does not matter
    rng = np.random.default_rng(10)
    w = rng.standard_normal((10, 3, 3, 3))
    assert orthogonality(w) == pytest.approx(orthogonality(w * rng.uniform(0.1, 5, (10, 1, 1, 1))))


# --------------------------------------------------------------------------------------- real weights
def _facenet_layers(path) -> list:
    torch = pytest.importorskip("torch")
    state = torch.load(path, weights_only=True)
    return [make_layer(name, "Conv2d", tensor.numpy()) for name, tensor in state.items() if tensor.ndim == 4]


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.parametrize("key", ["pnet.pt", "rnet.pt", "onet.pt"])
def test_real_layers_match_a_plain_svd_loop(corpus_path, key):
    layers = _facenet_layers(corpus_path(key))
    frame = layer_metrics(layers)
    for layer, (_, row) in zip(layers, frame.iterrows()):
        f = layer.filters()
        s, mask = reference_sparsity(f)
        h = svd_entropy(f)
        assert row["sparsity"] == s
        assert row["variance_entropy"] == pytest.approx(h, abs=1e-6)
        assert row["variance_entropy_clean"] == pytest.approx(svd_entropy(f[~mask]), abs=1e-6)
        if layer.kernel == (3, 3):
            assert row["variance_entropy_norm"] == pytest.approx(h / randomness_threshold(len(f)), abs=1e-6)
        assert row["orthogonality"] == pytest.approx(reference_orthogonality(layer.weight), abs=1e-6)


def _tcq_layers(weights: dict[str, np.ndarray]):
    """An nn.Module holding one Conv2d per weight, and torchconvquality's results on it."""
    torch = pytest.importorskip("torch")
    tcq = pytest.importorskip("torchconvquality", reason="torchconvquality 0.3.0 is not installed")
    model = torch.nn.Module()
    for name, w in weights.items():
        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
        model.add_module(name, conv)
    return tcq.measure_quality(model)


@pytest.mark.corpus
@pytest.mark.torch
def test_torchconvquality_agrees_on_real_layers(corpus_path):
    weights = {}
    for key in ["pnet.pt", "rnet.pt", "onet.pt"]:
        for layer in _facenet_layers(corpus_path(key)):
            if layer.kernel == (3, 3):
                weights[f"{key[:4]}_{layer.name.split('.')[0]}"] = layer.weight
    theirs = _tcq_layers(weights)
    ours = layer_metrics([make_layer(name, "Conv", w) for name, w in weights.items()]).set_index("name")
    assert set(theirs) == set(weights)
    for name, metrics in theirs.items():
        for key in ["sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
                    "variance_entropy_clean_norm", "orthogonality"]:
            assert ours.loc[name, key] == pytest.approx(metrics[key], abs=1e-5), (name, key)
        assert ours.loc[name, "n_filters"] == metrics["n"]


@pytest.mark.torch
def test_torchconvquality_agrees_where_defined_and_we_define_the_rest():
    rng = np.random.default_rng(11)
    sparse = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    sparse[:10] *= 1e-4  # 160 sparse filters
    weights = {
        "random": rng.standard_normal((64, 32, 3, 3)).astype(np.float32),
        "sparse": sparse,
        "depthwise": rng.standard_normal((24, 1, 3, 3)).astype(np.float32),
        "few": rng.standard_normal((5, 1, 3, 3)).astype(np.float32),  # n < 9: rank-deficient, tcq still defined
        "one": rng.standard_normal((1, 1, 3, 3)).astype(np.float32),  # n = 1: tcq NaN entropy, NaN or -inf orthogonality
        "dead_row": rng.standard_normal((16, 4, 3, 3)).astype(np.float32),  # a tap row always 0: tcq NaN (0·log 0)
    }
    weights["dead_row"][:, :, 2, :] = 0
    theirs = _tcq_layers(weights)
    ours = layer_metrics([make_layer(name, "Conv", w) for name, w in weights.items()]).set_index("name")
    for name in ["random", "sparse", "depthwise", "few"]:
        for key in ["sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
                    "variance_entropy_clean_norm", "orthogonality"]:
            assert ours.loc[name, key] == pytest.approx(theirs[name][key], abs=1e-5), (name, key)
    assert math.isnan(theirs["one"]["variance_entropy"]) and ours.loc["one", "variance_entropy"] == 0.0
    assert not math.isfinite(theirs["one"]["orthogonality"]) and math.isnan(ours.loc["one", "orthogonality"])
    assert math.isnan(theirs["dead_row"]["variance_entropy"])
    assert ours.loc["dead_row", "variance_entropy"] == pytest.approx(svd_entropy(weights["dead_row"].reshape(64, 9)),
                                                                     abs=1e-9)
    assert ours.loc["dead_row", "orthogonality"] == pytest.approx(theirs["dead_row"]["orthogonality"], abs=1e-5)
