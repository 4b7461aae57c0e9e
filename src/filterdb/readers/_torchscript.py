"""TorchScript archives (``torch.jit.save``), read without running them.

A TorchScript archive is a zip of ``data.pkl`` (the module tree, whose tensors live in ``data/``) and
``code/`` (the modules' TorchScript source). ``torch.jit.load`` runs that code (``__setstate__`` and friends),
so by default nothing is loaded through torch:

* the module tree comes from ``data.pkl`` through the restricted unpickler of :mod:`._torchfree`, the
  archive's classes rebuilt as inert records;
* a module whose class is ``Conv{1,2,3}d`` / ``ConvTranspose{1,2,3}d`` is a layer; its groups, stride and
  dilation are read from the class's source text, never executed: the arguments of the ``torch.conv*`` /
  ``torch._convolution`` call in its methods (traced modules), else its ``Final`` constants (scripted ones);
* depth is the module order (``depth_source == "order"``), with a note: the data flow lives in the code.

With ``trust_pickle`` the archive is loaded by ``torch.jit.load`` and depth comes from its inlined graph.
Either way, every zip member's CRC-32 is verified before anything reads it.
"""

from __future__ import annotations

import ast
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

from .._budget import MemoryBudget
from ..depth import longest_path_levels, with_graph_depth, with_order_depth
from ..errors import ModelFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from . import _torchfree
from ._isolated import read_isolated
from ._registry import ReadOptions, make_layer, register_reader
from ._statedict import count_ops

__all__ = ["TorchScriptReader", "verify_zip", "zip_names", "ZIP_MAGIC"]

ZIP_MAGIC = b"PK\x03\x04"
_CONV_NAMES = {f"Conv{t}{n}d" for t in ("", "Transpose") for n in (1, 2, 3)}
# op -> (stride, dilation, groups, transposed) argument positions; an int "transposed" is a position too
_SCRIPT_CONV_OPS: dict[str, tuple[int, int, int, bool | int]] = {
    "aten::conv1d": (3, 5, 6, False), "aten::conv2d": (3, 5, 6, False), "aten::conv3d": (3, 5, 6, False),
    "aten::conv_transpose1d": (3, 7, 6, True), "aten::conv_transpose2d": (3, 7, 6, True),
    "aten::conv_transpose3d": (3, 7, 6, True), "aten::_convolution": (3, 5, 8, 6),
}
_CALL = re.compile(r"torch\.(_convolution|conv[123]d|conv_transpose[123]d)\(")
_PARAMETERS = re.compile(r"[ \t]+__parameters__[ \t]*=[ \t]*\[(.*)\][ \t]*")
_FINAL = re.compile(r"[ \t]+(groups|stride|dilation)[ \t]*:[ \t]*Final\[[^\]\n]*\]*[ \t]*=[ \t]*(.{1,200})")
_MAX_LINE = 4096  # longer source lines are never looked at (real ones are short; regexes stay linear)
_MAX_CODE_BYTES = 8 * 2**20  # one class file's source; real ones are kilobytes
ORDER_NOTE = ("TorchScript read without running its code: conv_depth is the module order "
              "(pass --trust-pickle to load it with torch.jit.load and take depth from its graph)")


def zip_names(path: Path) -> list[str] | None:
    """Entry names of a zip archive, None when the file is not a readable zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, NotImplementedError, EOFError):
        return None


def is_torchscript(names: list[str]) -> bool:
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def verify_zip(path: Path, what: str) -> None:
    """Check every member's CRC-32 (streaming, no member held in memory) before native code reads the zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, NotImplementedError, EOFError) as e:
        raise ModelFormatError(f"{path}: not a readable {what} (corrupt zip archive: {_first_line(e)})") from e
    if bad is not None:
        raise ModelFormatError(f"{path}: not a readable {what}: zip member {bad!r} is damaged (CRC-32 mismatch); "
                               "download or export the file again")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ----------------------------------------------------------------------------------------------------------
# reading the archive as data


