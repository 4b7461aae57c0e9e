"""The Keras reader: layouts against hand-made kernels, the real fer model, a Keras 3 zip, bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from filterdb.errors import ModelFormatError
from filterdb.readers import read_path, reader_for_path
from filterdb.readers._keras_config import parse_model_config

# ----------------------------------------------------------------------------------------- helpers


def _conv_config(class_name: str, name: str, **extra) -> dict:
    return {"class_name": class_name, "name": name, "config": {"name": name, "strides": [1, 1], **extra}}


def _write_keras2(path: Path, layers: list[tuple[dict, dict[str, np.ndarray]]], *, with_config: bool = True) -> Path:
    """A Keras 2 HDF5 file: a Sequential model config plus model_weights (or a weight-only file)."""
    with h5py.File(path, "w") as f:
        if with_config:
            config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [c for c, _ in layers]}}
            f.attrs["model_config"] = json.dumps(config)
            f.attrs["keras_version"] = "2.15.0"
            root = f.create_group("model_weights")
        else:
            root = f
            root.attrs["keras_version"] = "2.15.0"
        root.attrs["layer_names"] = [c["name"].encode() for c, _ in layers]
        for config, weights in layers:
            group = root.create_group(config["name"])
            names = [f"{config['name']}/{role}:0" for role in weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, array in zip(names, weights.values()):
                group.create_dataset(n, data=array)
    return path


def _index_kernel(shape: tuple[int, ...]) -> np.ndarray:
    """A kernel whose entry at (a, b, c, d) is the number abcd: every value names its own index."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(g * 10 ** (len(shape) - 1 - k) for k, g in enumerate(grids)).astype(np.float32)


# ----------------------------------------------------------------------------------------- layouts


def test_conv2d_hwio_becomes_oihw(tmp_path):
    kernel = _index_kernel((3, 2, 4, 5))  # (h, w, i, o)
    path = _write_keras2(tmp_path / "m.h5", [(_conv_config("Conv2D", "c"), {"kernel": kernel})])
    (layer,) = read_path(path).layers
    assert layer.weight.shape == (5, 4, 3, 2) and layer.kind == "conv"
    for o, i, h, w in [(0, 0, 0, 0), (4, 3, 2, 1), (1, 2, 0, 1), (3, 0, 2, 0)]:
        assert layer.weight[o, i, h, w] == 1000 * h + 100 * w + 10 * i + o


def test_depthwise_with_multiplier_two(tmp_path):
    kernel = _index_kernel((3, 3, 4, 2))  # (h, w, c, m)
    config = _conv_config("DepthwiseConv2D", "dw", depth_multiplier=2)
    path = _write_keras2(tmp_path / "m.h5", [(config, {"depthwise_kernel": kernel})])
    (layer,) = read_path(path).layers
    assert layer.weight.shape == (8, 1, 3, 3)
    assert layer.kind == "depthwise" and layer.groups == 4 and layer.n_filters == 8
    for c in range(4):
        for m in range(2):
            # PyTorch groups=C: output channel c*mult + m is filter m of input channel c
            expected = 1000 * np.arange(3)[:, None] + 100 * np.arange(3)[None, :] + 10 * c + m
            np.testing.assert_array_equal(layer.weight[c * 2 + m, 0], expected)


def test_conv2d_transpose_becomes_in_out_kh_kw(tmp_path):
    kernel = _index_kernel((3, 2, 5, 4))  # Keras transposed kernel: (h, w, out, in)
    path = _write_keras2(tmp_path / "m.h5", [(_conv_config("Conv2DTranspose", "t"), {"kernel": kernel})])
    (layer,) = read_path(path).layers
    assert layer.kind == "transpose" and layer.weight.shape == (4, 5, 3, 2)  # (I, O, kh, kw)
    for i, o, h, w in [(0, 0, 0, 0), (3, 4, 2, 1), (2, 1, 1, 0)]:
        assert layer.weight[i, o, h, w] == 1000 * h + 100 * w + 10 * o + i


def test_groups_conv1d_and_conv3d(tmp_path):
    layers = [
        (_conv_config("Conv2D", "g", groups=2), {"kernel": np.ones((3, 3, 2, 6), np.float32)}),
        (_conv_config("Conv1D", "c1", strides=[2]), {"kernel": _index_kernel((5, 2, 3))}),
        (_conv_config("Conv3D", "c3", strides=[1, 1, 1]), {"kernel": np.ones((1, 3, 3, 6, 2), np.float32)}),
    ]
    g, c1, c3 = read_path(_write_keras2(tmp_path / "m.h5", layers)).layers
    assert g.kind == "grouped" and g.groups == 2 and g.weight.shape == (6, 2, 3, 3)
    assert c1.weight.shape == (3, 2, 5) and c1.weight[2, 1, 4] == 100 * 4 + 10 * 1 + 2 and c1.conv_depth is None
    assert c3.weight.shape == (2, 6, 1, 3, 3) and c3.conv_depth is None
    assert g.conv_depth == 0 and g.conv_depth_norm == 0.0  # one 2-D level only


