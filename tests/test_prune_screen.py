"""The float32 duplicate screen of the energy strategies (prune/_scores._screen) gives the exact scores.

The reference is ``channel_scores``: float64 Gram matrix, float64 cosines, LAPACK's pivoted Cholesky for the
order in which duplicates are named. ``layer_scores`` reads only ``zero``, ``duplicate_of`` and the duplicates'
``max_cosine`` from it, so where those three agree the plans agree, byte for byte. Checked on layers built to
sit at the duplicate threshold, on torchvision's ResNet-18 with random weights, and on the trained nets of
bench/bench_prune.py where this machine has them (~/.cache/filterdb/bench-prune, written by the bench).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from filterdb import read_model
from filterdb.prune import channel_scores
from filterdb.prune._scores import _screen, layer_scores

BENCH = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "filterdb" / "bench-prune"


def _same_as_exact(weight: np.ndarray, duplicate_cos: float = 0.95) -> None:
    exact = channel_scores(weight, duplicate_cos=duplicate_cos)
    screened = _screen(weight, 0.01, duplicate_cos)
    np.testing.assert_array_equal(screened.zero, exact.zero)
    np.testing.assert_array_equal(screened.duplicate_of, exact.duplicate_of)
    duplicate = exact.duplicate_of >= 0
    np.testing.assert_array_equal(screened.max_cosine[duplicate], exact.max_cosine[duplicate])
    # elsewhere an upper bound of the largest cosine, below the threshold (a layer without duplicates)
    assert np.all(screened.max_cosine >= exact.max_cosine - 1e-6)
    if not duplicate.any():
        assert np.all(screened.max_cosine < duplicate_cos)


def _pair(cosine: float, d: int, seed: int) -> np.ndarray:
    """One channel pair whose cosine is set by hand, ``y = c·x + sqrt(1 - c²)·z`` with unit x ⟂ z and random
    scales, among random channels, a near-zero one and a negated copy of x (cosine -1: not redundant)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d)
    x /= np.linalg.norm(x)
    z = rng.standard_normal(d)
    z -= (z @ x) * x
    z /= np.linalg.norm(z)
    rows = [x * rng.uniform(0.5, 2.0), (cosine * x + np.sqrt(1 - cosine ** 2) * z) * rng.uniform(0.5, 2.0)]
    rows += list(rng.standard_normal((6, d)) / np.sqrt(d))
    rows.append(np.full(d, 1e-4))  # near-zero: never a duplicate, whatever its direction
    rows.append(-rows[0])
    return np.array(rows)


# below the threshold by far, by a little, within float32's reach of it (the screen defers), above
@pytest.mark.parametrize("delta", [-3e-2, -1e-3, -1e-5, 0.0, 1e-5, 1e-3, 3e-2])
@pytest.mark.parametrize("d", [27, 256, 576, 2048])  # the full product (d/4 < 64) and the split bound
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_screen_names_the_exact_duplicates_at_the_threshold(delta: float, d: int, dtype: type) -> None:
    weight = _pair(0.95 + delta, d, seed=d).astype(dtype).reshape(-1, d, 1, 1)
    exact = channel_scores(weight)
    if abs(delta) >= 1e-3:  # the pair is, or is not, a duplicate for the exact path: the layer tests something
        assert exact.n_duplicate == (1 if delta > 0 else 0)
    _same_as_exact(weight)


@pytest.mark.parametrize("scale", [1e-41, 1e30])  # subnormal float32 weights (1/norm overflows), huge ones
@pytest.mark.parametrize("delta", [-1e-3, 1e-3])
def test_the_screen_is_exact_for_tiny_and_huge_weights(scale: float, delta: float) -> None:
    weight = (_pair(0.95 + delta, 256, seed=7) * scale).astype(np.float32).reshape(-1, 256, 1, 1)
    assert np.all(np.isfinite(weight)) and np.any(weight != 0)
    _same_as_exact(weight)


def test_non_finite_weights_are_scored_as_before() -> None:
    weight = _pair(0.99, 256, seed=8).astype(np.float32).reshape(-1, 256, 1, 1)
    weight[3, 5] = np.nan
    exact, screened = channel_scores(weight), _screen(weight, 0.01, 0.95)
    np.testing.assert_array_equal(screened.zero, exact.zero)
    np.testing.assert_array_equal(screened.duplicate_of, exact.duplicate_of)


@pytest.mark.parametrize("d", [64, 1152])
def test_the_screen_of_random_layers_is_final_and_bounds_the_cosines(d: int) -> None:
    rng = np.random.default_rng(d)
    weight = rng.standard_normal((128, d // 9 or 1, 3, 3)).astype(np.float32)
    _same_as_exact(weight)
    assert _screen(weight, 0.01, 0.95).max_cosine.max() > 0.0  # a real bound, not zeros


def test_layer_scores_rank_duplicates_as_with_the_exact_path() -> None:
    """The compensated importance of a duplicate is its energy times the sine of its exact max cosine."""
    weight = np.concatenate([_pair(0.96, 256, seed=1), _pair(0.99, 256, seed=2)]).astype(np.float32)
    weight = weight.reshape(-1, 256, 1, 1)
    (scores,) = layer_scores([weight], [None], "compensated")
    exact = channel_scores(weight)
    assert exact.n_duplicate == 2
    flat = weight.reshape(len(weight), -1).astype(np.float64)
    energy = np.sqrt((flat ** 2).sum(axis=1) / (flat ** 2).sum(axis=1).mean())
    sine = np.sqrt(np.clip(1 - exact.max_cosine ** 2, 0, 1))
    expected = np.where(exact.duplicate_of >= 0, energy * sine, energy)
    expected[exact.zero] = 0.0
    np.testing.assert_allclose(scores.importance, expected / expected.max(), rtol=1e-12)
    np.testing.assert_array_equal(scores.duplicate_of, exact.duplicate_of)


def _check_model_layers(record) -> None:  # type: ignore[no-untyped-def]
    from threadpoolctl import threadpool_limits

    weights = [layer.weight for layer in record.layers if layer.weight.ndim >= 3]
    assert weights
    with threadpool_limits(1, user_api="blas"):  # as prune_plan scores (a busy machine's spinning BLAS threads)
        for weight in weights:
            _same_as_exact(weight)


def test_the_screen_is_exact_on_resnet18_with_random_weights() -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    _check_model_layers(read_model(torchvision.models.resnet18(weights=None).eval()))


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.pt")) + sorted(BENCH.glob("*.safetensors")),
                         ids=lambda p: p.name)
def test_the_screen_is_exact_on_the_bench_nets(path: Path) -> None:
    _check_model_layers(read_model(path))
