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

from .._budget import MemoryBudget
from ..depth import longest_path_levels, with_graph_depth
from ..errors import ModelFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._onnx_proto import NP_DTYPES, dims_of, model_proto, text, to_array
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
_MAX_CHAIN = 32  # longest Identity/Cast/DequantizeLinear chain we follow (guards against cycles and bombs)
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
    budget: MemoryBudget
    initializers: dict[str, Any] = field(init=False)
    producers: dict[str, Any] = field(init=False)  # output name -> NodeProto
    constants: set[str] = field(init=False)  # names whose value is known without running the model
    resolved: dict[str, _Const | None] = field(init=False, default_factory=dict)  # memo of _resolve

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
    next_suffix: dict[str, int] = field(default_factory=dict)  # per base name: where _unique resumes counting


class OnnxReader:
    """Reads ONNX protobuf files, with external data and control-flow subgraphs."""

    format = "onnx"
    extensions: tuple[str, ...] = (".onnx",)
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
            ``max_memory`` bounds what the declared tensors may allocate (ONNX loading runs no code).

        Examples
        --------
        >>> record = OnnxReader().read(Path("320n.onnx"), ReadOptions())  # doctest: +SKIP
        >>> len(record.layers_2d)  # doctest: +SKIP
        64
        """
        budget = MemoryBudget.for_file(path, options.max_memory)
        model = _load_model(path, budget)
        walk = _Walk()
        _walk_graph(model.graph, None, 0, walk, context="", budget=budget)
        info = ModelInfo(
            source=str(path),
            format=self.format,
            path=str(path),
            producer=text(model.producer_name) or None,
            producer_version=text(model.producer_version) or None,
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


def _load_model(path: Path, budget: MemoryBudget) -> onnx.ModelProto:
    """Parse the protobuf, check it holds a graph, then pull in external data from the model's folder."""
    try:
        model = model_proto()()
        model.ParseFromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError (and, in some builds, others)
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
    _load_external_data(model, path, budget)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path, budget: MemoryBudget) -> None:
    """Load tensors stored next to the model; a missing file is named in the error."""
    external = [t for t in _iter_tensors(model.graph) if t.data_location == 1]  # TensorProto.EXTERNAL
    if not external:
        return
    onnx = _import_onnx()  # the full package only for this rare case
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model

    base = path.parent
    for location in {ExternalDataInfo(t).location for t in external}:
        if (base / location).is_file():
            budget.add_file((base / location).stat().st_size)
    for tensor in external:
        location = ExternalDataInfo(tensor).location
        if not (base / location).is_file():
            raise ModelFormatError(
                f"{path}: tensor {text(tensor.name)!r} is stored in the external data file {location!r}, which is "
                f"missing from {base}; copy it next to the model file"
            )
        dims = dims_of(tensor, f"tensor {text(tensor.name)!r}", path)
        itemsize = np.dtype(NP_DTYPES[tensor.data_type][0]).itemsize if tensor.data_type in NP_DTYPES else 16
        budget.claim(int(np.prod(dims, dtype=object)) * itemsize, f"external tensor {text(tensor.name)!r} {dims}")
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


def _walk_graph(graph: Any, parent: _Scope | None, base_level: int, walk: _Walk, context: str,
                budget: MemoryBudget) -> None:
    """Collect layers, op counts and parameter counts of a graph and, recursively, of its subgraphs.

    A node inside a subgraph gets level = level of the node that holds the subgraph + its own level
    inside the subgraph: the body runs where its parent node runs, and its own chain adds depth on top.
    """
    scope = _Scope(graph, parent, budget)
    walk.n_parameters += sum(_n_values(t, budget.path) for t in graph.initializer)
    walk.n_parameters += sum(_n_values(t.values, budget.path) for t in graph.sparse_initializer)
    for node, level in zip(graph.node, _graph_levels(graph, scope)):
        level += base_level
        walk.op_counts[text(node.op_type)] += 1
        if node.op_type == "Constant":
            walk.n_parameters += _constant_node_size(node, budget.path)
        if node.op_type in _CONV_OPS:
            layer = _conv_layer(node, scope, walk, context)
            if layer is not None:
                walk.layers.append(layer)
                walk.levels.append(level)
        for attr_name, sub in _subgraphs(node):
            where = f"subgraph {text(attr_name)!r} of {text(node.op_type)} node {_label(node)!r}"
            _walk_graph(sub, scope, level, walk, context=where, budget=budget)


def _label(node: Any) -> str:
    return text(node.name or (node.output[0] if node.output else "?"))


def _n_values(tensor: Any, path: Path) -> int:
    n = 1
    for d in dims_of(tensor, f"tensor {text(tensor.name)!r}", path):
        n *= d
    return n