def test_weight_only_file_gets_depth_from_order(tmp_path):
    layers = [
        (_conv_config("Conv2D", "a"), {"kernel": np.ones((3, 3, 1, 4), np.float32), "bias": np.zeros(4, np.float32)}),
        (_conv_config("Dense", "d"), {"kernel": np.ones((4, 2), np.float32)}),
        (_conv_config("SeparableConv2D", "s"), {"depthwise_kernel": np.ones((3, 3, 4, 1), np.float32),
                                                "pointwise_kernel": np.ones((1, 1, 4, 8), np.float32)}),
    ]
    record = read_path(_write_keras2(tmp_path / "w.h5", layers, with_config=False))
    assert [layer.name for layer in record.layers] == ["a", "s/depthwise", "s/pointwise"]
    assert [layer.conv_depth for layer in record.layers] == [0, 1, 2]
    assert {layer.depth_source for layer in record.layers} == {"order"}
    assert record.info.n_parameters == 9 * 4 + 4 + 8 + 36 + 32
    assert any("depth from layer order" in note for note in record.info.notes)


def test_keras2_and_keras3_inbound_nodes_give_the_same_graph():
    k2 = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "a", "config": {"name": "a"}, "inbound_nodes": [[["in", 0, 0, {}]]]},
        {"class_name": "Add", "name": "s", "config": {"name": "s"},
         "inbound_nodes": [[["in", 0, 0, {}], ["a", 0, 0, {}]]]}]}}

    def tensor(name: str) -> dict:
        return {"class_name": "__keras_tensor__", "config": {"shape": [None, 8], "keras_history": [name, 0, 0]}}

    k3 = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "a", "config": {"name": "a"},
         "inbound_nodes": [{"args": [tensor("in")], "kwargs": {}}]},
        {"class_name": "Add", "name": "s", "config": {"name": "s"},
         "inbound_nodes": [{"args": [[tensor("in"), tensor("a")]], "kwargs": {}}]}]}}
    graph = [(s.key, s.preds) for s in parse_model_config(k2)]
    assert graph == [(s.key, s.preds) for s in parse_model_config(k3)]
    assert graph == [("in", ()), ("a", ("in",)), ("s", ("in", "a"))]


def test_nested_model_is_flattened_into_the_graph():
    inner = {"class_name": "Sequential", "name": "backbone", "config": {"name": "backbone", "layers": [
        {"class_name": "Conv2D", "config": {"name": "c1"}}, {"class_name": "Conv2D", "config": {"name": "c2"}}]},
        "inbound_nodes": [[["in", 0, 0, {}]]]}
    outer = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []}, inner,
        {"class_name": "Conv2D", "name": "head", "config": {"name": "head"},
         "inbound_nodes": [[["backbone", 0, 0, {}]]]}]}}
    graph = {s.key: s.preds for s in parse_model_config(outer)}
    assert graph["backbone/c1"] == ("in",) and graph["backbone/c2"] == ("backbone/c1",)
    assert graph["backbone"] == ("backbone/c2",) and graph["head"] == ("backbone",)


# ----------------------------------------------------------------------------------------- real model


@pytest.mark.corpus
def test_fer_hdf5_counts_and_info(corpus_path, corpus_entry):
    path, entry = corpus_path("emotion_model.hdf5"), corpus_entry("emotion_model.hdf5")
    assert reader_for_path(path).format == "keras"
    record = read_path(path)
    layers = record.layers_2d
    assert len(layers) == entry.n_conv
    assert sum(layer.n_filters for layer in layers if layer.kernel == (3, 3)) == entry.n_3x3
    assert sum(layer.n_filters for layer in layers if layer.kernel == (3, 3) and layer.kind == "depthwise") == (
        entry.n_3x3_depthwise)
    info = record.info
    assert (info.format, info.producer, info.producer_version) == ("keras", "keras", "2.0.5")
    assert info.op_counts["SeparableConv2D"] == 8 and info.op_counts["Conv2D"] == 7
    with h5py.File(path, "r") as f:
        n_model = sum(d.size for d in _datasets(f["model_weights"]))
        kernel = f["model_weights/conv2d_2/conv2d_2_1/kernel:0"][()]
    assert info.n_parameters == n_model  # optimizer_weights (same shapes) not counted
    first = {layer.name: layer for layer in layers}
    np.testing.assert_array_equal(first["conv2d_2"].weight, kernel.transpose(3, 2, 0, 1))
    # separable convs are two layers in a row; depth ranks cover 0 .. 18
    assert first["separable_conv2d_1/pointwise"].conv_depth == first["separable_conv2d_1/depthwise"].conv_depth + 1
    assert first["conv2d_1"].conv_depth == 0 and first["conv2d_7"].conv_depth_norm == 1.0
    assert first["conv2d_3"].conv_depth == first["separable_conv2d_1/depthwise"].conv_depth  # parallel branch


