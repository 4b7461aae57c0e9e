"""Reader for ONNX models (``.onnx``): every Conv-like node, its constant weight and its graph depth.

Weights are found wherever exporters put them: initializers, ``Constant`` nodes (paddle2onnx writes
no initializers at all), behind ``Identity`` / ``Cast`` / ``DequantizeLinear`` chains, and in the
enclosing graphs of ``If`` / ``Loop`` / ``Scan`` bodies. Quantised weights (``QLinearConv``,
``ConvInteger``, ``DequantizeLinear``) are dequantised; the stored dtype is kept in the layer record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..depth import longest_path_levels, with_graph_depth
from ..errors import ModelFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._registry import ReadOptions, make_layer, register_reader

if TYPE_CHECKING:
    import onnx

__all__ = ["OnnxReader"]

_DEFAULT_DOMAINS = ("", "ai.onnx")
# op type -> (index of the weight input, transposed layout, kind of quantisation)
_CONV_OPS: dict[str, tuple[int, bool, str | None]] = {
    "Conv": (1, False, None),
    "FusedConv": (1, False, None),  # onnxruntime's Conv + activation: same weight layout
    "ConvTranspose": (1, True, None),
    "ConvInteger": (1, False, "integer"),
    "QLinearConv": (3, False, "qlinear"),
}
_PASS_THROUGH = {"Identity", "Cast", "DequantizeLinear"}  # weight producers we follow to a constant
# Nodes whose output is not a function of their inputs: never constant, even on constant inputs.
_NONDETERMINISTIC = {"RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"}
_MAX_CHAIN = 32  # longest Identity/Cast/DequantizeLinear chain we follow (guards against cycles)
# ModelProto field tags that may follow ir_version: producer_name, producer_version, domain,
# model_version (a varint, hence 0x28), doc_string, graph, opset_import, metadata_props.
_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}
_MAX_IR_VERSION = 64  # released IR versions are 1..11; anything far above is not ONNX


@dataclass(frozen=True)
class _Const:
    """A resolved constant weight: its value and how it was obtained."""

    array: np.ndarray
    storage_dtype: str  # dtype of the tensor as stored in the file
    notes: tuple[str, ...] = ()


@dataclass
class _Scope:
    """Names visible inside one graph; outer-scope names resolve through ``parent``."""

    graph: onnx.GraphProto
    parent: _Scope | None
    initializers: dict[str, Any] = field(init=False)
    producers: dict[str, Any] = field(init=False)  # output name -> NodeProto
    constants: set[str] = field(init=False)  # names whose value is known without running the model

    def __post_init__(self) -> None:
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.initializers.update({t.values.name: t for t in self.graph.sparse_initializer})
        self.producers = {out: node for node in self.graph.node for out in node.output if out}
        self.constants = _constant_names(self.graph, self.initializers, self.parent)

    def find(self, name: str) -> tuple[Any, Any] | None:
        """(initializer or None, producing node or None) of the closest scope that defines ``name``."""
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.initializers:
                return scope.initializers[name], None
            if name in scope.producers:
                return None, scope.producers[name]
            scope = scope.parent
        return None

    def is_constant(self, name: str) -> bool:
        """Whether ``name`` is constant here or in an enclosing graph (ONNX names are never shadowed)."""
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.constants:
                return True
            scope = scope.parent
        return False


@dataclass
class _Walk:
    """What one pass over the model collects."""

    layers: list[ConvLayer] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    op_counts: Counter[str] = field(default_factory=Counter)
    n_parameters: int = 0
    notes: list[str] = field(default_factory=list)
    used_names: set[str] = field(default_factory=set)


class OnnxReader:
    """Reads ONNX protobuf files, with external data and control-flow subgraphs."""

    format = "onnx"
    extensions = (".onnx",)
    description = "ONNX model (Conv, ConvTranspose, ConvInteger, QLinearConv; external data, subgraphs)"

    def sniff(self, path: Path, head: bytes) -> bool:
        """True when ``head`` starts like a serialised ModelProto: ir_version, then a ModelProto field."""
        if len(head) < 3 or head[0] != 0x08:
            return False
        ir_version, pos = _read_varint(head, 1)
        if ir_version is None or not 1 <= ir_version <= _MAX_IR_VERSION or pos >= len(head):
            return False
        return head[pos] in _NEXT_TAGS

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        """Read every convolution of an ONNX file into a :class:`ModelRecord`.

        Parameters
        ----------
        path : Path
            The ``.onnx`` file; external data files are looked up in its directory.
        options : ReadOptions
            Unused: ONNX loading runs no untrusted code.

        Examples
        --------
        >>> record = OnnxReader().read(Path("320n.onnx"), ReadOptions())  # doctest: +SKIP
        >>> len(record.layers_2d)  # doctest: +SKIP
        64
        """
        model = _load_model(path)
        walk = _Walk()
        _walk_graph(model.graph, None, 0, walk, context="")
        info = ModelInfo(
            source=str(path),
            format=self.format,
            path=str(path),
            producer=model.producer_name or None,
            producer_version=model.producer_version or None,
            opset=_default_opset(model),
            op_counts=dict(walk.op_counts),
            n_parameters=walk.n_parameters,
            notes=tuple(walk.notes),
        )
        return ModelRecord(info=info, layers=with_graph_depth(walk.layers, walk.levels))


# --- loading -------------------------------------------------------------------------------------------


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise missing_dependency("onnx", "reading .onnx files") from e
    return onnx


def _load_model(path: Path) -> onnx.ModelProto:
    """Parse the protobuf, check it holds a graph, then pull in external data from the model's folder."""
    onnx = _import_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError; onnx adds its own errors
        detail = f"{type(e).__name__}: {str(e).strip() or 'no detail'}"
        raise ModelFormatError(
            f"{path}: not a valid ONNX file, the protobuf could not be parsed ({detail}); "
            "the file is truncated, corrupt or not ONNX - download or export it again"
        ) from e
    if not model.HasField("graph"):
        raise ModelFormatError(
            f"{path}: the ONNX model has no graph, so there are no layers to read; "
            "the file is not a complete ONNX model (export it again with its graph)"
        )
    _load_external_data(model, path)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Load tensors stored next to the model; a missing file is named in the error."""
    onnx = _import_onnx()
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    external = [t for t in _iter_tensors(model.graph) if uses_external_data(t)]
    if not external:
        return
    base = path.parent
    for tensor in external:
        location = ExternalDataInfo(tensor).location
        if not (base / location).is_file():
            raise ModelFormatError(
                f"{path}: tensor {tensor.name!r} is stored in the external data file {location!r}, which is "
                f"missing from {base}; copy it next to the model file"
            )
    try:
        load_external_data_for_model(model, str(base))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise ModelFormatError(f"{path}: cannot load the model's external data from {base}: {e}") from e


def _iter_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every dense tensor stored in a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in _subgraphs_of_attr(attr):
                yield from _iter_tensors(sub)


def _default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    return None


def _read_varint(data: bytes, pos: int) -> tuple[int | None, int]:
    """Decode a protobuf varint at ``pos``; (None, pos) when it runs past the data or 10 bytes."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + 10)):
        value |= (data[i] & 0x7F) << shift
        shift += 7
        if not data[i] & 0x80:
            return value, i + 1
    return None, pos


