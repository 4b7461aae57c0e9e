"""The metrics' own memory (issue 17, item 5): long kernels and wide layers never allocate d² or O² at once.

A layer with fewer filters than taps (n < d, e.g. two 1 × 15000 filters) gets its entropy from the n × n Gram
of the centred filters (the same nonzero eigenvalues as the d × d covariance) and its neighbour correlation
from the filters directly; orthogonality over many output channels sums the O × O Gram block by block.
Results are compared with direct numpy computations; peak memory is measured with tracemalloc (numpy
reports its buffers to it).
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from filterdb import metrics  # noqa: E402
from filterdb.check import check_model  # noqa: E402
from filterdb.metrics import layer_metrics, neighbour_tap_correlation, variance_entropy  # noqa: E402
from filterdb.readers import make_layer, read_path  # noqa: E402


def _onnx_with_long_kernels(path: Path, weight: np.ndarray) -> Path:
    """One Conv whose weight is ``weight`` (O, I, kh, kw), as a hostile file would declare it."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="long")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(weight.astype(np.float32), "w")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _peak_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------------- direct references
def _entropy_reference(x: np.ndarray) -> float:
    """log10 entropy of the spectrum of the covariance, from an SVD of the centred filters."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    s2 = np.linalg.svd(xc, compute_uv=False) ** 2
    s2 = s2[s2 > s2.max() * 1e-12]
    p = s2 / s2.sum()
    return float(-(p * np.log10(p)).sum())


def _neighbour_reference(x: np.ndarray, kh: int, kw: int) -> float:
    f = x.astype(np.float64).reshape(-1, kh, kw)
    a = np.concatenate([f[:, :, :-1].ravel(), f[:, :-1, :].ravel()])
    b = np.concatenate([f[:, :, 1:].ravel(), f[:, 1:, :].ravel()])
    return float(np.corrcoef(a, b)[0, 1])


def _orthogonality_reference(weight: np.ndarray) -> float:
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    w = np.divide(w, norms, out=np.zeros_like(w), where=norms > 0)
    o = w.shape[0]
    return float(1.0 - np.abs(w @ w.T - np.eye(o)).sum() / (o * (o - 1)))


# ------------------------------------------------------------------------------------------------ tests
def test_long_kernels_equal_the_direct_computation() -> None:
    rng = np.random.default_rng(0)
    # 40 filters of 3 x 100 taps (n < d: the n x n route), smooth along the rows, one filter sparse
    w = np.cumsum(rng.standard_normal((8, 5, 3, 100)), axis=-1).astype(np.float32)
    w[0, 0] *= 1e-4
    row = layer_metrics([make_layer("long", "Conv", w)]).iloc[0]
    x = w.reshape(40, 300)
    clean = np.abs(x).max(axis=1) >= 0.01 * np.abs(x).max()
    assert row["n_sparse"] == 1
    assert row["variance_entropy"] == pytest.approx(_entropy_reference(x), abs=1e-9)
    assert row["variance_entropy_clean"] == pytest.approx(_entropy_reference(x[clean]), abs=1e-9)
    assert row["neighbour_corr"] == pytest.approx(_neighbour_reference(x, 3, 100), abs=1e-9)
    assert row["orthogonality"] == pytest.approx(_orthogonality_reference(w), abs=1e-6)
    assert row["norm_l2"] == pytest.approx(float(np.linalg.norm(x.astype(np.float64))), rel=1e-12)
    # the single-array functions take the same route
    assert variance_entropy(x) == pytest.approx(_entropy_reference(x), abs=1e-9)
    assert neighbour_tap_correlation(x, kernel=(3, 100)) == pytest.approx(_neighbour_reference(x, 3, 100), abs=1e-9)


def test_the_two_routes_agree_at_the_switch() -> None:
    # n = d - 1 (n x n Gram) and n = d (d x d scatter) of the same filters give the same entropy
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 49)) @ rng.standard_normal((49, 49))
    assert variance_entropy(x[:48]) == pytest.approx(_entropy_reference(x[:48]), abs=1e-10)
    assert variance_entropy(x[:49]) == pytest.approx(_entropy_reference(x[:49]), abs=1e-10)


@pytest.mark.parametrize("taps", [15_000, 100_000])
def test_two_1xN_filters_from_an_onnx_file_stay_small(tmp_path: Path, taps: int) -> None:
    # the hostile files of the issue: 15000 taps peaked at 5.3 GB, 100000 asked for 74.5 GiB
    rng = np.random.default_rng(2)
    path = _onnx_with_long_kernels(tmp_path / f"long{taps}.onnx", rng.standard_normal((2, 1, 1, taps)))
    record = read_path(path)
    report, peak = _peak_bytes(lambda: check_model(record))
    weight_bytes = 2 * taps * 4
    assert peak < 40 * weight_bytes + (8 << 20), f"peak {peak:,} bytes for {weight_bytes:,} bytes of weights"
    got = {k: float(v[0]) for k, v in report.columns.items() if k in ("variance_entropy", "neighbour_corr",
                                                                      "orthogonality")}
    x = record.layers[0].weight.reshape(2, taps)
    assert got["variance_entropy"] == 0.0  # two filters: one direction of variance, rank 1
    assert got["neighbour_corr"] == pytest.approx(_neighbour_reference(x, 1, taps), abs=1e-9)
    assert got["orthogonality"] == pytest.approx(_orthogonality_reference(x), abs=1e-6)


def test_orthogonality_over_many_channels_is_summed_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((600, 2, 1, 1)).astype(np.float32)  # O = 600 channels of 2 weights: O² >> O·k
    w[7] = 0.0  # a zero channel counts |0 - 1| on the diagonal
    whole = metrics.orthogonality(w)
    monkeypatch.setattr(metrics, "_GRAM_BLOCK_ENTRIES", 600 * 50)  # blocks of 50 rows
    blocked, peak = _peak_bytes(lambda: metrics.orthogonality(w))
    assert blocked == pytest.approx(whole, abs=1e-9)
    assert blocked == pytest.approx(_orthogonality_reference(w), abs=1e-6)
    assert peak < 600 * 600 * 8  # never the whole O x O Gram in float64
    assert math.isfinite(blocked)
