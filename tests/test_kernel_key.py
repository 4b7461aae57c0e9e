"""filterdb._kernel: kernel-shape keys built from shapes and parsed back, malformed keys refused."""

from __future__ import annotations

import numpy as np
import pytest

from filterdb._kernel import KernelKey, kernel_key, parse_kernel_key
from filterdb.errors import UsageError


@pytest.mark.parametrize(("kernel", "key", "width"), [
    ((3, 3), "3x3", 9), ((1, 7), "1x7", 7), ((5,), "5", 5), ((3, 3, 3), "3x3x3", 27), ((11, 11), "11x11", 121),
])
def test_hand_written_keys(kernel, key, width):
    assert kernel_key(kernel) == key
    parsed = parse_kernel_key(key)
    assert parsed.sizes == kernel and parsed.width == width and parsed.ndim == len(kernel)


def test_round_trip_on_random_shapes_and_numpy_sizes():
    rng = np.random.default_rng(13)
    for _ in range(200):
        sizes = tuple(rng.integers(1, 10**6, size=int(rng.integers(1, 5))))  # numpy integers, as in weight.shape
        key = kernel_key(sizes)
        assert parse_kernel_key(key).sizes == tuple(int(s) for s in sizes)
        assert kernel_key(parse_kernel_key(key).sizes) == key
    big = (10**18 - 1, 1)
    assert parse_kernel_key(kernel_key(big)).sizes == big


@pytest.mark.parametrize("text", ["", "x", "3x", "x3", "3xx3", "3*3", "3 x 3", "0x3", "03x3", "-3x3", "3.0x3",
                                  "3x3 ", "3X3", "３x３", "1" * 19, "3x3\n", None, 9, (3, 3)])
def test_malformed_keys_are_usage_errors(text):
    with pytest.raises(UsageError, match=r"--shape must look like '3x3'"):
        parse_kernel_key(text, what="--shape")


def test_the_error_suggests_the_lower_case_key_and_stays_short():
    with pytest.raises(UsageError, match=r"did you mean '3x3'"):
        parse_kernel_key("3X3")
    with pytest.raises(UsageError) as info:
        parse_kernel_key("3x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("sizes", [(), (0, 3), (3, -1), (2.5, 3), (True, 3), ("3", 3), (10**18, 1), (None,)])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(UsageError, match="positive integer sizes"):
        kernel_key(sizes)


def test_keys_compare_and_hash_by_sizes():
    assert KernelKey.parse("3x3") == KernelKey.of((3, 3)) and len({KernelKey.of((3, 3)), KernelKey((3, 3))}) == 1
    assert sorted([KernelKey((5, 5)), KernelKey((1, 7)), KernelKey((3, 3))]) == [
        KernelKey((1, 7)), KernelKey((3, 3)), KernelKey((5, 5))]
