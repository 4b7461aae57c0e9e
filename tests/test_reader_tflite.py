"""The TFLite reader: layouts in hand-built flatbuffers, the sparsity format, the real models, bad input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite

from filterdb.errors import ModelFormatError
from filterdb.readers import ReadOptions, read_path, reader_for_path
from filterdb.readers._tflite_sparse import DENSE, SPARSE_CSR, DimMeta, densify, dequantize

# ----------------------------------------------------------------------------------------- a tiny model builder


@dataclass
class T:
    """A tensor of a hand-built model; ``data`` makes it a constant."""

    name: str
    shape: tuple[int, ...]
    type: int = tflite.TensorType.FLOAT32
    data: bytes | None = None
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    axis: int = 0


def _vector(b: flatbuffers.Builder, values, dtype) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _tensor(b: flatbuffers.Builder, t: T, buffer: int) -> int:
    name, shape = b.CreateString(t.name), _vector(b, t.shape, np.int32)
    quant = None
    if t.scale:
        scale, zero = _vector(b, t.scale, np.float32), _vector(b, t.zero_point, np.int64)
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, scale)
        tflite.QuantizationParametersAddZeroPoint(b, zero)
        tflite.QuantizationParametersAddQuantizedDimension(b, t.axis)
        quant = tflite.QuantizationParametersEnd(b)
    tflite.TensorStart(b)
    tflite.TensorAddName(b, name)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, t.type)
    tflite.TensorAddBuffer(b, buffer)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    return tflite.TensorEnd(b)


def build_model(tensors: list[T], ops: list[tuple[int, list[int], list[int]]], description: str = "test") -> bytes:
    """A one-subgraph TFLite flatbuffer: ``ops`` are (builtin code, input tensor ids, output tensor ids)."""
    b = flatbuffers.Builder(1024)
    buffers, buffer_of = [], []
    for t in [None] + [t for t in tensors if t.data is not None]:  # buffer 0: the empty sentinel
        data = _vector(b, np.frombuffer(t.data, np.uint8), np.uint8) if t is not None else None
        tflite.BufferStart(b)
        if data is not None:
            tflite.BufferAddData(b, data)
        buffers.append(tflite.BufferEnd(b))
    n = 0
    for t in tensors:
        n += t.data is not None
        buffer_of.append(n if t.data is not None else 0)
    tensor_offsets = [_tensor(b, t, buf) for t, buf in zip(tensors, buffer_of)]
    codes = sorted({code for code, _, _ in ops})
    op_offsets = []
    for code, inputs, outputs in ops:
        ins, outs = _vector(b, inputs, np.int32), _vector(b, outputs, np.int32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        op_offsets.append(tflite.OperatorEnd(b))
    code_offsets = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    def offsets_vector(start, items):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    tensor_vec = offsets_vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
    op_vec = offsets_vector(tflite.SubGraphStartOperatorsVector, op_offsets)
    inputs = _vector(b, [0], np.int32)
    outputs = _vector(b, [len(tensors) - 1], np.int32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddOperators(b, op_vec)
    tflite.SubGraphAddInputs(b, inputs)
    tflite.SubGraphAddOutputs(b, outputs)
    subgraph = tflite.SubGraphEnd(b)
    subgraph_vec = offsets_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    code_vec = offsets_vector(tflite.ModelStartOperatorCodesVector, code_offsets)
    buffer_vec = offsets_vector(tflite.ModelStartBuffersVector, buffers)
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, code_vec)
    tflite.ModelAddSubgraphs(b, subgraph_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffer_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _index_kernel(shape: tuple[int, ...]) -> np.ndarray:
    """Entry (a, b, c, d) holds the number abcd: every value names its own index."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(g * 10 ** (len(shape) - 1 - k) for k, g in enumerate(grids)).astype(np.float32)


def _single_op(tmp_path: Path, code: int, weight: T, in_shape, out_shape, weight_slot: int = 1) -> Path:
    tensors = [T("input", in_shape), weight, T("output", out_shape)]
    inputs = [0, 1] if weight_slot == 1 else [1, 0]
    path = tmp_path / "m.tflite"
    path.write_bytes(build_model(tensors, [(code, inputs, [2])]))
    return path


# ----------------------------------------------------------------------------------------- layouts


