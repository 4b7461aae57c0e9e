"""PyTorch readers: state_dict / checkpoint files ("pytorch"), TorchScript archives ("torchscript") and
live ``torch.nn.Module`` objects.

Safety: files are first read by the restricted unpickler of :mod:`._torchfree` (no torch import, only the
globals a state_dict needs, every size checked against the memory budget, zip CRCs verified). A checkpoint
it refuses goes to ``torch.load(weights_only=True)`` when torch is installed (after the zip's CRCs are
verified, so torch's native reader never sees damaged members), and to a full ``torch.load`` only with
``trust_pickle``. TorchScript archives have their own reader (:mod:`._torchscript`).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._budget import MemoryBudget
from ..depth import longest_path_levels, with_graph_depth, with_order_depth
from ..errors import ModelFormatError, UnsafeFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from . import _torchfree
from ._isolated import read_isolated
from ._registry import ReadOptions, make_layer, register_object_reader, register_reader
from ._torchscript import ZIP_MAGIC, is_torchscript, verify_zip, zip_names
from ._statedict import (
    TensorEntry,
    conv_layers,
    count_ops,
    count_parameters,
    find_weights,
    is_tensor_mapping,
    strip_wrapper_prefixes,
)

__all__ = ["PyTorchReader", "TorchModuleReader"]

# The legacy (pre-1.6) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
TRUST_HINT = "pass --trust-pickle on the command line or trust_pickle=True in Python to allow a full load"


def _has_torch() -> bool:
    """Whether torch is installed, without importing it (the import alone costs hundreds of MB)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _is_state_zip(names: list[str]) -> bool:
    return any(n.endswith("data.pkl") for n in names) and not is_torchscript(names)


# ----------------------------------------------------------------------------------------------------------
# tensors -> entries


def _dtype_name(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def _is_tensor(value: Any) -> bool:
    """A torch tensor, or an array from the torch-free loader."""
    if isinstance(value, (np.ndarray, _torchfree.StoredTensor)):
        return True
    return type(value).__module__.startswith("torch") and hasattr(value, "shape") and hasattr(value, "dtype")


def _to_numpy(value: Any) -> np.ndarray:
    """Values of a tensor as numpy; bfloat16 (which numpy lacks) widened to float32, exactly."""
    if isinstance(value, _torchfree.StoredTensor):
        return value.array
    if isinstance(value, np.ndarray):
        return value
    tensor = value.detach().cpu()
    if _dtype_name(tensor) == "bfloat16":
        tensor = tensor.float()
    return tensor.numpy()


def _entries(state: dict[str, Any]) -> list[TensorEntry]:
    return [TensorEntry(name, tuple(int(d) for d in value.shape), _dtype_name(value))
            for name, value in state.items() if _is_tensor(value)]


def _state_dict_record(state: Any, where: str, path: Path, fmt: str) -> ModelRecord:
    """Record of a mapping of tensors: conv weights by the state_dict rules, depth from order."""
    renamed = strip_wrapper_prefixes(str(k) for k in state)
    clean = {renamed[str(k)]: v for k, v in state.items()}
    entries = _entries(clean)
    layers = conv_layers(entries, lambda name: _to_numpy(clean[name]))
    notes: tuple[str, ...] = ("a state_dict has no graph: conv_depth is the order of the conv weights",)
    if where:
        notes += (f"weights found under the checkpoint key {where!r}",)
    info = ModelInfo(source=str(path), format=fmt, path=str(path), producer="pytorch", op_counts=count_ops(layers),
                     n_parameters=count_parameters(entries), notes=notes)
    return ModelRecord(info=info, layers=layers)


# ----------------------------------------------------------------------------------------------------------
# state_dict files


def _check_container(path: Path) -> None:
    """Fail early, and clearly, on files that are neither torch zip archives nor legacy torch pickles."""
    with open(path, "rb") as fh:
        head = fh.read(len(LEGACY_MAGIC))
    if head.startswith(ZIP_MAGIC):
        if zip_names(path) is None:
            raise ModelFormatError(f"{path}: not a readable PyTorch file (truncated or corrupt zip archive)")
        return
    if not head.startswith(LEGACY_MAGIC):
        raise ModelFormatError(
            f"{path}: not a PyTorch file (neither a torch.save zip archive nor a legacy torch pickle)"
        )


def _unsafe(path: Path, detail: str) -> UnsafeFormatError:
    return UnsafeFormatError(
        f"{path}: this checkpoint pickles arbitrary Python objects ({detail}); loading it runs code from the "
        f"file, so it was refused; {TRUST_HINT} (only for files you trust)"
    )


def _torch_load(path: Path, options: ReadOptions) -> Any:
    """torch.load with weights_only=True; a full load only when the user trusts pickles."""
    import torch

    if zipfile.is_zipfile(path):
        verify_zip(path, "PyTorch file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError) as e:  # torch's words for a truncated storage section or zip member
        raise ModelFormatError(f"{path}: not a readable PyTorch file, truncated or corrupt ({_first_line(e)})") from e
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise ModelFormatError(f"{path}: not a readable PyTorch file ({_first_line(e)})") from e
        if not options.trust_pickle:
            raise _unsafe(path, _unsupported_global(e)) from None
    return torch.load(path, map_location="cpu", weights_only=False)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _unsupported_global(e: BaseException) -> str:
    """The global that torch's weights_only unpickler refused, if its message names one."""
    for line in str(e).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip().removeprefix("WeightsUnpickler error: ")
    return "weights_only=True refused it"


def _record(path: Path, obj: Any, options: ReadOptions, fmt: str) -> ModelRecord:
    found = find_weights(obj, lambda o: _is_module(o) or is_tensor_mapping(o, _is_tensor))
    if found is None:
        raise ModelFormatError(f"{path}: no state_dict (a mapping of names to tensors) found in the checkpoint")
    weights, where = found
    if _is_module(weights):
        record = module_record(weights, ReadOptions(trust_pickle=options.trust_pickle))
        info = ModelInfo(**{**record.info.__dict__, "source": str(path), "path": str(path),
                            "notes": record.info.notes + ("a pickled nn.Module (full load)",)})
        return ModelRecord(info=info, layers=record.layers)
    return _state_dict_record(weights, where, path, fmt)


def _is_module(obj: Any) -> bool:
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(obj).__mro__)


class PyTorchReader:
    """``torch.save`` files: state_dicts and checkpoint dicts (zip and legacy format)."""

    format = "pytorch"
    extensions: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt")
    description = "PyTorch state_dict / checkpoint (torch.save; loaded with weights_only=True)"

    def sniff(self, path: Path, head: bytes) -> bool:
        if head.startswith(LEGACY_MAGIC):
            return True
        if not head.startswith(ZIP_MAGIC):
            return False
        names = zip_names(path)
        return names is not None and _is_state_zip(names)

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        """Torch-free when the file is plain data; else torch.load in a child process (see the module doc)."""
        _check_container(path)
        try:
            obj = _torchfree.load(path, MemoryBudget.for_file(path, options.max_memory))
        except UnsafeFormatError as e:
            if not _has_torch():
                if options.trust_pickle:
                    raise missing_dependency("torch", f"{path}: fully loading this pickled checkpoint", "torch") from e
                raise
            # torch's native reader (and, with trust, the file's own code) runs where a crash cannot reach us
            return read_isolated(path, "torch", lambda: _record(path, _torch_load(path, options), options,
                                                                self.format))
        return _record(path, obj, options, self.format)


# ----------------------------------------------------------------------------------------------------------
# live modules


def _conv_base(module: Any) -> str:
    """The torch.nn class a conv module is (or derives from): "Conv2d", "ConvTranspose2d", ..."""
    for cls in type(module).__mro__:
        if cls.__module__ == "torch.nn.modules.conv" and not cls.__name__.startswith("_"):
            return cls.__name__.removeprefix("Lazy")
    return type(module).__name__


def _module_layer(name: str, module: Any) -> ConvLayer:
    weight = module.weight
    notes = () if type(module).__module__.startswith("torch.nn") else (f"subclass {type(module).__qualname__}",)
    return make_layer(name, _conv_base(module), _to_numpy(weight), groups=module.groups,
                      transposed=bool(module.transposed), storage_dtype=_dtype_name(weight),
                      stride=module.stride, dilation=module.dilation, notes=notes)


def _conv_modules(root: Any) -> list[tuple[str, Any]]:
    import torch

    out = []
    for name, module in root.named_modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            if isinstance(module.weight, torch.nn.parameter.UninitializedParameter):
                continue  # a Lazy conv that never saw an input has no weights yet
            out.append((name, module))
    return out


def _fx_levels(root: Any, names: list[str]) -> list[int | None]:
    """Graph level of each conv module from a torch.fx trace (conv modules kept as leaves)."""
    import torch
    import torch.fx

    class ConvLeafTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return isinstance(m, torch.nn.modules.conv._ConvNd) or super().is_leaf_module(m, qualname)

    graph = ConvLeafTracer().trace(root)
    levels = longest_path_levels({node: list(node.all_input_nodes) for node in graph.nodes})
    first: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) not in first:
            first[str(node.target)] = levels[node]
    return [first.get(name) for name in names]


