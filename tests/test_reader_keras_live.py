"""Live Keras models read the same as the .keras file Keras itself writes for them."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # no TensorFlow needed: Keras 3 runs on torch
keras = pytest.importorskip("keras", reason="live Keras models need the 'keras' package (extra 'keras')")

import filterdb  # noqa: E402


def branching_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inp)
    a = keras.layers.Conv2D(8, 3, padding="same", name="branch_a")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=1, name="branch_b")(x)
    y = keras.layers.Add()([a, b])
    y = keras.layers.SeparableConv2D(4, 3, name="sep")(y)
    y = keras.layers.Conv2DTranspose(2, 3, name="up")(y)
    return keras.Model(inp, y)


def assert_same_layers(live, saved):
    assert [layer.name for layer in live.layers] == [layer.name for layer in saved.layers]
    for a, b in zip(live.layers, saved.layers):
        assert np.array_equal(a.weight, b.weight), a.name
        assert (a.kind, a.groups, a.conv_depth, a.conv_depth_norm) == (b.kind, b.groups, b.conv_depth, b.conv_depth_norm)


def test_functional_model_equals_its_saved_keras_file(tmp_path):
    model = branching_model()
    path = tmp_path / "model.keras"
    model.save(path)  # Keras' own writer: an independent second format of the same weights
    live, saved = filterdb.read_model(model), filterdb.read_model(path)
    assert_same_layers(live, saved)
    by_name = {layer.name: layer for layer in live.layers}
    # parallel branches share a level; the separable conv is two convolutions in a row
    assert by_name["branch_a"].conv_depth == by_name["branch_b"].conv_depth == 1
    assert by_name["branch_b"].kind == "depthwise" and by_name["branch_b"].weight.shape == (8, 1, 3, 3)
    assert by_name["sep/depthwise"].conv_depth == 2 and by_name["sep/pointwise"].conv_depth == 3
    assert by_name["up"].kind == "transpose" and by_name["up"].weight.shape == (4, 2, 3, 3)
    # HWIO -> OIHW is transpose(3, 2, 0, 1)
    kernel = np.asarray(model.get_layer("stem").kernel.numpy())
    assert np.array_equal(by_name["stem"].weight, kernel.transpose(3, 2, 0, 1))
    assert live.info.format == "keras" and live.info.n_parameters == model.count_params()


def test_sequential_model_equals_its_saved_keras_file(tmp_path):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.Conv2D(6, 3, name="c2")])
    path = tmp_path / "seq.keras"
    model.save(path)
    assert_same_layers(filterdb.read_model(model), filterdb.read_model(path))
    assert [layer.conv_depth for layer in filterdb.read_model(model).layers] == [0, 1]


def test_check_runs_on_a_live_keras_model():
    report = filterdb.check_model(filterdb.read_model(branching_model()))
    assert list(report.layers["name"])[:2] == ["stem", "branch_a"]
    assert report.summary["n_conv_layers"] == 6
