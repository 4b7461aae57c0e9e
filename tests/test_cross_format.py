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


METRICS = ["sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean", "orthogonality",
           "norm_l1", "norm_l2", "neighbour_corr"]


def metric_rows(record):
    frame = filterdb.check_model(record).layers.set_index("name")
    return frame[METRICS]


def test_same_weights_in_two_formats_give_the_same_metrics(corpus_path):
    onnx = metric_rows(filterdb.read_model(corpus_path("nmp.onnx")))
    tflite = metric_rows(filterdb.read_model(corpus_path("nmp.tflite")))
    assert onnx.sort_index().equals(tflite.sort_index())  # identical weights: identical numbers


def test_facenet_pt_and_mtcnn_pickle_give_the_same_metrics(corpus_path):
    pt = filterdb.check_model(filterdb.read_model(corpus_path("onet.pt"))).layers
    lz4 = filterdb.check_model(filterdb.read_model(corpus_path("onet.lz4"), trust_pickle=True)).layers
    assert list(pt["shape"]) == list(lz4["shape"])
    np.testing.assert_allclose(pt[METRICS].to_numpy(float), lz4[METRICS].to_numpy(float), rtol=1e-6, atol=1e-9)
