"""The same weights in two file formats read the same, and give the same metrics."""

from __future__ import annotations

import numpy as np
import pytest

import filterdb

pytestmark = pytest.mark.corpus


def by_name(record):
    return {layer.name: layer for layer in record.layers}


def test_basic_pitch_onnx_and_tflite_hold_identical_weights_and_depths(corpus_path):
    onnx_layers = by_name(filterdb.read_model(corpus_path("nmp.onnx")))
    tflite_layers = by_name(filterdb.read_model(corpus_path("nmp.tflite")))
    assert set(onnx_layers) == set(tflite_layers) and len(onnx_layers) == 32
    for name, layer in onnx_layers.items():
        other = tflite_layers[name]
        assert np.array_equal(layer.weight, other.weight), name
        assert (layer.conv_depth, layer.kind, layer.groups) == (other.conv_depth, other.kind, other.groups), name