def test_conv2d_ohwi_becomes_oihw(tmp_path):
    kernel = _index_kernel((5, 3, 2, 4))  # [O, kh, kw, I]
    path = _single_op(tmp_path, tflite.BuiltinOperator.CONV_2D, T("w", kernel.shape, data=kernel.tobytes()),
                      (1, 8, 8, 4), (1, 8, 8, 5))
    assert reader_for_path(path).format == "tflite"
    record = read_path(path)
    (layer,) = record.layers
    assert layer.weight.shape == (5, 4, 3, 2) and layer.kind == "conv" and layer.groups == 1
    for o, i, h, w in [(0, 0, 0, 0), (4, 3, 2, 1), (2, 1, 0, 1)]:
        assert layer.weight[o, i, h, w] == 1000 * o + 100 * h + 10 * w + i
    assert record.info.opset == 3 and record.info.producer == "test"
    assert dict(record.info.op_counts) == {"CONV_2D": 1} and record.info.n_parameters == kernel.size


def test_depthwise_multiplier_two_and_groups_from_input(tmp_path):
    kernel = _index_kernel((1, 3, 3, 8))  # [1, kh, kw, C*mult] with C=4, mult=2
    path = _single_op(tmp_path, tflite.BuiltinOperator.DEPTHWISE_CONV_2D,
                      T("w", kernel.shape, data=kernel.tobytes()), (1, 8, 8, 4), (1, 8, 8, 8))
    (layer,) = read_path(path).layers
    assert layer.weight.shape == (8, 1, 3, 3) and layer.kind == "depthwise" and layer.groups == 4
    for ch in range(8):
        np.testing.assert_array_equal(layer.weight[ch, 0], kernel[0, :, :, ch])


def test_transpose_conv_becomes_in_out_kh_kw(tmp_path):
    kernel = _index_kernel((5, 3, 2, 4))  # [O, kh, kw, I]
    out_shape = T("output_shape", (4,), tflite.TensorType.INT32, np.array([1, 16, 16, 5], np.int32).tobytes())
    tensors = [T("input", (1, 8, 8, 4)), out_shape, T("w", kernel.shape, data=kernel.tobytes()),
               T("output", (1, 16, 16, 5))]
    path = tmp_path / "t.tflite"
    path.write_bytes(build_model(tensors, [(tflite.BuiltinOperator.TRANSPOSE_CONV, [1, 2, 0], [3])]))
    (layer,) = read_path(path).layers
    assert layer.kind == "transpose" and layer.weight.shape == (4, 5, 3, 2)  # (I, O, kh, kw)
    for i, o, h, w in [(0, 0, 0, 0), (3, 4, 2, 1), (1, 2, 1, 0)]:
        assert layer.weight[i, o, h, w] == 1000 * o + 100 * h + 10 * w + i


def test_int8_per_channel_weights_are_dequantised(tmp_path):
    q = np.arange(-36, 36, dtype=np.int8).reshape(2, 3, 3, 4)
    scale, zero = [0.5, 0.25], [1, -2]
    weight = T("w", q.shape, tflite.TensorType.INT8, q.tobytes(), scale=scale, zero_point=zero, axis=0)
    path = _single_op(tmp_path, tflite.BuiltinOperator.CONV_2D, weight, (1, 8, 8, 4), (1, 8, 8, 2))
    (layer,) = read_path(path).layers
    expected = (q.astype(np.float64) - np.array(zero)[:, None, None, None]) * np.array(scale)[:, None, None, None]
    np.testing.assert_array_equal(layer.weight, expected.transpose(0, 3, 1, 2).astype(np.float32))
    assert layer.storage_dtype == "int8" and layer.notes == ("int8 per-channel dequantised",)


def test_float16_behind_dequantize_and_depth_ignores_constant_ops(tmp_path):
    k1 = np.random.default_rng(1).normal(size=(4, 3, 3, 2)).astype(np.float16)
    k2 = np.random.default_rng(2).normal(size=(4, 1, 1, 4)).astype(np.float32)
    tensors = [T("input", (1, 8, 8, 2)), T("w16", k1.shape, tflite.TensorType.FLOAT16, k1.tobytes()),
               T("w32", k1.shape), T("a", (1, 8, 8, 4)), T("w2", k2.shape, data=k2.tobytes()),
               T("output", (1, 8, 8, 4))]
    ops = [(tflite.BuiltinOperator.DEQUANTIZE, [1], [2]), (tflite.BuiltinOperator.CONV_2D, [0, 2], [3]),
           (tflite.BuiltinOperator.CONV_2D, [3, 4], [5])]
    path = tmp_path / "f16.tflite"
    path.write_bytes(build_model(tensors, ops))
    first, second = read_path(path).layers
    np.testing.assert_array_equal(first.weight, k1.astype(np.float32).transpose(0, 3, 1, 2))
    assert first.storage_dtype == "float16" and second.storage_dtype == "float32"
    assert (first.conv_depth, second.conv_depth, second.conv_depth_norm) == (0, 1, 1.0)
    assert first.name == "a" and second.name == "output"  # named after the tensor the op writes


# ----------------------------------------------------------------------------------------- sparsity format