def _literal(text: str) -> Any:
    """A Python literal from TorchScript source text (``[1, 1]``, ``8``, ``False``), else None. Never evaluates."""
    text = text.strip()
    if len(text) > 200:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments of a call (brackets nest)."""
    args, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i])
            start = i + 1
    args.append(text[start:])
    return [a.strip() for a in args if a.strip()]


def _class_sources(code: str) -> dict[str, list[str]]:
    """The body lines of each ``class <name>(...)`` of a TorchScript source file (classes are top-level),
    in one pass; lines longer than _MAX_LINE are dropped."""
    classes: dict[str, list[str]] = {}
    body: list[str] | None = None
    for line in code.splitlines():
        if line and not line[0].isspace():
            match = re.match(r"class (\w+)\(", line[:_MAX_LINE])
            body = classes.setdefault(match.group(1), []) if match else None
        elif body is not None and len(line) <= _MAX_LINE:
            body.append(line)
    return classes


def _conv_hyperparameters(source: list[str], transposed_default: bool) -> dict[str, Any]:
    """groups / stride / dilation / transposed from a conv class's source: the conv call, else Final constants."""
    found: dict[str, Any] = {}
    for line in source:
        final = _FINAL.fullmatch(line)
        if final:
            found.setdefault(final.group(1), _literal(final.group(2)))
    for line in source:
        call = _CALL.search(line)
        close = line.rfind(")")
        if not call or close < call.end():
            continue
        stride_at, dilation_at, groups_at, transposed_at = _SCRIPT_CONV_OPS["aten::" + call.group(1)]
        args = _split_args(line[call.end():close])
        if len(args) < 2 or args[1] != "weight":
            continue
        pick = {"stride": stride_at, "dilation": dilation_at, "groups": groups_at}
        for key, at in pick.items():
            value = _literal(args[at]) if at < len(args) else (1 if key == "groups" else None)
            if value is not None:
                found[key] = value
        if isinstance(transposed_at, bool):
            found["transposed"] = transposed_at
        elif transposed_at < len(args):
            found["transposed"] = bool(_literal(args[transposed_at]))
        break
    found.setdefault("transposed", transposed_default)
    return found


class _Archive:
    """Class sources of one archive, read on demand and cached."""

    def __init__(self, zf: zipfile.ZipFile, path: Path, budget: MemoryBudget) -> None:
        self.zf, self.path, self.budget = zf, path, budget
        names = zf.namelist()
        self.prefix = next((n[: -len("data.pkl")] for n in names if n.endswith("data.pkl") and n.count("/") <= 1), "")
        self.files: dict[str, dict[str, list[str]]] = {}  # member -> class name -> body lines
        self.conv_params: dict[str, dict[str, Any]] = {}  # class qualname -> its conv hyper-parameters
        self.params: dict[str, set[str] | None] = {}  # class qualname -> its __parameters__, None if unsaid

    def parameter_names(self, qualname: str) -> set[str] | None:
        if qualname not in self.params:
            listed = next((m for m in map(_PARAMETERS.fullmatch, self.class_source(qualname)) if m), None)
            self.params[qualname] = {n.strip().strip("'\"") for n in listed.group(1).split(",")} if listed else None
        return self.params[qualname]

    def conv_hyperparameters(self, qualname: str, transposed_default: bool) -> dict[str, Any]:
        if qualname not in self.conv_params:  # many modules share a class: parse it once
            self.conv_params[qualname] = _conv_hyperparameters(self.class_source(qualname), transposed_default)
        return self.conv_params[qualname]

    def class_source(self, qualname: str) -> list[str]:
        """The body lines of a class of the archive (empty when its source is missing or oversized)."""
        module, _, name = qualname.rpartition(".")
        member = f"{self.prefix}code/{module.replace('.', '/')}.py"
        if member not in self.files:
            try:
                size = self.zf.getinfo(member).file_size
            except KeyError:
                size = -1
            if not 0 <= size <= _MAX_CODE_BYTES:
                self.files[member] = {}
            else:
                data = _torchfree.read_member(self.zf, member, self.path, self.budget)
                self.files[member] = _class_sources(data.decode("utf-8", "replace"))
        return self.files[member].get(name, [])