# --- graph walking -------------------------------------------------------------------------------------


def _subgraphs_of_attr(attr: Any) -> list[Any]:
    if attr.HasField("g"):
        return [attr.g]
    return list(attr.graphs)


def _subgraphs(node: Any) -> list[tuple[str, Any]]:
    return [(attr.name, g) for attr in node.attribute for g in _subgraphs_of_attr(attr)]


def _constant_names(graph: Any, initializers: dict[str, Any], parent: _Scope | None) -> set[str]:
    """Names whose value follows from stored tensors alone (one pass: ONNX nodes are topologically sorted)."""
    names = set(initializers)

    def known(name: str) -> bool:
        return not name or name in names or (parent is not None and parent.is_constant(name))

    for node in graph.node:
        if node.op_type == "Constant":
            names.update(node.output)
        elif (node.input and node.op_type not in _NONDETERMINISTIC and not _subgraphs(node)
              and all(known(i) for i in node.input)):
            names.update(o for o in node.output if o)
    return names


def _free_names(graph: Any) -> set[str]:
    """Names a subgraph reads from its enclosing graphs: they are implicit inputs of the node holding it."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(i for i in node.input if i)
        for _, sub in _subgraphs(node):
            used |= _free_names(sub)
        defined.update(node.output)
    return used - defined


def _graph_levels(graph: Any, scope: _Scope) -> list[int]:
    """Longest-path level of each node; constant inputs make no edge (a weight is not a predecessor)."""
    producer = {out: idx for idx, node in enumerate(graph.node) for out in node.output if out}
    preds: dict[int, list[int]] = {}
    for idx, node in enumerate(graph.node):
        inputs = set(node.input)
        for _, sub in _subgraphs(node):
            inputs |= _free_names(sub)
        preds[idx] = [producer[name] for name in inputs if name in producer and name not in scope.constants]
    levels = longest_path_levels(preds)
    return [int(levels[idx]) for idx in range(len(graph.node))]


def _walk_graph(graph: Any, parent: _Scope | None, base_level: int, walk: _Walk, context: str) -> None:
    """Collect layers, op counts and parameter counts of a graph and, recursively, of its subgraphs.

    A node inside a subgraph gets level = level of the node that holds the subgraph + its own level
    inside the subgraph: the body runs where its parent node runs, and its own chain adds depth on top.
    """
    scope = _Scope(graph, parent)
    walk.n_parameters += sum(_n_values(t) for t in graph.initializer)
    walk.n_parameters += sum(_n_values(t.values) for t in graph.sparse_initializer)
    for node, level in zip(graph.node, _graph_levels(graph, scope)):
        level += base_level
        walk.op_counts[node.op_type] += 1
        if node.op_type == "Constant":
            walk.n_parameters += _constant_node_size(node)
        if node.op_type in _CONV_OPS:
            layer = _conv_layer(node, scope, walk, context)
            if layer is not None:
                walk.layers.append(layer)
                walk.levels.append(level)
        for attr_name, sub in _subgraphs(node):
            where = f"subgraph {attr_name!r} of {node.op_type} node {node.name or node.output[0]!r}"
            _walk_graph(sub, scope, level, walk, context=where)


def _n_values(tensor: Any) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64))


def _constant_node_size(node: Any) -> int:
    for attr in node.attribute:
        if attr.name in ("value", "sparse_value"):
            return _n_values(attr.t if attr.name == "value" else attr.sparse_tensor.values)
        if attr.name in ("value_floats", "value_ints", "value_strings"):
            return len(attr.floats) + len(attr.ints) + len(attr.strings)
        if attr.name in ("value_float", "value_int", "value_string"):
            return 1
    return 0


# --- weights -------------------------------------------------------------------------------------------


def _conv_layer(node: Any, scope: _Scope, walk: _Walk, context: str) -> ConvLayer | None:
    """The layer of one conv node, or None (with a model note) when its weight is not a constant."""
    weight_index, transposed, quant = _CONV_OPS[node.op_type]
    label = node.name or (node.input[weight_index] if len(node.input) > weight_index else node.output[0])
    if len(node.input) <= weight_index or not node.input[weight_index]:
        raise ModelFormatError(f"{node.op_type} node {label!r} has no weight input; the graph is malformed")
    weight_name = node.input[weight_index]
    const = _resolve(weight_name, scope)
    if const is not None and quant is not None:
        const = _dequantise_conv_input(node, scope, const, quant)
    if const is None:
        walk.notes.append(_runtime_weight_note(node, label, weight_name, scope))
        return None
    attrs = {a.name: a for a in node.attribute}
    ndim = const.array.ndim - 2
    name = _unique(label, walk.used_names)
    notes = const.notes + ((f"in {context}",) if context else ())
    try:
        return make_layer(
            name, node.op_type, const.array,
            groups=_int_attr(attrs, "group", 1),
            transposed=transposed,
            storage_dtype=const.storage_dtype,
            stride=_ints_attr(attrs, "strides", ndim),
            dilation=_ints_attr(attrs, "dilations", ndim),
            notes=notes,
        )
    except ValueError as e:
        raise ModelFormatError(f"{node.op_type} node {label!r}: {e}") from e


def _resolve(name: str, scope: _Scope, hops: int = 0) -> _Const | None:
    """The constant value behind a tensor name, following Identity/Cast/DequantizeLinear; None if runtime."""
    found = scope.find(name) if name and hops <= _MAX_CHAIN else None
    if found is None:
        return None
    tensor, node = found
    if tensor is not None:
        array = _tensor_to_array(tensor)
        return _Const(array, str(array.dtype))
    if node.op_type == "Constant":
        array = _constant_node_value(node)
        return None if array is None else _Const(array, str(array.dtype))
    if node.op_type not in _PASS_THROUGH or not node.input:
        return None
    source = _resolve(node.input[0], scope, hops + 1)
    if source is None or node.op_type == "Identity":
        return source
    if node.op_type == "Cast":
        return _cast(source, node)
    scale = _resolve(node.input[1], scope, hops + 1) if len(node.input) > 1 else None
    if scale is None:
        return None
    zero = _resolve(node.input[2], scope, hops + 1) if len(node.input) > 2 and node.input[2] else None
    attrs = {a.name: a for a in node.attribute}
    return _dequantise(source, scale, zero, _int_attr(attrs, "axis", 1), _int_attr(attrs, "block_size", 0))


def _cast(source: _Const, node: Any) -> _Const:
    from onnx.helper import tensor_dtype_to_np_dtype

    to = next((a.i for a in node.attribute if a.name == "to"), None)
    array = source.array if to is None else source.array.astype(tensor_dtype_to_np_dtype(to))
    note = f"cast from {source.storage_dtype}" if str(array.dtype) != source.storage_dtype else ""
    return _Const(array, source.storage_dtype, source.notes + ((note,) if note else ()))


def _dequantise_conv_input(node: Any, scope: _Scope, weight: _Const, quant: str) -> _Const | None:
    """QLinearConv: (w - w_zero_point) * w_scale. ConvInteger has no scale: w - w_zero_point."""
    if quant == "qlinear":
        scale = _resolve(node.input[4], scope) if len(node.input) > 4 else None
        zero = _resolve(node.input[5], scope) if len(node.input) > 5 and node.input[5] else None
        if scale is None:
            return None
    else:
        one = np.ones((), np.float32)
        scale = _Const(one, "float32")
        zero = _resolve(node.input[3], scope) if len(node.input) > 3 and node.input[3] else None
    const = _dequantise(weight, scale, zero, axis=0, block_size=0)
    if const is not None and quant == "integer":
        note = "ConvInteger: zero point removed, no scale (the node carries none)"
        const = _Const(const.array, const.storage_dtype, const.notes + (note,))
    return const


def _dequantise(weight: _Const, scale: _Const, zero: _Const | None, axis: int, block_size: int) -> _Const | None:
    """(w - zero_point) * scale, per tensor, per channel along ``axis`` or per block (opset 21)."""
    w = weight.array
    axis = axis % max(w.ndim, 1)
    s = _broadcast_param(scale.array, w, axis, block_size)
    z = _broadcast_param(zero.array, w, axis, block_size) if zero is not None else np.zeros((), np.float32)
    if s is None or z is None:
        return None
    granularity = "per-tensor" if scale.array.size == 1 else ("per-block" if block_size else "per-channel")
    value = (w.astype(np.float32) - z.astype(np.float32)) * s.astype(np.float32)
    note = f"dequantised {weight.storage_dtype} {granularity}"
    return _Const(value, weight.storage_dtype, weight.notes + (note,))


def _broadcast_param(param: np.ndarray, w: np.ndarray, axis: int, block_size: int) -> np.ndarray | None:
    """Shape a scale / zero point so that it broadcasts against ``w``; None if it cannot."""
    if param.size == 1:
        return param.reshape(())
    if block_size:
        return np.repeat(param, block_size, axis=axis).take(range(w.shape[axis]), axis=axis)
    if param.ndim == 1 and param.shape[0] == w.shape[axis]:
        shape = [1] * w.ndim
        shape[axis] = -1
        return param.reshape(shape)
    return None


def _tensor_to_array(tensor: Any) -> np.ndarray:
    from onnx.numpy_helper import to_array

    if hasattr(tensor, "values"):  # SparseTensorProto
        return _sparse_to_array(tensor)
    return to_array(tensor)


def _sparse_to_array(sparse: Any) -> np.ndarray:
    from onnx.numpy_helper import to_array

    values, indices, dims = to_array(sparse.values), to_array(sparse.indices), tuple(sparse.dims)
    dense = np.zeros(int(np.prod(dims, dtype=np.int64)), dtype=values.dtype)
    flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
    dense[flat] = values
    return dense.reshape(dims)


def _constant_node_value(node: Any) -> np.ndarray | None:
    from onnx.helper import get_attribute_value

    for attr in node.attribute:
        if attr.name == "value":
            return _tensor_to_array(attr.t)
        if attr.name == "sparse_value":
            return _sparse_to_array(attr.sparse_tensor)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(get_attribute_value(attr))
    return None


def _runtime_weight_note(node: Any, label: str, weight_name: str, scope: _Scope) -> str:
    found = scope.find(weight_name)
    origin = "a graph input"
    if found is not None and found[1] is not None:
        origin = f"a {found[1].op_type} node"
    return (f"{node.op_type} node {label!r} skipped: its weight {weight_name!r} is computed at runtime by "
            f"{origin}, not stored as a constant")


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        candidate = f"{name}_{n}"
        n += 1
    used.add(candidate)
    return candidate


def _int_attr(attrs: dict[str, Any], name: str, default: int) -> int:
    return int(attrs[name].i) if name in attrs else default


def _ints_attr(attrs: dict[str, Any], name: str, ndim: int) -> tuple[int, ...]:
    return tuple(int(v) for v in attrs[name].ints) if name in attrs else (1,) * ndim


register_reader(OnnxReader())
