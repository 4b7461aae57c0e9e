"""Pickle reader: mtcnn's joblib+lz4 files (refused without trust), plain pickles, layout guessing, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from filterdb import _read
from filterdb.errors import ModelFormatError, UnsafeFormatError
from filterdb.readers import ReadOptions, read_path, reader_for_path
from filterdb.readers._pickle import guess_kernel_layout

read_model = _read.read_model
TRUST = ReadOptions(trust_pickle=True)
NETS = ["pnet", "rnet", "onet"]


@pytest.mark.corpus
@pytest.mark.parametrize("net", NETS)
def test_mtcnn_refused_without_trust(corpus_path, net):
    path = corpus_path(f"{net}.lz4")
    assert reader_for_path(path).format == "pickle"
    with pytest.raises(UnsafeFormatError, match=rf"{net}\.lz4: .*runs arbitrary code.*--trust-pickle.*trust_pickle=True"):
        read_path(path)


@pytest.mark.corpus
@pytest.mark.parametrize("net", NETS)
def test_mtcnn_equals_facenet_bit_for_bit(corpus_path, corpus_entry, net):
    pytest.importorskip("joblib")
    pytest.importorskip("lz4")
    keras = read_model(str(corpus_path(f"{net}.lz4")), trust_pickle=True)
    torch_file = read_path(corpus_path(f"{net}.pt"))
    entry = corpus_entry(f"{net}.lz4")
    assert keras.info.format == "pickle"
    assert len(keras.layers_2d) == entry.n_conv
    assert sum(layer.n_filters for layer in keras.layers_2d if layer.kernel == (3, 3)) == entry.n_3x3
    # Same order, except that mtcnn stores pnet's two 1x1 heads the other way round: match the heads by shape.
    assert [layer.weight.shape for layer in keras.layers][:3] == [layer.weight.shape for layer in torch_file.layers][:3]
    for layer in torch_file.layers:
        (twin,) = [k for k in keras.layers if k.weight.shape == layer.weight.shape]
        assert np.array_equal(twin.weight, layer.weight), layer.name
    assert all(any("HWIO" in note for note in layer.notes) for layer in keras.layers)


def test_plain_pickle_with_names(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    weight = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    obj = {"keras": {"conv1/kernel:0": kernel, "conv1/bias:0": np.zeros(6, np.float32)},
           "torch": {"conv2.weight": weight}, "epoch": 3}
    path = tmp_path / "named.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    first, second = read_path(path, TRUST).layers
    assert first.name == "keras.conv1" and np.array_equal(first.weight, kernel.transpose(3, 2, 0, 1))
    assert second.name == "torch.conv2" and np.array_equal(second.weight, weight)
    assert (first.conv_depth, second.conv_depth) == (0, 1)


@pytest.mark.parametrize("compress", [("zlib", 3), ("gzip", 3), 0])
def test_joblib_containers(tmp_path, compress):
    joblib = pytest.importorskip("joblib")
    kernels = [np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4), np.ones(4, np.float32)]
    path = tmp_path / "model.joblib"
    joblib.dump(kernels, path, compress=compress)
    assert reader_for_path(path).format == "pickle"
    (layer,) = read_path(path, TRUST).layers
    assert np.array_equal(layer.weight, kernels[0].transpose(3, 2, 0, 1))


def test_pickled_torch_module_uses_the_module_reader(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, groups=1), torch.nn.Conv2d(4, 4, 3, groups=4))
    path = tmp_path / "module.pkl"
    path.write_bytes(pickle.dumps(model))
    record = read_path(path, TRUST)
    assert record.info.format == "pickle"
    assert [(layer.kind, layer.groups, layer.depth_source) for layer in record.layers] == [
        ("conv", 1, "graph"), ("depthwise", 4, "graph")]


def test_bare_3d_arrays_are_not_convolutions(tmp_path):
    path = tmp_path / "prelu.pkl"
    path.write_bytes(pickle.dumps([np.ones((1, 1, 8), np.float32), np.ones((3, 3, 2, 8), np.float32)]))
    (layer,) = read_path(path, TRUST).layers
    assert layer.name == "1"


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((3, 3, 3, 10), "channels_last"),  # mtcnn's first layer: both pairs fit, the square one is the kernel
        ((1, 1, 32, 4), "channels_last"),
        ((2, 2, 48, 64), "channels_last"),
        ((7, 7, 3, 64), "channels_last"),
        ((64, 3, 7, 7), "channels_first"),
        ((10, 3, 3, 3), "channels_first"),
        ((8, 4, 1, 1), "channels_first"),
        ((1, 7, 64, 64), "channels_last"),  # non-square kernel
        ((3, 3, 3, 3), "channels_last"),  # a full tie: Keras, by convention
    ],
)
def test_guess_kernel_layout(shape, layout):
    assert guess_kernel_layout(shape) == layout


@pytest.mark.corpus
def test_legacy_torch_file_is_left_to_the_torch_reader(corpus_path):
    assert reader_for_path(corpus_path("pnet.pt")).format == "pytorch"


# --------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.corpus
def test_truncated_lz4(corpus_path, tmp_path):
    pytest.importorskip("joblib")
    pytest.importorskip("lz4")
    data = corpus_path("onet.lz4").read_bytes()
    path = tmp_path / "cut.lz4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeFormatError, match=r"cut\.lz4"):  # untrusted: refused before any parsing
        read_path(path)
    with pytest.raises(ModelFormatError, match=r"cut\.lz4: not a readable"):
        read_path(path, TRUST)


def test_truncated_plain_pickle(tmp_path):
    data = pickle.dumps([np.ones((3, 3, 2, 4), np.float32)] * 3, protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"cut\.pkl: not a readable pickle file, truncated"):
        read_path(path, TRUST)


@pytest.mark.parametrize("name", ["random.pkl", "random.joblib", "random.lz4"])
@pytest.mark.parametrize("trust", [False, True])
def test_random_bytes(tmp_path, name, trust):
    rng = np.random.default_rng(1)
    data = b"\x00" + rng.integers(0, 256, 4095, dtype=np.uint8).tobytes()  # no pickle/lz4/zlib/gzip header
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=rf"{name.split('.')[0]}\.\w+: not a pickle or joblib file"):
        read_path(path, ReadOptions(trust_pickle=trust))


def test_random_bytes_behind_an_lz4_header(tmp_path):
    pytest.importorskip("lz4")
    path = tmp_path / "garbage.lz4"
    path.write_bytes(b"\x04\x22\x4d\x18" + np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match=r"garbage\.lz4"):
        read_path(path, TRUST)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty\.pkl: the file is empty"):
        read_path(path, TRUST)
