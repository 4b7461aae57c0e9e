"""Reader for TFLite flatbuffers through the ``tflite`` schema package (no TensorFlow).

Convolution weights may be stored as float32 constants, float16 constants behind a DEQUANTIZE op,
int8/uint8 quantised constants (per tensor or per channel), or sparse constants behind DENSIFY; all of them
end up as float32 in the canonical PyTorch layout of docs/reference.md §1. Depth comes from the operator graph.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .._budget import MemoryBudget
from ..depth import longest_path_levels, with_graph_depth
from ..errors import ModelFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._registry import ReadOptions, make_layer, register_reader
from ._tflite_sparse import DimMeta, densify, dequantize

__all__ = ["TFLiteReader"]

FILE_IDENTIFIER = b"TFL3"

# tflite.TensorType -> numpy dtype of the stored values (INT4 and friends are not conv weights we know).
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}


@dataclass(frozen=True)
class _ConvSpec:
    """How one conv op stores its weight: which input, and the permutation to canonical layout."""

    weight_input: int  # index of the weight among the op's inputs
    axes: tuple[int, ...]  # np.transpose axes from the TFLite layout to the canonical one
    transposed: bool = False
    depthwise: bool = False


_CONV_OPS = {
    "CONV_2D": _ConvSpec(1, (0, 3, 1, 2)),  # [O, kh, kw, I/g] -> (O, I/g, kh, kw)
    "DEPTHWISE_CONV_2D": _ConvSpec(1, (3, 0, 1, 2), depthwise=True),  # [1, kh, kw, C*m] -> (C*m, 1, kh, kw)
    "TRANSPOSE_CONV": _ConvSpec(1, (3, 0, 1, 2), transposed=True),  # [O, kh, kw, I] -> (I, O, kh, kw)
    "CONV_3D": _ConvSpec(1, (4, 3, 0, 1, 2)),  # [kd, kh, kw, I, O] -> (O, I, kd, kh, kw)
    "CONV_3D_TRANSPOSE": _ConvSpec(1, (4, 3, 0, 1, 2), transposed=True),  # [kd, kh, kw, O, I] -> (I, O, ...)
}


def _tflite() -> Any:
    try:
        import tflite
    except ImportError as e:
        raise missing_dependency("tflite", "reading .tflite files") from e
    return tflite


# ------------------------------------------------------------------------------------------ the model
@dataclass
class _Weight:
    array: np.ndarray  # float32, TFLite layout
    storage_dtype: str
    notes: tuple[str, ...]


class _Graph:
    """One subgraph of a parsed model, with the lookups the reader needs."""

    def __init__(self, model: Any, data: bytes, index: int, op_names: list[str], budget: MemoryBudget) -> None:
        self.model, self.data, self.graph = model, data, model.Subgraphs(index)
        self.budget = budget
        self.op_names = op_names
        self.ops = [self.graph.Operators(i) for i in range(self.graph.OperatorsLength())]
        self.producer: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            for t in _indices(op.OutputsAsNumpy()):
                self.producer[t] = i

    def op_name(self, op_index: int) -> str:
        return self.op_names[self.ops[op_index].OpcodeIndex()]

    def tensor(self, index: int) -> Any:
        return self.graph.Tensors(index)

    def buffer_bytes(self, tensor: Any) -> bytes:
        return _buffer_bytes(self.model, self.data, tensor.Buffer())

    def is_constant(self, index: int) -> bool:
        # Checked per op input while building the graph: look at the lengths, never copy the data.
        buffer_index = self.tensor(index).Buffer()
        if buffer_index <= 0 or buffer_index >= self.model.BuffersLength():
            return False
        buffer = self.model.Buffers(buffer_index)
        return buffer.DataLength() > 0 or (buffer.Offset() > 1 and buffer.Size() > 0)


def _indices(array: Any) -> list[int]:
    # The flatbuffer accessors return 0 (not an empty array) for an absent vector; -1 marks an unused input.
    return [int(t) for t in np.atleast_1d(array) if int(t) >= 0] if isinstance(array, np.ndarray) else []


def _buffer_bytes(model: Any, data: bytes, index: int) -> bytes:
    if index <= 0 or index >= model.BuffersLength():
        return b""  # buffer 0 is the schema's empty sentinel
    buffer = model.Buffers(index)
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if offset > 1:  # models > 2 GB keep buffers after the flatbuffer, addressed by file offset
        if offset + size > len(data):
            raise ModelFormatError(f"buffer {index} lies past the end of the file (truncated?)")
        return data[offset:offset + size]
    raw = buffer.DataAsNumpy()
    return raw.tobytes() if isinstance(raw, np.ndarray) else b""


def _shape(tensor: Any) -> tuple[int, ...]:
    shape = tensor.ShapeAsNumpy()
    return tuple(int(s) for s in shape) if isinstance(shape, np.ndarray) else ()


def _type_name(type_code: int) -> str:
    dtype = _DTYPES.get(type_code)
    return np.dtype(dtype).name if dtype is not None else f"tensortype_{type_code}"


# ------------------------------------------------------------------------------------------ weights
def _sparse_dims(sparsity: Any) -> list[DimMeta]:
    dims = []
    for i in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(i)
        if meta.Format() == 0:
            dims.append(DimMeta(0, dense_size=int(meta.DenseSize())))
        else:
            dims.append(DimMeta(1, segments=_index_vector(meta.ArraySegmentsType(), meta.ArraySegments()),
                                indices=_index_vector(meta.ArrayIndicesType(), meta.ArrayIndices())))
    return dims


def _index_vector(kind: int, table: Any) -> np.ndarray:
    """A SparseIndexVector union (Int32Vector / Uint16Vector / Uint8Vector) as an int64 array."""
    tflite = _tflite()
    classes = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}
    if kind not in classes or table is None:
        raise ValueError(f"sparse tensor: unsupported index vector type {kind}")
    vector = classes[kind]()
    vector.Init(table.Bytes, table.Pos)
    values = vector.ValuesAsNumpy()
    return np.asarray(values if isinstance(values, np.ndarray) else [], dtype=np.int64)


def _decode_constant(g: _Graph, index: int) -> _Weight:
    """A constant tensor's values: densified if sparse, dequantised if quantised."""
    tensor = g.tensor(index)
    dtype = _DTYPES.get(tensor.Type())
    if dtype is None:
        raise ModelFormatError(f"tensor {tensor.Name()!r}: unsupported weight type {_type_name(tensor.Type())}")
    values: np.ndarray = np.frombuffer(g.buffer_bytes(tensor), dtype=dtype)
    shape, notes = _shape(tensor), []
    if any(s < 0 for s in shape):
        raise ModelFormatError(f"tensor {_text(tensor.Name())!r}: negative dimension in its shape {shape}")
    sparsity = tensor.Sparsity()
    if sparsity is not None:
        order = [int(t) for t in np.atleast_1d(sparsity.TraversalOrderAsNumpy())]
        block_map = [int(b) for b in np.atleast_1d(sparsity.BlockMapAsNumpy())] if sparsity.BlockMapLength() else []
        what = f"tensor {_text(tensor.Name())!r}: "
        values = densify(values, shape, order, block_map, _sparse_dims(sparsity),
                         check=lambda n, why: g.budget.check(n, what + why))
        notes.append("densified from sparse")
    else:
        values = values.reshape(shape)
    g.budget.claim(values.size * 4, f"tensor {_text(tensor.Name())!r} {shape} as float32")
    quant = tensor.Quantization()
    if quant is not None and quant.ScaleLength() and np.issubdtype(values.dtype, np.integer):
        scales, zeros = quant.ScaleAsNumpy(), quant.ZeroPointAsNumpy()
        values, note = dequantize(values, scales, zeros if isinstance(zeros, np.ndarray) else None,
                                  int(quant.QuantizedDimension()))
        notes.append(note)
    elif np.issubdtype(values.dtype, np.integer):
        # Without scales the integers are not the weights' values: their scale (norms) is off by 1/scale.
        notes.append(f"{np.dtype(dtype).name} weights without quantisation scales: read as the raw integers, "
                     "so magnitudes (norms) are not the model's")
    elif values.dtype == np.float16:
        notes.append("float16 widened to float32")
    return _Weight(values.astype(np.float32), np.dtype(dtype).name, tuple(notes))


