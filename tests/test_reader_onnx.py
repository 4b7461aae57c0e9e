"""The ONNX reader: hand-built graphs with known answers, the real ONNX files of the corpus (docs/corpus.md), bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import filterdb  # noqa: E402
from filterdb.errors import ModelFormatError  # noqa: E402
from filterdb.readers import reader_for_path  # noqa: E402
from filterdb.readers._onnx import OnnxReader  # noqa: E402

RNG = np.random.default_rng(0)
ONNX_CORPUS = [
    "ch_PP-OCRv4_det_infer.onnx",
    "ch_PP-OCRv4_rec_infer.onnx",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "320n.onnx",
    "nmp.onnx",
    "silero_vad.onnx",
]


# --- helpers -------------------------------------------------------------------------------------------


def weight(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def const_node(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name + "_t"))


def conv(name: str, x: str, w: str, out: str, op: str = "Conv", **attrs) -> onnx.NodeProto:
    return helper.make_node(op, [x, w], [out], name=name, **attrs)


def save(tmp_path: Path, nodes, initializers=(), *, inputs=("x",), outputs=("y",), opset: int = 17,
         name: str = "model.onnx", **save_kwargs) -> Path:
    graph = helper.make_graph(
        list(nodes), "g",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="filterdb-tests",
                              producer_version="1.0")
    path = tmp_path / name
    onnx.save_model(model, str(path), **save_kwargs)
    return path


def by_name(record) -> dict:
    return {layer.name: layer for layer in record.layers}


# --- depth ---------------------------------------------------------------------------------------------


def test_chain_depth(tmp_path):
    nodes = [conv("a", "x", "wa", "a"), helper.make_node("Relu", ["a"], ["r"]), conv("b", "r", "wb", "b"),
             conv("c", "b", "wc", "y")]
    path = save(tmp_path, nodes, [init("wa", weight(4, 3, 3, 3)), init("wb", weight(4, 4, 3, 3)),
                                  init("wc", weight(2, 4, 1, 1))])
    layers = by_name(filterdb.read_model(path))
    assert [layers[n].conv_depth for n in "abc"] == [0, 1, 2]
    assert [layers[n].conv_depth_norm for n in "abc"] == [0.0, 0.5, 1.0]
    assert all(layer.depth_source == "graph" for layer in layers.values())


def test_parallel_branches_share_a_level(tmp_path):
    nodes = [conv("a", "x", "wa", "a"), conv("b1", "a", "wb", "b1"), conv("b2", "a", "wb", "b2"),
             helper.make_node("Add", ["b1", "b2"], ["s"]), conv("c", "s", "wc", "y")]
    path = save(tmp_path, nodes, [init("wa", weight(4, 3, 3, 3)), init("wb", weight(4, 4, 3, 3)),
                                  init("wc", weight(4, 4, 3, 3))])
    layers = by_name(filterdb.read_model(path))
    assert {n: layers[n].conv_depth for n in layers} == {"a": 0, "b1": 1, "b2": 1, "c": 2}


def test_single_conv_level_has_norm_zero(tmp_path):
    path = save(tmp_path, [conv("only", "x", "w", "y")], [init("w", weight(4, 3, 3, 3))])
    (layer,) = filterdb.read_model(path).layers
    assert layer.conv_depth == 0 and layer.conv_depth_norm == 0.0


def test_constant_inputs_make_no_edge(tmp_path):
    # b's weight comes out of a Constant -> Cast -> Cast chain; a weight is not a predecessor, so the two
    # parallel convs on the graph input share a level.
    nodes = [const_node("w16", weight(4, 3, 3, 3).astype(np.float16)),
             helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["w32"], ["wb"], to=TensorProto.FLOAT),
             conv("a", "x", "wa", "a"), conv("b", "x", "wb", "b"), helper.make_node("Add", ["a", "b"], ["y"])]
    path = save(tmp_path, nodes, [init("wa", weight(4, 3, 3, 3))])
    layers = by_name(filterdb.read_model(path))
    assert layers["a"].conv_depth == layers["b"].conv_depth == 0


# --- weights and their encodings -----------------------------------------------------------------------


def test_conv_layout_attributes_and_info(tmp_path):
    w = weight(8, 3, 3, 3)
    nodes = [conv("c", "x", "w", "y", strides=[2, 2], dilations=[1, 2], pads=[1, 1, 1, 1])]
    path = save(tmp_path, nodes, [init("w", w)])
    record = filterdb.read_model(path)
    (layer,) = record.layers
    np.testing.assert_array_equal(layer.weight, w)
    assert (layer.op_type, layer.kind, layer.stride, layer.dilation, layer.storage_dtype) == (
        "Conv", "conv", (2, 2), (1, 2), "float32")
    info = record.info
    assert (info.format, info.producer, info.producer_version, info.opset) == ("onnx", "filterdb-tests", "1.0", 17)
    assert dict(info.op_counts) == {"Conv": 1}
    assert info.n_parameters == w.size


def test_default_stride_and_dilation_are_one(tmp_path):
    path = save(tmp_path, [conv("c", "x", "w", "y")], [init("w", weight(2, 3, 5, 5))])
    (layer,) = filterdb.read_model(path).layers
    assert layer.stride == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1


def test_grouped_and_depthwise_kinds(tmp_path):
    nodes = [conv("grouped", "x", "wg", "g", group=4), conv("dw", "g", "wd", "y", group=8)]
    path = save(tmp_path, nodes, [init("wg", weight(8, 2, 3, 3)), init("wd", weight(8, 1, 3, 3))])
    layers = by_name(filterdb.read_model(path))
    assert (layers["grouped"].kind, layers["grouped"].groups, layers["grouped"].n_filters) == ("grouped", 4, 16)
    assert (layers["dw"].kind, layers["dw"].groups, layers["dw"].n_filters) == ("depthwise", 8, 8)


def test_conv_transpose_keeps_in_out_layout(tmp_path):
    w = weight(4, 3, 2, 2)  # (I, O/g, kh, kw): 4 input channels, 6 output channels in 2 groups
    path = save(tmp_path, [conv("up", "x", "w", "y", op="ConvTranspose", group=2, strides=[2, 2])], [init("w", w)])
    (layer,) = filterdb.read_model(path).layers
    np.testing.assert_array_equal(layer.weight, w)
    assert (layer.kind, layer.op_type, layer.groups, layer.n_filters, layer.stride) == (
        "transpose", "ConvTranspose", 2, 12, (2, 2))


W_INT8 = np.array([[[[1, 2], [3, 4]]], [[[-1, 0], [5, -128]]]], dtype=np.int8)  # (2, 1, 2, 2)


def test_qlinearconv_per_channel(tmp_path):
    node = helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="q")
    inits = [init("xs", np.float32(0.1)), init("xz", np.int8(0)), init("w", W_INT8),
             init("ws", np.array([0.5, 0.25], np.float32)), init("wz", np.array([1, -2], np.int8)),
             init("ys", np.float32(0.2)), init("yz", np.int8(0))]
    (layer,) = filterdb.read_model(save(tmp_path, [node], inits, inputs=("xq",))).layers
    expected = np.array([[[[0.0, 0.5], [1.0, 1.5]]], [[[0.25, 0.5], [1.75, -31.5]]]], np.float32)
    np.testing.assert_allclose(layer.weight, expected)
    assert (layer.op_type, layer.storage_dtype) == ("QLinearConv", "int8")
    assert "dequantised int8 per-channel" in layer.notes


def test_qlinearconv_per_tensor_uint8(tmp_path):
    w = np.array([[[[0, 3], [10, 255]]]], dtype=np.uint8)
    node = helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="q")
    inits = [init("xs", np.float32(0.1)), init("xz", np.uint8(0)), init("w", w), init("ws", np.float32(0.5)),
             init("wz", np.uint8(3)), init("ys", np.float32(0.2)), init("yz", np.uint8(0))]
    (layer,) = filterdb.read_model(save(tmp_path, [node], inits, inputs=("xq",))).layers
    np.testing.assert_allclose(layer.weight, [[[[-1.5, 0.0], [3.5, 126.0]]]])
    assert layer.storage_dtype == "uint8" and "dequantised uint8 per-tensor" in layer.notes


def test_convinteger_removes_zero_point(tmp_path):
    node = helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["y"], name="ci")
    inits = [init("w", W_INT8), init("xz", np.int8(0)), init("wz", np.array([1, -2], np.int8))]
    (layer,) = filterdb.read_model(save(tmp_path, [node], inits, inputs=("xq",))).layers
    np.testing.assert_array_equal(layer.weight, [[[[0, 1], [2, 3]]], [[[1, 2], [7, -126]]]])
    assert (layer.op_type, layer.storage_dtype) == ("ConvInteger", "int8")


def test_dequantizelinear_weight_per_channel(tmp_path):
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0), conv("c", "x", "w", "y")]
    inits = [init("wq", W_INT8), init("ws", np.array([0.5, 0.25], np.float32)),
             init("wz", np.array([1, -2], np.int8))]
    (layer,) = filterdb.read_model(save(tmp_path, nodes, inits)).layers
    np.testing.assert_allclose(layer.weight, [[[[0.0, 0.5], [1.0, 1.5]]], [[[0.25, 0.5], [1.75, -31.5]]]])
    assert (layer.op_type, layer.storage_dtype) == ("Conv", "int8")
    assert "dequantised int8 per-channel" in layer.notes


def test_cast_and_identity_chain_from_float16(tmp_path):
    w16 = weight(4, 3, 3, 3).astype(np.float16)
    nodes = [helper.make_node("Identity", ["w16"], ["wi"]),
             helper.make_node("Cast", ["wi"], ["w"], to=TensorProto.FLOAT), conv("c", "x", "w", "y")]
    (layer,) = filterdb.read_model(save(tmp_path, nodes, [init("w16", w16)])).layers
    np.testing.assert_array_equal(layer.weight, w16.astype(np.float32))
    assert layer.storage_dtype == "float16" and "cast from float16" in layer.notes


def test_constant_node_weights_without_initializers(tmp_path):
    w = weight(4, 3, 3, 3)
    nodes = [const_node("w", w), conv("", "x", "w", "y")]
    record = filterdb.read_model(save(tmp_path, nodes))
    (layer,) = record.layers
    np.testing.assert_array_equal(layer.weight, w)
    assert layer.name == "w"  # unnamed node: named after its weight
    assert record.info.n_parameters == w.size
    assert record.info.op_counts == {"Constant": 1, "Conv": 1}


def test_unnamed_nodes_get_unique_names(tmp_path):
    nodes = [conv("", "x", "w", "a"), conv("", "a", "w2", "y"), conv("w", "a", "w2", "z")]
    path = save(tmp_path, nodes, [init("w", weight(3, 3, 3, 3)), init("w2", weight(3, 3, 3, 3))], outputs=("y", "z"))
    assert [layer.name for layer in filterdb.read_model(path).layers] == ["w", "w2", "w_1"]


def test_runtime_weight_is_skipped_with_a_note(tmp_path):
    nodes = [helper.make_node("Mul", ["wx", "wx"], ["w"]), conv("dynamic", "x", "w", "a"),
             conv("static", "a", "ws", "y")]
    record = filterdb.read_model(save(tmp_path, nodes, [init("ws", weight(2, 4, 3, 3))], inputs=("x", "wx")))
    assert [layer.name for layer in record.layers] == ["static"]
    (note,) = record.info.notes
    assert "'dynamic'" in note and "Mul" in note and "runtime" in note


def test_conv1d_and_conv3d_are_layers_without_depth(tmp_path):
    nodes = [conv("c1", "x", "w1", "a"), conv("c2", "x2", "w2", "b"), conv("c3", "x3", "w3", "y")]
    inits = [init("w1", weight(4, 2, 5)), init("w2", weight(4, 2, 3, 3)), init("w3", weight(4, 2, 3, 3, 3))]
    record = filterdb.read_model(save(tmp_path, nodes, inits, inputs=("x", "x2", "x3"), outputs=("a", "b", "y")))
    layers = by_name(record)
    assert [layers[n].spatial_ndim for n in ("c1", "c2", "c3")] == [1, 2, 3]
    assert layers["c1"].conv_depth is None and layers["c3"].conv_depth is None and layers["c2"].conv_depth == 0
    assert layers["c1"].stride == (1,) and layers["c3"].dilation == (1, 1, 1)
    assert [layer.name for layer in record.layers_2d] == ["c2"]


def test_nan_weights_are_read_not_rejected(tmp_path):
    w = np.full((2, 3, 3, 3), np.nan, np.float32)
    (layer,) = filterdb.read_model(save(tmp_path, [conv("c", "x", "w", "y")], [init("w", w)])).layers
    assert np.isnan(layer.weight).all()


def test_if_subgraph_convs_and_outer_scope_weights(tmp_path):
    w_outer, w_else = weight(4, 4, 3, 3), weight(4, 4, 1, 1)
    then_graph = helper.make_graph(
        [conv("then_conv", "a", "w_outer", "t")], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph(
        [const_node("w_else", w_else), helper.make_node("Relu", ["a"], ["r"]), conv("else_conv", "r", "w_else", "e")],
        "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [conv("first", "x", "w_first", "a"), helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_graph, else_branch=else_graph)]
    inits = [init("w_first", weight(4, 3, 3, 3)), init("w_outer", w_outer), init("zero", np.float32(0))]
    record = filterdb.read_model(save(tmp_path, nodes, inits))
    layers = by_name(record)
    np.testing.assert_array_equal(layers["then_conv"].weight, w_outer)
    np.testing.assert_array_equal(layers["else_conv"].weight, w_else)
    # If level = 1 (it reads `a` from its bodies); then_conv sits at 1 + 0, else_conv at 1 + 1.
    assert [layers[n].conv_depth for n in ("first", "then_conv", "else_conv")] == [0, 1, 2]
    assert any("subgraph 'then_branch'" in note for note in layers["then_conv"].notes)
    assert record.info.op_counts["Conv"] == 3 and record.info.op_counts["If"] == 1
    assert record.info.n_parameters == 4 * 3 * 9 + w_outer.size + 1 + w_else.size


def test_external_data(tmp_path):
    w = weight(16, 8, 3, 3)
    path = save(tmp_path, [conv("c", "x", "w", "y")], [init("w", w)], save_as_external_data=True,
                all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    (layer,) = filterdb.read_model(path).layers
    np.testing.assert_array_equal(layer.weight, w)


def test_external_data_file_missing(tmp_path):
    path = save(tmp_path, [conv("c", "x", "w", "y")], [init("w", weight(16, 8, 3, 3))], save_as_external_data=True,
                all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*'weights.bin'.*missing"):
        filterdb.read_model(path)


# --- sniffing and bad input ----------------------------------------------------------------------------


def test_sniff_accepts_built_models_and_rejects_other_bytes(tmp_path):
    path = save(tmp_path, [conv("c", "x", "w", "y")], [init("w", weight(2, 3, 3, 3))], name="model.bin")
    reader = OnnxReader()
    assert reader.sniff(path, path.read_bytes()[:4096])
    assert reader_for_path(path).format == "onnx"  # found by content, not by the .bin extension
    others = [b"", b"\x08", b"PK\x03\x04" + bytes(20), b"\x89HDF\r\n\x1a\n", b"\x80\x02}q\x00.",
              b"\x1c\x00\x00\x00TFL3" + bytes(16), (120).to_bytes(8, "little") + b'{"w":{}}',
              b"\x08\x01\x00\x00", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x12"]
    for head in others:
        assert not reader.sniff(path, head), head
    rng = np.random.default_rng(1)
    claimed = sum(reader.sniff(path, rng.bytes(64)) for _ in range(2000))
    assert claimed <= 2  # needs 0x08, a small varint and a ModelProto tag: about 1 in 10,000 random heads


def test_random_bytes_named_onnx(tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(2).bytes(10_000))
    with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*not a valid ONNX file"):
        filterdb.read_model(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*empty"):
        filterdb.read_model(path)


def test_model_without_graph(tmp_path):
    path = tmp_path / "nograph.onnx"
    path.write_bytes(onnx.ModelProto(ir_version=8, producer_name="x").SerializeToString())
    with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*no graph"):
        filterdb.read_model(path)


@pytest.mark.corpus
def test_truncated_real_model(tmp_path, corpus_path):
    data = corpus_path("320n.onnx").read_bytes()
    path = tmp_path / "320n_half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*truncated"):
        filterdb.read_model(path)


# --- the real corpus -----------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("key", ONNX_CORPUS)
def test_corpus_counts(key, corpus_path, corpus_entry):
    path = corpus_path(key)
    assert reader_for_path(path).format == "onnx"
    assert OnnxReader().sniff(path, path.read_bytes()[:4096])
    record = filterdb.read_model(path)
    entry = corpus_entry(key)
    layers_2d = record.layers_2d
    if entry.n_conv is not None:
        assert len(layers_2d) == entry.n_conv
    assert sum(layer.n_filters for layer in layers_2d if layer.kernel == (3, 3)) == entry.n_3x3
    assert record.info.format == "onnx" and record.info.opset and record.info.n_parameters > 0
    assert not record.info.notes  # every weight of these files is a constant
    norms = [layer.conv_depth_norm for layer in layers_2d]
    assert all(0.0 <= n <= 1.0 for n in norms) and (not norms or max(norms) == 1.0)


@pytest.mark.corpus
def test_nudenet_kernels(corpus_path):
    # read speed is measured by bench/bench_check.py, not asserted here
    record = filterdb.read_model(corpus_path("320n.onnx"))
    kernels = [layer.kernel for layer in record.layers]
    assert (kernels.count((3, 3)), kernels.count((1, 1))) == (39, 25)
    assert record.info.producer == "pytorch" and record.info.opset == 17


@pytest.mark.corpus
def test_rapidocr_det_transpose_and_depthwise(corpus_path):
    record = filterdb.read_model(corpus_path("ch_PP-OCRv4_det_infer.onnx"))
    kinds = {(layer.kind, layer.kernel) for layer in record.layers}
    assert ("transpose", (2, 2)) in kinds and ("depthwise", (5, 5)) in kinds
    assert all(layer.op_type == "ConvTranspose" for layer in record.layers if layer.kind == "transpose")
    assert record.info.n_parameters > 0 and record.info.op_counts["Constant"] > 0  # paddle2onnx: Constant nodes


@pytest.mark.corpus
def test_rapidocr_rec_non_square_kernels(corpus_path):
    record = filterdb.read_model(corpus_path("ch_PP-OCRv4_rec_infer.onnx"))
    kinds = {(layer.kind, layer.kernel) for layer in record.layers}
    assert ("conv", (1, 3)) in kinds and ("depthwise", (5, 5)) in kinds


@pytest.mark.corpus
def test_silero_conv1d_inside_if_subgraphs(corpus_path):
    record = filterdb.read_model(corpus_path("silero_vad.onnx"))
    assert record.layers and record.layers_2d == ()
    assert all(layer.spatial_ndim == 1 and layer.conv_depth is None for layer in record.layers)
    assert all(any("subgraph" in note for note in layer.notes) for layer in record.layers)
    assert record.info.op_counts["Conv"] == len(record.layers)