def _modules(root: Any) -> Iterator[tuple[str, Any]]:
    """(dotted path, ScriptObject) of every module in the tree, in attribute order, each object once."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        prefix, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield prefix, obj
        children = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in obj.state.items()
                    if isinstance(v, _torchfree.ScriptObject)]
        stack.extend(reversed(children))


def _n_parameters(root: Any, archive: _Archive) -> int:
    """Values in the modules' parameters (as ``module.parameters()`` counts them: buffers excluded).

    A class's ``__parameters__`` line in its source names them; without one, every tensor counts.
    """
    total = 0
    for _, module in _modules(root):
        names = archive.parameter_names(module.qualname)
        total += sum(int(v.array.size) for k, v in module.state.items()
                     if isinstance(v, _torchfree.StoredTensor) and (names is None or k in names))
    return total


def _safe_layers(path: Path, budget: MemoryBudget) -> tuple[tuple[ConvLayer, ...], int, tuple[str, ...]]:
    root = _torchfree.load_script(path, budget)
    if not isinstance(root, _torchfree.ScriptObject):
        raise ModelFormatError(f"{path}: the TorchScript archive's data.pkl holds no module")
    layers: list[ConvLayer] = []
    notes: list[str] = []
    with zipfile.ZipFile(path) as zf:
        archive = _Archive(zf, path, budget)
        for name, module in _modules(root):
            cls = module.qualname.rpartition(".")[2]
            weight = module.state.get("weight")
            if cls not in _CONV_NAMES or not isinstance(weight, _torchfree.StoredTensor):
                continue
            params = archive.conv_hyperparameters(module.qualname, "Transpose" in cls)
            groups = params.get("groups")
            layer_notes: tuple[str, ...] = ()
            if not (isinstance(groups, int) and groups > 0):
                groups, layer_notes = 1, ("groups not found in the archive's code: assumed 1",)
            layers.append(make_layer(name, cls, weight.array, groups=groups,
                                     transposed=bool(params["transposed"]), storage_dtype=weight.dtype,
                                     stride=_ints(params.get("stride")), dilation=_ints(params.get("dilation")),
                                     notes=layer_notes))
        n_params = _n_parameters(root, archive)
    if layers:
        notes.append(ORDER_NOTE)
    return with_order_depth(layers), n_params, tuple(notes)


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


# ----------------------------------------------------------------------------------------------------------
# the trusted path: torch.jit.load and its inlined graph


def _constant(value: Any) -> Any:
    """Python value of a TorchScript graph value built from constants, else None."""
    node = value.node()
    if node.kind() == "prim::Constant":
        return value.toIValue()
    if node.kind() == "prim::ListConstruct":
        items = [_constant(v) for v in node.inputs()]
        return None if any(i is None for i in items) else items
    return None


def _attr_path(value: Any) -> str | None:
    """Dotted module path of a ``prim::GetAttr`` chain ending in a weight, e.g. "features.0"."""
    parts: list[str] = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        parts.append(node.s("name"))
        node = next(iter(node.inputs())).node()
    if node.kind() != "prim::Param" or not parts or parts[0] != "weight":
        return None
    return ".".join(reversed(parts[1:]))


def _all_nodes(block: Any) -> Iterator[Any]:
    """Nodes of a graph or block, including those inside If/Loop sub-blocks."""
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _all_nodes(sub)


def _script_conv_nodes(graph: Any) -> tuple[list[tuple[Any, str]], dict[Any, int]]:
    """Conv nodes of an inlined TorchScript graph with their module paths, and every node's level."""
    nodes = list(_all_nodes(graph))
    index = {node: i for i, node in enumerate(nodes)}
    preds = {i: [index[v.node()] for v in node.inputs() if v.node() in index] for i, node in enumerate(nodes)}
    levels = longest_path_levels(preds)
    convs = []
    for node in nodes:
        if node.kind() in _SCRIPT_CONV_OPS:
            inputs = list(node.inputs())
            path = _attr_path(inputs[1])
            if path is not None:
                convs.append((node, path))
    return convs, {node: levels[index[node]] for node in nodes}


