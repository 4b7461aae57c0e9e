"""safetensors reader: real weights written to safetensors, the Conv1d-only silero file, bfloat16, bad input."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from filterdb.errors import ModelFormatError
from filterdb.readers import read_path, reader_for_path


def _onet_arrays(corpus_path) -> dict[str, np.ndarray]:
    """onet.pt's real tensors as numpy, read by the pytorch reader's torch-free loader (no torch needed)."""
    from filterdb.readers import _torchfree

    return {name: t.array for name, t in _torchfree.load(corpus_path("onet.pt")).items()}


@pytest.mark.corpus
def test_onet_written_as_safetensors_reads_back_identically(corpus_path, corpus_entry, tmp_path):
    path = tmp_path / "onet.safetensors"
    save_file(_onet_arrays(corpus_path), str(path))
    record = read_path(path)
    reference = read_path(corpus_path("onet.pt"))
    assert record.info.format == "safetensors"
    assert [(layer.name, layer.weight.shape) for layer in record.layers] == [
        (layer.name, layer.weight.shape) for layer in reference.layers
    ]
    for a, b in zip(record.layers, reference.layers):
        assert np.array_equal(a.weight, b.weight)
        assert (a.conv_depth, a.depth_source) == (b.conv_depth, "order")
    entry = corpus_entry("onet.pt")
    assert len(record.layers_2d) == entry.n_conv
    assert sum(layer.n_filters for layer in record.layers if layer.kernel == (3, 3)) == entry.n_3x3
    assert record.info.n_parameters == reference.info.n_parameters


@pytest.mark.corpus
def test_silero_has_conv1d_layers_and_no_2d_filters(corpus_path, corpus_entry):
    record = read_path(corpus_path("silero_vad_16k.safetensors"))
    assert len(record.layers_2d) == corpus_entry("silero_vad_16k.safetensors").n_conv == 0
    # Conv1d layers are reported (as 1-D layers, without a conv_depth), the LSTM weights are not.
    assert {layer.op_type for layer in record.layers} == {"Conv1d"}
    assert {layer.name for layer in record.layers} == {"conv1", "conv2", "conv3", "conv4", "final_conv", "stft_conv"}
    assert all(layer.conv_depth is None for layer in record.layers)


def test_natural_name_order_sets_depth(tmp_path):
    arrays = {f"blocks.{i}.conv.weight": np.full((2, 2, 3, 3), i, np.float32) for i in range(12)}
    path = tmp_path / "many.safetensors"
    save_file(arrays, str(path))
    layers = read_path(path).layers
    assert [layer.name for layer in layers] == [f"blocks.{i}.conv" for i in range(12)]
    assert [float(layer.weight[0, 0, 0, 0]) for layer in layers] == list(range(12))


def test_bfloat16_is_widened_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1)).bfloat16()
    path = tmp_path / "bf16.safetensors"
    save_torch({"conv.weight": weight, "conv.bias": torch.zeros(4).bfloat16()}, str(path))
    (layer,) = read_path(path).layers
    assert layer.storage_dtype == "bfloat16"
    assert np.array_equal(layer.weight, weight.float().numpy())


def test_keras_naming_is_hwio(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 5)).astype(np.float32)
    depthwise = rng.standard_normal((3, 3, 5, 2)).astype(np.float32)
    path = tmp_path / "keras.safetensors"
    save_file({"block1/conv/kernel:0": kernel, "block2/dw/depthwise_kernel:0": depthwise}, str(path))
    conv, dw = read_path(path).layers
    assert conv.name == "block1/conv" and np.array_equal(conv.weight, kernel.transpose(3, 2, 0, 1))
    assert (dw.kind, dw.groups, dw.weight.shape) == ("depthwise", 5, (10, 1, 3, 3))
    assert np.array_equal(dw.weight[2 * 1 + 1, 0], depthwise[:, :, 1, 1])  # channel 1, multiplier 1


def test_detected_by_content_without_extension(tmp_path):
    path = tmp_path / "weights.data"
    save_file({"conv.weight": np.zeros((2, 2, 3, 3), np.float32)}, str(path))
    assert reader_for_path(path).format == "safetensors"


# --------------------------------------------------------------------------------------------------------
# bad input


def _valid_bytes(tmp_path) -> bytes:
    path = tmp_path / "valid.safetensors"
    save_file({"conv.weight": np.ones((8, 3, 3, 3), np.float32)}, str(path))
    return path.read_bytes()


def test_truncated_file(tmp_path):
    data = _valid_bytes(tmp_path)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFormatError, match=r"cut\.safetensors: .*past the end of the file"):
        read_path(path)


def test_truncated_inside_header(tmp_path):
    path = tmp_path / "cut_header.safetensors"
    path.write_bytes(_valid_bytes(tmp_path)[:20])
    with pytest.raises(ModelFormatError, match=r"cut_header\.safetensors: .*header length"):
        read_path(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match=r"random\.safetensors: not a readable safetensors file"):
        read_path(path)


def test_bad_json_header(tmp_path):
    header = b'{"conv.weight": {"dtype": "F32", '
    path = tmp_path / "badjson.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    with pytest.raises(ModelFormatError, match=r"badjson\.safetensors: .*bad JSON header"):
        read_path(path)


def test_shape_inconsistent_with_offsets(tmp_path):
    header = json.dumps({"conv.weight": {"dtype": "F32", "shape": [8, 3, 3, 3], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "inconsistent.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(ModelFormatError, match=r"inconsistent\.safetensors"):
        read_path(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty\.safetensors: the file is empty"):
        read_path(path)