def _datasets(group: h5py.Group) -> list[h5py.Dataset]:
    found: list[h5py.Dataset] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _keras3_tensor(name: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": None, "dtype": "float32",
                                                         "keras_history": [name, 0, 0]}}


def _to_keras3_layer(layer: dict) -> dict:
    nodes = []
    for node in layer.get("inbound_nodes", []):
        tensors = [_keras3_tensor(entry[0]) for entry in node]
        nodes.append({"args": [tensors if len(tensors) > 1 else tensors[0]], "kwargs": {}})
    return {"module": "keras.layers", "class_name": layer["class_name"], "config": layer["config"],
            "registered_name": None, "name": layer["name"], "inbound_nodes": nodes}


def _write_keras3_from_keras2(src: Path, dst: Path) -> Path:
    """A Keras 3 .keras zip (config.json, model.weights.h5, metadata.json) holding the fer model's weights."""
    with h5py.File(src, "r") as f:
        k2 = json.loads(f.attrs["model_config"])
        weights = {}
        for name in (n.decode() for n in f["model_weights"].attrs["layer_names"]):
            group = f["model_weights"][name]
            weights[name] = [group[n.decode()][()] for n in group.attrs["weight_names"]]
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": k2["config"]["name"], "trainable": True,
                         "layers": [_to_keras3_layer(layer) for layer in k2["config"]["layers"]],
                         "input_layers": [["input_1", 0, 0]], "output_layers": [["predictions", 0, 0]]}}
    h5_path = dst.with_suffix(".weights.h5")
    with h5py.File(h5_path, "w") as h5:
        for name, arrays in weights.items():
            variables = h5.create_group(f"layers/{name}/vars")
            for i, array in enumerate(arrays):
                variables.create_dataset(str(i), data=array)
                # Keras 3 keeps optimizer slots of the same shapes in the same file: they must be ignored.
                h5.create_dataset(f"optimizer/vars/{name}_{i}", data=np.full_like(array, 7.0))
        h5.create_group("vars")
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2025-01-01@00:00:00"}))
        zf.writestr("config.json", json.dumps(config))
        zf.write(h5_path, "model.weights.h5")
    return dst


@pytest.mark.corpus
def test_keras3_zip_reads_back_like_the_hdf5(corpus_path, tmp_path):
    src = corpus_path("emotion_model.hdf5")
    dst = _write_keras3_from_keras2(src, tmp_path / "fer.keras")
    assert reader_for_path(dst).format == "keras"
    k2, k3 = read_path(src), read_path(dst)
    assert [layer.name for layer in k3.layers] == [layer.name for layer in k2.layers]
    for a, b in zip(k2.layers, k3.layers):
        assert a.weight.tobytes() == b.weight.tobytes(), a.name  # bit for bit
        assert (a.conv_depth, a.conv_depth_norm, a.kind, a.groups) == (b.conv_depth, b.conv_depth_norm, b.kind, b.groups)
    assert k3.info.producer_version == "3.6.0"
    assert k3.info.n_parameters == k2.info.n_parameters
    assert dict(k3.info.op_counts) == dict(k2.info.op_counts)


# ----------------------------------------------------------------------------------------- bad input


def test_plain_hdf5_without_keras_weights_is_refused(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("filters", data=np.zeros((4, 9)))
    with pytest.raises(ModelFormatError, match=r"data\.h5: HDF5 file without Keras model weights"):
        read_path(path)


@pytest.mark.corpus
def test_truncated_hdf5_is_a_format_error(corpus_path, tmp_path):
    data = corpus_path("emotion_model.hdf5").read_bytes()
    path = tmp_path / "cut.hdf5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"cut\.hdf5: .*(truncated|corrupt)"):
        read_path(path)


@pytest.mark.parametrize("name", ["noise.h5", "noise.keras", "noise.hdf5"])
def test_random_bytes_with_a_keras_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match=name.replace(".", r"\.")):
        read_path(path)


def test_empty_keras_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty\.h5: the file is empty"):
        read_path(path)


def test_keras_zip_without_weights_and_truncated_zip(tmp_path):
    path = tmp_path / "noweights.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    with pytest.raises(ModelFormatError, match=r"noweights\.keras: .keras archive without model.weights.h5"):
        read_path(path)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelFormatError, match=r"cut\.keras: not a readable .keras zip"):
        read_path(cut)