def _resolve_weight(g: _Graph, index: int, hops: int = 0) -> _Weight | None:
    """The weight behind a tensor: a constant, or a constant seen through DEQUANTIZE / DENSIFY ops."""
    if g.is_constant(index):
        return _decode_constant(g, index)
    producer = g.producer.get(index)
    if producer is None or hops > 4 or g.op_name(producer) not in ("DEQUANTIZE", "DENSIFY"):
        return None  # computed at run time: not a stored filter
    inputs = _indices(g.ops[producer].InputsAsNumpy())
    return _resolve_weight(g, inputs[0], hops + 1) if inputs else None


# ------------------------------------------------------------------------------------------ conv layers
def _options(op: Any, options_class: Any) -> Any | None:
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    return options


def _stride_dilation(op: Any, name: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    tflite = _tflite()
    if name == "CONV_3D" or name == "CONV_3D_TRANSPOSE":
        o = _options(op, tflite.Conv3DOptions)
        return ((o.StrideD(), o.StrideH(), o.StrideW()),
                (o.DilationDFactor(), o.DilationHFactor(), o.DilationWFactor())) if o else (None, None)
    if name == "TRANSPOSE_CONV":
        o = _options(op, tflite.TransposeConvOptions)
        return ((o.StrideH(), o.StrideW()), (1, 1)) if o else (None, None)
    cls = tflite.DepthwiseConv2DOptions if name == "DEPTHWISE_CONV_2D" else tflite.Conv2DOptions
    o = _options(op, cls)
    return ((o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())) if o else (None, None)


def _groups(g: _Graph, op: Any, spec: _ConvSpec, weight: np.ndarray) -> int:
    """Groups from the activation input's channel count (the last NHWC dimension)."""
    if spec.transposed:
        return 1
    inputs = _indices(op.InputsAsNumpy())
    channels = _shape(g.tensor(inputs[0]))[-1:] if inputs else ()
    if spec.depthwise:
        if channels and channels[0] > 0:
            return channels[0]
        options = _options(op, _tflite().DepthwiseConv2DOptions)
        multiplier = max(int(options.DepthMultiplier()), 1) if options else 1
        return weight.shape[-1] // multiplier
    per_group = weight.shape[-1 if len(spec.axes) == 4 else -2]
    if channels and channels[0] > 0 and per_group and channels[0] % per_group == 0:
        return channels[0] // per_group
    return 1


def _layer_name(g: _Graph, op: Any, op_index: int, name: str) -> str:
    outputs = _indices(op.OutputsAsNumpy())
    tensor_name = g.tensor(outputs[0]).Name() if outputs else None
    return tensor_name.decode("utf-8", "replace") if tensor_name else f"{name}_{op_index}"


def _conv_layer(g: _Graph, op_index: int) -> ConvLayer | None:
    name = g.op_name(op_index)
    spec = _CONV_OPS[name]
    op = g.ops[op_index]
    inputs = list(np.atleast_1d(op.InputsAsNumpy()))
    if len(inputs) <= spec.weight_input or int(inputs[spec.weight_input]) < 0:
        return None
    weight = _resolve_weight(g, int(inputs[spec.weight_input]))
    if weight is None or weight.array.ndim != len(spec.axes):
        return None
    stride, dilation = _stride_dilation(op, name)
    return make_layer(
        _layer_name(g, op, op_index, name), name, np.transpose(weight.array, spec.axes),
        groups=_groups(g, op, spec, weight.array), transposed=spec.transposed, storage_dtype=weight.storage_dtype,
        stride=stride, dilation=dilation, notes=weight.notes,
    )


# ------------------------------------------------------------------------------------------ depth
def _op_predecessors(g: _Graph) -> dict[Hashable, list[Hashable]]:
    """Operator graph: an op depends on the ops producing its non-constant inputs.

    Ops whose inputs are all constant (DEQUANTIZE / DENSIFY of stored weights) are constant folding, not
    part of the data flow; their outputs count as constants too. Operators are stored in execution order,
    so one pass suffices.
    """
    constant: set[int] = set()
    preds: dict[Hashable, list[Hashable]] = {}
    for i, op in enumerate(g.ops):
        inputs = _indices(op.InputsAsNumpy())
        dynamic = [t for t in inputs if t not in constant and not g.is_constant(t)]
        if inputs and not dynamic:
            constant.update(_indices(op.OutputsAsNumpy()))
            continue
        preds[i] = [g.producer[t] for t in dynamic if t in g.producer]
    return preds


def _read_layers(g: _Graph) -> tuple[ConvLayer, ...]:
    levels = longest_path_levels(_op_predecessors(g))
    layers, op_levels = [], []
    for i in range(len(g.ops)):
        if g.op_name(i) in _CONV_OPS:
            layer = _conv_layer(g, i)
            if layer is not None:
                layers.append(layer)
                op_levels.append(levels.get(i))
    return with_graph_depth(layers, op_levels)


# ------------------------------------------------------------------------------------------ model info
def _op_names(model: Any) -> list[str]:
    from tflite.utils import BUILTIN_OPCODE2NAME

    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Schema v3a moved codes >= 127 to builtin_code; deprecated_builtin_code keeps the small ones.
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == 32:  # CUSTOM
            custom = code.CustomCode()
            names.append(custom.decode("utf-8", "replace") if custom else "CUSTOM")
        else:
            names.append(BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _n_parameters(model: Any, data: bytes) -> int:
    """Values of all constant tensors, counting each buffer once (tensors may share buffers)."""
    sizes: dict[int, int] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            shape = _shape(tensor)
            if _buffer_bytes(model, data, tensor.Buffer()) and all(d >= 0 for d in shape):
                sizes[tensor.Buffer()] = max(sizes.get(tensor.Buffer(), 0), int(np.prod(shape, dtype=object)))
    return sum(sizes.values())


def _parse(path: Path, data: bytes) -> Any:
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelFormatError(
            f"{path}: not a TFLite flatbuffer (file identifier {data[4:8]!r}, expected {FILE_IDENTIFIER!r})"
        )
    root = int.from_bytes(data[:4], "little")
    if root + 4 > len(data):
        raise ModelFormatError(f"{path}: truncated TFLite file (root table at {root}, file is {len(data)} bytes)")
    model = _tflite().Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelFormatError(f"{path}: TFLite model without any subgraph")
    return model


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read(path: Path, data: bytes, budget: MemoryBudget) -> ModelRecord:
    model = _parse(path, data)
    op_names = _op_names(model)
    graph = _Graph(model, data, 0, op_names, budget)
    layers = _read_layers(graph)
    op_counts: Counter[str] = Counter()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        op_counts.update(op_names[sub.Operators(i).OpcodeIndex()] for i in range(sub.OperatorsLength()))
    notes = () if model.SubgraphsLength() == 1 else (
        f"{model.SubgraphsLength() - 1} further subgraphs (control flow) not searched for convolutions",)
    description = model.Description()
    info = ModelInfo(
        source=str(path), format="tflite", path=str(path),
        producer=description.decode("utf-8", "replace") if description else None,
        opset=int(model.Version()), op_counts=MappingProxyType(dict(op_counts)),
        n_parameters=_n_parameters(model, data), notes=notes,
    )
    return ModelRecord(info=info, layers=layers)


# What the flatbuffer accessors raise when offsets point past the end of a truncated or corrupt file.
_CORRUPT: tuple[type[BaseException], ...] = (IndexError, ValueError, TypeError, OverflowError, struct.error)


class TFLiteReader:
    """TFLite flatbuffers (``.tflite``)."""

    format: str = "tflite"
    extensions: tuple[str, ...] = (".tflite",)
    description: str = "TensorFlow Lite flatbuffer (.tflite): float32, float16, int8 and sparse weights"

    def sniff(self, path: Path, head: bytes) -> bool:
        """The flatbuffer file identifier "TFL3" at bytes 4..8."""
        return head[4:8] == FILE_IDENTIFIER

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        """Read a .tflite file; raises ModelFormatError naming the file when it is truncated or corrupt."""
        data = path.read_bytes()
        try:
            return _read(path, data, MemoryBudget.for_file(path, options.max_memory))
        except ModelFormatError as e:
            if str(path) in str(e):
                raise
            raise ModelFormatError(f"{path}: {e}") from e
        except _CORRUPT as e:
            raise ModelFormatError(f"{path}: truncated or corrupt TFLite flatbuffer ({e})") from e


register_reader(TFLiteReader())