def _script_layer(module: Any, node: Any, path: str) -> ConvLayer:
    from ._torch import _dtype_name, _to_numpy

    sub = module
    for part in filter(None, path.split(".")):
        sub = getattr(sub, part)
    inputs = list(node.inputs())
    stride_at, dilation_at, groups_at, transposed_at = _SCRIPT_CONV_OPS[node.kind()]
    transposed = transposed_at if isinstance(transposed_at, bool) else bool(_constant(inputs[transposed_at]))
    groups = _constant(inputs[groups_at]) or 1
    weight = sub.weight
    name = f"{'ConvTranspose' if transposed else 'Conv'}{weight.dim() - 2}d"
    return make_layer(path, name, _to_numpy(weight), groups=int(groups), transposed=transposed,
                      storage_dtype=_dtype_name(weight), stride=_constant(inputs[stride_at]),
                      dilation=_constant(inputs[dilation_at]))


def _script_graph_layers(module: Any) -> tuple[ConvLayer, ...]:
    """Conv layers from the conv ops of the inlined graph, with graph depth and groups from the op arguments."""
    convs, levels = _script_conv_nodes(module.inlined_graph)
    seen: dict[str, ConvLayer] = {}
    layer_levels: dict[str, int] = {}
    for node, name in convs:  # a module called twice keeps its first (shallowest) call
        if name not in seen:
            seen[name] = _script_layer(module, node, name)
            layer_levels[name] = levels[node]
    return with_graph_depth(list(seen.values()), [layer_levels[n] for n in seen])


def _script_module_layers(module: Any) -> tuple[ConvLayer, ...]:
    """Fallback: conv submodules by their original class name, in module order (traced modules lack groups)."""
    from ._torch import _dtype_name, _to_numpy

    layers = []
    for name, sub in module.named_modules():
        if getattr(sub, "original_name", None) in _CONV_NAMES and hasattr(sub, "weight"):
            groups = getattr(sub, "groups", None)
            notes = () if groups is not None else ("groups not recorded in the archive: assumed 1",)
            layers.append(make_layer(name, sub.original_name, _to_numpy(sub.weight), groups=groups or 1,
                                     transposed="Transpose" in sub.original_name,
                                     storage_dtype=_dtype_name(sub.weight), notes=notes))
    return with_order_depth(layers)


def _trusted_layers(path: Path) -> tuple[tuple[ConvLayer, ...], int, tuple[str, ...]]:
    try:
        import torch
    except ImportError as e:
        raise missing_dependency("torch", "loading a TorchScript archive with --trust-pickle", "torch") from e
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; reading old archives stays useful
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    notes: tuple[str, ...] = ("loaded with torch.jit.load (--trust-pickle): the archive's code ran",)
    try:
        layers = _script_graph_layers(module)
    except Exception as e:  # noqa: BLE001 - TorchScript graphs vary by torch version; fall back to modules
        layers = ()
        notes += (f"TorchScript graph not understood ({type(e).__name__}: {_first_line(e)})",)
    if not layers:
        layers = _script_module_layers(module)
        if layers:
            notes += ("conv ops not found in the TorchScript graph: conv_depth is the module order",)
    return layers, sum(int(p.numel()) for p in module.parameters()), notes


class TorchScriptReader:
    """TorchScript archives written by ``torch.jit.save`` (a zip with ``code/`` and ``constants.pkl``)."""

    format = "torchscript"
    extensions: tuple[str, ...] = (".torchscript", ".ptl", ".jit")
    description = "TorchScript archive (torch.jit.save; read as data, its code never runs without --trust-pickle)"

    def sniff(self, path: Path, head: bytes) -> bool:
        if not head.startswith(ZIP_MAGIC):
            return False
        names = zip_names(path)
        return names is not None and is_torchscript(names)

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        verify_zip(path, "TorchScript archive")
        if options.trust_pickle:  # the archive's code runs: in a child process, where a crash cannot reach us
            return read_isolated(path, "TorchScript", lambda: self._record(path, *_trusted_layers(path)))
        return self._record(path, *_safe_layers(path, MemoryBudget.for_file(path, options.max_memory)))

    def _record(self, path: Path, layers: tuple[ConvLayer, ...], n_params: int, notes: tuple[str, ...]) -> ModelRecord:
        info = ModelInfo(source=str(path), format=self.format, path=str(path), producer="torch.jit",
                         op_counts=count_ops(layers), n_parameters=n_params, notes=notes)
        return ModelRecord(info=info, layers=layers)


register_reader(TorchScriptReader())  # before "pytorch": both are zip archives, TorchScript has code/