def test_densify_csr_matrix():
    dims = [DimMeta(DENSE, 3), DimMeta(SPARSE_CSR, segments=np.array([0, 2, 2, 3]), indices=np.array([0, 3, 1]))]
    dense = densify(np.array([1.0, 2.0, 3.0]), (3, 4), (0, 1), (), dims)
    np.testing.assert_array_equal(dense, [[1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0]])


def test_densify_column_major_traversal():
    # traversal (1, 0): columns outer, rows inner (CSC)
    dims = [DimMeta(DENSE, 3), DimMeta(SPARSE_CSR, segments=np.array([0, 1, 1, 3]), indices=np.array([1, 0, 1]))]
    dense = densify(np.array([1.0, 2.0, 3.0]), (2, 3), (1, 0), (), dims)
    np.testing.assert_array_equal(dense, [[0, 0, 2], [1, 0, 3]])


def test_densify_block_sparse():
    # 4x4 in 2x2 blocks: block (0, 0) and block (1, 1) stored, each as a dense 2x2 block.
    dims = [DimMeta(DENSE, 2), DimMeta(SPARSE_CSR, segments=np.array([0, 1, 2]), indices=np.array([0, 1])),
            DimMeta(DENSE, 2), DimMeta(DENSE, 2)]
    dense = densify(np.arange(1.0, 9.0), (4, 4), (0, 1, 2, 3), (0, 1), dims)
    np.testing.assert_array_equal(dense, [[1, 2, 0, 0], [3, 4, 0, 0], [0, 0, 5, 6], [0, 0, 7, 8]])


def test_densify_rejects_inconsistent_metadata():
    dims = [DimMeta(DENSE, 2), DimMeta(SPARSE_CSR, segments=np.array([0, 1, 2]), indices=np.array([0, 1]))]
    with pytest.raises(ValueError, match="buffer holds 3"):
        densify(np.ones(3), (2, 2), (0, 1), (), dims)


def test_dequantize_per_tensor():
    values, note = dequantize(np.array([0, 10, 255], np.uint8), np.array([0.1]), np.array([10]), 0)
    np.testing.assert_allclose(values, [-1.0, 0.0, 24.5], rtol=1e-6)
    assert note == "uint8 per-tensor dequantised"


def _reference_densify(values, shape, order, block_map, dims):
    """A line-by-line port of TFLite's recursive FormatConverter::Populate: the independent reference."""
    n, out, cursor = len(shape), np.zeros(shape, values.dtype), [0]
    blocks = {order[lv] - n: dims[lv].dense_size for lv in range(len(order)) if order[lv] >= n}

    def populate(indices, level, prev):
        if level == len(indices):
            orig = [0] * n
            for i in range(n):
                orig[order[i]] = indices[i]
            for i in range(n, len(indices)):
                b = order[i] - n
                orig[block_map[b]] = orig[block_map[b]] * blocks[b] + indices[i]
            out[tuple(orig)] = values[cursor[0]]
            cursor[0] += 1
            return
        meta = dims[level]
        if meta.format == DENSE:
            for i in range(meta.dense_size):
                indices[level] = i
                populate(indices, level + 1, prev * meta.dense_size + i)
        else:
            for i in range(meta.segments[prev], meta.segments[prev + 1]):
                indices[level] = meta.indices[i]
                populate(indices, level + 1, i)

    populate([0] * len(order), 0, 0)
    return out


@pytest.mark.corpus
def test_densify_matches_the_reference_on_the_real_sparse_model(corpus_path):
    from filterdb.readers._tflite import _sparse_dims

    data = corpus_path("face_detection_full_range_sparse.tflite").read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    graph, checked = model.Subgraphs(0), 0
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        sparsity = tensor.Sparsity()
        if sparsity is None:
            continue
        values = model.Buffers(tensor.Buffer()).DataAsNumpy().view(np.float16)
        shape, order = tuple(tensor.ShapeAsNumpy()), list(sparsity.TraversalOrderAsNumpy())
        dims = _sparse_dims(sparsity)
        dense = densify(values, shape, order, [], dims)
        np.testing.assert_array_equal(dense, _reference_densify(values, shape, order, [], dims))
        assert np.count_nonzero(dense) == np.count_nonzero(values)
        checked += 1
    assert checked == 46


# ----------------------------------------------------------------------------------------- real models

TFLITE_CORPUS = ["emotion_model_quantized.tflite", "face_detection_short_range.tflite", "face_landmark.tflite",
                 "iris_landmark.tflite", "face_detection_full_range_sparse.tflite", "nmp.tflite"]