def _constant_node_size(node: Any, path: Path) -> int:
    for attr in node.attribute:
        if attr.name in ("value", "sparse_value"):
            return _n_values(attr.t if attr.name == "value" else attr.sparse_tensor.values, path)
        if attr.name in ("value_floats", "value_ints", "value_strings"):
            return len(attr.floats) + len(attr.ints) + len(attr.strings)
        if attr.name in ("value_float", "value_int", "value_string"):
            return 1
    return 0


# --- weights -------------------------------------------------------------------------------------------


def _conv_layer(node: Any, scope: _Scope, walk: _Walk, context: str) -> ConvLayer | None:
    """The layer of one conv node, or None (with a model note) when its weight is not a constant."""
    weight_index, transposed, quant = _CONV_OPS[node.op_type]
    label = text(node.name or (node.input[weight_index] if len(node.input) > weight_index else
                               (node.output[0] if node.output else "?")))
    if len(node.input) <= weight_index or not node.input[weight_index]:
        raise ModelFormatError(f"{node.op_type} node {label!r} has no weight input; the graph is malformed")
    weight_name = node.input[weight_index]
    const = _resolve_top(weight_name, scope, walk, label)
    if const is not None and quant is not None:
        const = _dequantise_conv_input(node, scope, const, quant)
    if const is None:
        walk.notes.append(_runtime_weight_note(node, label, weight_name, scope))
        return None
    attrs = {a.name: a for a in node.attribute}
    ndim = const.array.ndim - 2
    name = _unique(label, walk.used_names, walk.next_suffix)
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


class _TooDeep(Exception):
    """A pass-through chain longer than _MAX_CHAIN: abandon this weight (nothing on the way is memoised)."""


def _resolve_top(name: str, scope: _Scope, walk: _Walk, label: str) -> _Const | None:
    try:
        return _resolve(name, scope)
    except _TooDeep:
        walk.notes.append(f"node {label!r} skipped: its weight sits behind more than {_MAX_CHAIN} "
                          "Identity/Cast/DequantizeLinear nodes")
        return None


def _resolve(name: str, scope: _Scope, hops: int = 0) -> _Const | None:
    """The constant value behind a tensor name, following Identity/Cast/DequantizeLinear; None if runtime.

    Memoised per scope: each value is computed once, so shared chains (a DequantizeLinear whose scale,
    zero point and input all lead back through the same nodes) cost time linear in the graph, not 3^depth.
    """
    if not name:
        return None
    if hops > _MAX_CHAIN:
        raise _TooDeep
    owner: _Scope | None = scope
    while owner is not None and name not in owner.initializers and name not in owner.producers:
        owner = owner.parent
    if owner is None:
        return None
    if name not in owner.resolved:
        owner.resolved[name] = _compute(name, owner, hops)
    return owner.resolved[name]


def _compute(name: str, scope: _Scope, hops: int) -> _Const | None:
    found = scope.find(name)
    if found is None:
        return None
    tensor, node = found
    if tensor is not None:
        array, dtype = _tensor_to_array(tensor, scope.budget, f"initializer {text(name)!r}")
        return _Const(array, dtype)
    if node.op_type == "Constant":
        value = _constant_node_value(node, scope.budget)
        return None if value is None else _Const(*value)
    if node.op_type not in _PASS_THROUGH or not node.input:
        return None
    source = _resolve(node.input[0], scope, hops + 1)
    if source is None or node.op_type == "Identity":
        return source
    if node.op_type == "Cast":
        return _cast(source, node, scope.budget)
    scale = _resolve(node.input[1], scope, hops + 1) if len(node.input) > 1 else None
    if scale is None:
        return None
    zero = _resolve(node.input[2], scope, hops + 1) if len(node.input) > 2 and node.input[2] else None
    attrs = {a.name: a for a in node.attribute}
    return _dequantise(source, scale, zero, _int_attr(attrs, "axis", 1), _int_attr(attrs, "block_size", 0),
                       scope.budget, f"DequantizeLinear node {_label(node)!r}")


def _cast(source: _Const, node: Any, budget: MemoryBudget) -> _Const | None:
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    if to is not None and to not in NP_DTYPES:
        return None  # a cast to float8 / int4 / string: not a weight we can read
    target = np.float32 if to == 16 else (None if to is None else np.dtype(NP_DTYPES[to][0]))  # bf16 -> float32
    if target is not None:
        budget.claim(source.array.size * np.dtype(target).itemsize, f"Cast node {_label(node)!r}")
    array = source.array if target is None else source.array.astype(target)
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
    const = _dequantise(weight, scale, zero, axis=0, block_size=0, budget=scope.budget,
                        what=f"{text(node.op_type)} node {_label(node)!r}")
    if const is not None and quant == "integer":
        note = "ConvInteger: zero point removed, no scale (the node carries none)"
        const = _Const(const.array, const.storage_dtype, const.notes + (note,))
    return const