def module_record(root: Any, options: ReadOptions = ReadOptions()) -> ModelRecord:
    """Record of a live ``torch.nn.Module``: every Conv*d / ConvTranspose*d, depth from a torch.fx trace.

    Parameters
    ----------
    root : torch.nn.Module
        The model; it is traced symbolically, never run.
    options : ReadOptions
        Unused for live objects (kept for the ObjectReader protocol).

    Returns
    -------
    ModelRecord
        Depth from the fx graph (``depth_source == "graph"``), or from module order, with a note on the
        model, when the model cannot be traced (data-dependent control flow).

    Examples
    --------
    >>> import torch  # doctest: +SKIP
    >>> module_record(torch.nn.Conv2d(3, 8, 3)).layers[0].kernel  # doctest: +SKIP
    (3, 3)
    """
    import torch

    named = _conv_modules(root)
    layers = [_module_layer(name, module) for name, module in named]
    notes: tuple[str, ...] = ()
    try:
        depth_layers = with_graph_depth(layers, _fx_levels(root, [name for name, _ in named]))
    except Exception as e:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        depth_layers = with_order_depth(layers)
        notes = (f"torch.fx could not trace the model ({type(e).__name__}: {_first_line(e)}): "
                 "conv_depth is the module order",)
    cls = type(root)
    info = ModelInfo(source=f"{cls.__module__}.{cls.__qualname__}", format="pytorch", producer="torch",
                     producer_version=torch.__version__, op_counts=count_ops(depth_layers),
                     n_parameters=sum(int(p.numel()) for p in root.parameters()), notes=notes)
    return ModelRecord(info=info, layers=depth_layers)


class TorchModuleReader:
    """Live ``torch.nn.Module`` objects (no torch import unless the object is a torch module)."""

    format = "pytorch"

    def accepts(self, obj: Any) -> bool:
        return _is_module(obj)

    def read_object(self, obj: Any, options: ReadOptions) -> ModelRecord:
        return module_record(obj, options)


register_reader(PyTorchReader())
register_object_reader(TorchModuleReader())