@pytest.mark.corpus
@pytest.mark.parametrize("key", TFLITE_CORPUS)
def test_corpus_counts(corpus_path, corpus_entry, key):
    path, entry = corpus_path(key), corpus_entry(key)
    assert reader_for_path(path).format == "tflite"
    record = read_path(path)
    layers = record.layers_2d
    if entry.n_conv is not None:
        assert len(layers) == entry.n_conv
    assert sum(layer.n_filters for layer in layers if layer.kernel == (3, 3)) == entry.n_3x3
    if entry.n_3x3_depthwise is not None:
        assert sum(layer.n_filters for layer in layers if layer.kernel == (3, 3) and layer.kind == "depthwise") == (
            entry.n_3x3_depthwise)
    assert record.info.format == "tflite" and record.info.opset == 3 and record.info.n_parameters > 0
    assert all(np.isfinite(layer.weight).all() for layer in layers)
    depths = [layer.conv_depth for layer in layers]
    assert min(depths) == 0 and max(layer.conv_depth_norm for layer in layers) == 1.0


@pytest.mark.corpus
def test_storage_types_and_notes(corpus_path):
    short = read_path(corpus_path("face_detection_short_range.tflite"))
    assert {layer.storage_dtype for layer in short.layers} == {"float16"}
    assert short.info.producer == "keras2tflite_facedetector-front.tflite.generated"
    assert short.info.op_counts["DEQUANTIZE"] == 74 and short.info.op_counts["CONV_2D"] == 21
    sparse = read_path(corpus_path("face_detection_full_range_sparse.tflite"))
    densified = [layer for layer in sparse.layers if "densified from sparse" in layer.notes]
    assert len(densified) == 46 and {layer.kernel for layer in densified} == {(1, 1)}
    assert all(np.count_nonzero(layer.weight) < layer.weight.size for layer in densified)
    fer = read_path(corpus_path("emotion_model_quantized.tflite"))
    assert {layer.storage_dtype for layer in fer.layers} == {"float32", "int8"}
    assert all(layer.notes == ("int8 per-channel dequantised",) for layer in fer.layers if layer.storage_dtype == "int8")


@pytest.mark.corpus
def test_fer_tflite_filters_point_the_same_way_as_the_keras_ones(corpus_path):
    keras = read_path(corpus_path("emotion_model.hdf5"))
    lite = read_path(corpus_path("emotion_model_quantized.tflite"))

    # Execution order puts a residual 1x1 conv before the parallel separable conv: match by (depth, stride, shape).
    def key(layer):
        return layer.conv_depth, layer.stride, layer.weight.shape

    pairs = list(zip(sorted(keras.layers, key=key), sorted(lite.layers, key=key)))
    assert len(pairs) == 23 == len(lite.layers)
    for a, b in pairs:
        assert a.weight.shape == b.weight.shape and a.conv_depth == b.conv_depth and a.kind == b.kind, a.name
        if a.kernel == (3, 3):  # BatchNorm folding scales each filter: its direction stays
            fa, fb = a.filters().astype(np.float64), b.filters().astype(np.float64)
            cos = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
            assert cos.min() >= 0.999, a.name
        else:  # a 1x1 filter is one number: compare whole output channels, up to BN's sign
            fa, fb = (w.reshape(w.shape[0], -1).astype(np.float64) for w in (a.weight, b.weight))
            cos = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
            assert np.abs(cos).min() >= 0.999, a.name


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.corpus
def test_truncated_tflite(corpus_path, tmp_path):
    data = corpus_path("face_landmark.tflite").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFormatError, match=r"cut\.tflite: .*(truncated|corrupt)"):
        read_path(path)


def test_random_bytes_with_tflite_extension(tmp_path):
    path = tmp_path / "noise.tflite"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match=r"noise\.tflite"):
        read_path(path)


def test_wrong_identifier_is_named(tmp_path):
    path = tmp_path / "other.tflite"
    path.write_bytes(b"\x10\x00\x00\x00XXXX" + bytes(64))
    with pytest.raises(ModelFormatError, match=r"other\.tflite: not a TFLite flatbuffer .*expected b'TFL3'"):
        read_path(path, ReadOptions(format="tflite"))


def test_empty_tflite(tmp_path):
    path = tmp_path / "empty.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"empty\.tflite: the file is empty"):
        read_path(path)


def test_header_only_tflite(tmp_path):
    path = tmp_path / "head.tflite"
    path.write_bytes(b"\x00\x10\x00\x00TFL3")
    with pytest.raises(ModelFormatError, match=r"head\.tflite: truncated"):
        read_path(path)


def test_nan_weights_are_read(tmp_path):
    kernel = np.full((2, 3, 3, 1), np.nan, np.float32)
    path = _single_op(tmp_path, tflite.BuiltinOperator.CONV_2D, T("w", kernel.shape, data=kernel.tobytes()),
                      (1, 8, 8, 1), (1, 8, 8, 2))
    (layer,) = read_path(path).layers
    assert np.isnan(layer.weight).all()