def _dequantise(weight: _Const, scale: _Const, zero: _Const | None, axis: int, block_size: int,
                budget: MemoryBudget, what: str) -> _Const | None:
    """(w - zero_point) * scale, per tensor, per channel along ``axis`` or per block (opset 21)."""
    w = weight.array
    if w.ndim == 0 or not -w.ndim <= axis < w.ndim or block_size < 0:
        return None
    axis = axis % w.ndim
    if block_size and (scale.array.ndim != w.ndim or scale.array.shape[axis] * block_size < w.shape[axis]
                       or block_size > w.shape[axis]):
        raise ModelFormatError(f"{budget.path}: {what}: block_size {block_size} does not match the weight shape "
                               f"{w.shape} and scale shape {scale.array.shape} on axis {axis}; the file is corrupt")
    budget.claim(3 * w.size * 4, f"{what} (dequantising a weight of shape {w.shape})")
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


def _tensor_to_array(tensor: Any, budget: MemoryBudget, what: str) -> tuple[np.ndarray, str]:
    if hasattr(tensor, "values"):  # SparseTensorProto
        return _sparse_to_array(tensor, budget, what)
    return to_array(tensor, budget, what)


def _sparse_to_array(sparse: Any, budget: MemoryBudget, what: str) -> tuple[np.ndarray, str]:
    """Densify a SparseTensorProto after checking its dense size against the budget and its indices' range."""
    dims = dims_of(sparse, what, budget.path)
    numel = 1
    for d in dims:
        numel *= d
    values, dtype = to_array(sparse.values, budget, f"{what} (values)")
    budget.claim(numel * values.dtype.itemsize, f"{what}: densifying a sparse tensor of shape {dims}")
    indices, _ = to_array(sparse.indices, budget, f"{what} (indices)")
    indices = indices.astype(np.int64, copy=False)
    if indices.ndim == 2 and indices.shape[1] == len(dims) and all(d > 0 for d in dims):
        bad = (indices < 0) | (indices >= np.asarray(dims, np.int64))
        indices = indices if bad.any() else np.ravel_multi_index(tuple(indices.T), dims)
    if indices.ndim != 1 or indices.shape[0] != values.size or (indices.size and (
            indices.min() < 0 or indices.max() >= numel)):
        raise ModelFormatError(f"{budget.path}: {what}: the sparse tensor's indices do not fit its shape {dims}; "
                               "the file is corrupt")
    dense = np.zeros(numel, dtype=values.dtype)
    dense[indices] = values.reshape(-1)
    return dense.reshape(dims), dtype


def _constant_node_value(node: Any, budget: MemoryBudget) -> tuple[np.ndarray, str] | None:
    what = f"Constant node {_label(node)!r}"
    for attr in node.attribute:
        if attr.name == "value":
            return _tensor_to_array(attr.t, budget, what)
        if attr.name == "sparse_value":
            return _sparse_to_array(attr.sparse_tensor, budget, what)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            raw = {"value_float": attr.f, "value_floats": list(attr.floats), "value_int": attr.i,
                   "value_ints": list(attr.ints)}[attr.name]
            array = np.asarray(raw, np.float32 if "float" in attr.name else np.int64)
            return array, str(array.dtype)
    return None


def _runtime_weight_note(node: Any, label: str, weight_name: str, scope: _Scope) -> str:
    found = scope.find(weight_name)
    origin = "a graph input"
    if found is not None and found[1] is not None:
        origin = f"a {text(found[1].op_type)} node"
    return (f"{text(node.op_type)} node {label!r} skipped: its weight {text(weight_name)!r} is computed at "
            f"runtime by {origin}, not stored as a constant")


def _unique(name: str, used: set[str], next_suffix: dict[str, int]) -> str:
    """``name``, else ``name_1``, ``name_2``, ...: counting resumes where it stopped, so 10^5 nodes sharing one
    name cost linear time."""
    candidate, n = name, next_suffix.get(name, 1)
    if candidate in used:
        candidate = f"{name}_{n}"
        while candidate in used:
            n += 1
            candidate = f"{name}_{n}"
        next_suffix[name] = n + 1
    used.add(candidate)
    return candidate


def _int_attr(attrs: dict[str, Any], name: str, default: int) -> int:
    return int(attrs[name].i) if name in attrs else default


def _ints_attr(attrs: dict[str, Any], name: str, ndim: int) -> tuple[int, ...]:
    return tuple(int(v) for v in attrs[name].ints) if name in attrs else (1,) * ndim


register_reader(OnnxReader())
