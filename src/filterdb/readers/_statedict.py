"""Conv layers from a flat mapping of named tensors: PyTorch state_dicts, safetensors files, and the like.

A state_dict has no graph and no layer types, only names and shapes, so conv weights are recognised by
the following rule (shared by the ``pytorch``, ``safetensors`` and ``pickle`` readers):

* The tensor must have a floating dtype, and the last component of its name (split on ``.``, ``/`` and
  ``:``, a trailing ``:0`` dropped) says its layout:

  - ``weight`` (PyTorch, ONNX-derived dumps): channels-first, (O, I/g, *kernel);
  - ``kernel`` (Keras, TensorFlow, Flax): channels-last, (*kernel, I, O);
  - ``depthwise_kernel`` (Keras DepthwiseConv2D): (kh, kw, C, multiplier), turned into (C·mult, 1, kh, kw)
    with ``groups = C``.

* 4-D tensors are Conv2d: no other common layer stores a 4-D ``weight``/``kernel`` (norm layers, PReLU,
  embeddings and linear layers have 1-D or 2-D weights).
* 3-D tensors are Conv1d and 5-D tensors Conv3d **only when the module path contains "conv"**
  (``conv1``, ``final_conv``, ``Conv3d_1a_3x3``): 3-D weights also belong to LayerScale, PReLU or
  positional tables in other architectures, and a false filter is worse than a missed one. Read the live
  ``torch.nn.Module`` where this matters.
* A module path containing ``deconv`` or ``transpose`` marks a transposed convolution, (I, O/g, *kernel).
* Groups cannot be known from a state_dict: ``groups = 1`` with a note on the layer (an (O, 1, k, k)
  weight gets a second note that it is probably depthwise).

Depth comes from the order of the tensors (``with_order_depth``): ``depth_source == "order"``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..depth import with_order_depth
from ..types import ConvLayer
from ._registry import make_layer

__all__ = [
    "TensorEntry",
    "ConvPlan",
    "plan_conv",
    "conv_layers",
    "strip_wrapper_prefixes",
    "find_weights",
    "count_parameters",
    "count_ops",
    "GROUPS_NOTE",
]

FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
# Where checkpoints usually keep their weights, in the order we look (after the top level itself).
PREFERRED_KEYS = (
    "state_dict", "model_state_dict", "model", "net", "network", "module", "weights", "params",
    "ema", "model_ema", "state_dict_ema", "ema_state_dict", "generator", "g_ema",
)
# Wrappers that prefix every key: nn.DataParallel / DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
GROUPS_NOTE = "groups unknown in a state_dict: assumed 1"
_SPLIT = re.compile(r"[./:]")


@dataclass(frozen=True)
class TensorEntry:
    """A named tensor as a file describes it, before its values are read."""

    name: str  # key in the state_dict / safetensors header
    shape: tuple[int, ...]
    dtype: str  # numpy-style name: "float32", "bfloat16", "int64", ...


@dataclass(frozen=True)
class ConvPlan:
    """How to turn one tensor into a conv layer."""

    tensor: str  # key of the weight tensor
    module: str  # layer name: the key without its last component ("conv1" for "conv1.weight")
    layout: str  # "channels_first", "channels_last" or "keras_depthwise"
    transposed: bool
    spatial_ndim: int


def _split_name(name: str) -> tuple[str, str]:
    """(module path, last component) of a tensor name; a TF ``:0`` output suffix is dropped."""
    clean = re.sub(r":\d+$", "", name)
    parts = [p for p in _SPLIT.split(clean) if p]
    if not parts:
        return "", ""
    last = parts[-1]
    module = clean[: len(clean) - len(last)].rstrip("./:")
    return module, last


def plan_conv(entry: TensorEntry) -> ConvPlan | None:
    """The conv plan for a tensor, or None when the tensor is not a conv weight (rule in the module doc)."""
    if entry.dtype not in FLOAT_DTYPES or not 3 <= len(entry.shape) <= 5 or min(entry.shape) <= 0:
        return None  # an empty weight holds no filter: never a layer (a file of 10^6 of them stays cheap)
    module, last = _split_name(entry.name)
    layouts = {"weight": "channels_first", "kernel": "channels_last", "depthwise_kernel": "keras_depthwise"}
    layout = layouts.get(last)
    if layout is None or (layout == "keras_depthwise" and len(entry.shape) != 4):
        return None
    lowered = module.lower()
    if len(entry.shape) != 4 and "conv" not in lowered:
        return None
    transposed = "deconv" in lowered or "transpose" in lowered
    return ConvPlan(entry.name, module or entry.name, layout, transposed, len(entry.shape) - 2)


def to_channels_first(array: np.ndarray, layout: str) -> tuple[np.ndarray, int]:
    """(weight in PyTorch layout, groups) for a weight stored in ``layout``."""
    if layout == "channels_first":
        return array, 1
    if layout == "keras_depthwise":
        kh, kw, channels, mult = array.shape
        return array.transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw), channels
    # (*kernel, I, O) -> (O, I, *kernel): HWIO -> OIHW is transpose(3, 2, 0, 1), never (2, 3, 0, 1).
    n = array.ndim
    return array.transpose(n - 1, n - 2, *range(n - 2)), 1


def _layer_notes(plan: ConvPlan, weight: np.ndarray, groups: int) -> tuple[str, ...]:
    notes = []
    if plan.layout != "keras_depthwise":
        notes.append(GROUPS_NOTE)
        if weight.shape[1] == 1 and weight.shape[0] > 1 and not plan.transposed:
            notes.append("weight shape (O, 1, ...) suggests a depthwise convolution")
    if plan.transposed:
        notes.append("taken as a transposed convolution from its name")
    return tuple(notes)


def _op_type(plan: ConvPlan) -> str:
    if plan.layout == "keras_depthwise":
        return "DepthwiseConv2D"
    return f"Conv{'Transpose' if plan.transposed else ''}{plan.spatial_ndim}d"


def conv_layers(entries: Sequence[TensorEntry], load: Callable[[str], np.ndarray]) -> tuple[ConvLayer, ...]:
    """The conv layers of a flat tensor mapping, in its order, with depth from that order.

    Parameters
    ----------
    entries : sequence of TensorEntry
        Every tensor of the file, in file order.
    load : callable
        ``load(name)`` returns the tensor's values as a numpy array (float32 for bfloat16 storage);
        only conv weights are loaded.

    Returns
    -------
    tuple of ConvLayer
        With ``depth_source == "order"``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.zeros((8, 3, 3, 3), np.float32)
    >>> layers = conv_layers([TensorEntry("conv1.weight", w.shape, "float32")], lambda name: w)
    >>> layers[0].name, layers[0].kernel
    ('conv1', (3, 3))
    """
    dtypes = {e.name: e.dtype for e in entries}
    layers = []
    for plan in filter(None, map(plan_conv, entries)):
        weight, groups = to_channels_first(np.asarray(load(plan.tensor)), plan.layout)
        layers.append(
            make_layer(
                plan.module, _op_type(plan), weight, groups=groups, transposed=plan.transposed,
                storage_dtype=dtypes[plan.tensor], notes=_layer_notes(plan, weight, groups),
            )
        )
    return with_order_depth(layers)


def strip_wrapper_prefixes(names: Iterable[str]) -> dict[str, str]:
    """Map each key to its name without a DataParallel ``module.`` / torch.compile ``_orig_mod.`` prefix.

    A prefix is removed only when every key carries it, so a submodule that happens to be called
    ``module`` keeps its name.
    """
    names = list(names)
    clean = {n: n for n in names}
    changed = True
    while changed and names:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(v.startswith(prefix) for v in clean.values()):
                clean = {k: v[len(prefix):] for k, v in clean.items()}
                changed = True
    return clean


def _children(obj: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    """Child mappings of a checkpoint dict, the usual weight keys first."""
    keys = [k for k in PREFERRED_KEYS if k in obj] + [k for k in obj if k not in PREFERRED_KEYS]
    return [(str(k), obj[k]) for k in keys]


def find_weights(obj: Any, accept: Callable[[Any], bool], max_depth: int = 4) -> tuple[Any, str] | None:
    """Breadth-first search of a checkpoint for the object that holds the weights.

    Parameters
    ----------
    obj : object
        What the file unpickled to: a state_dict, or a checkpoint dict holding one under "state_dict",
        "model", "ema", ... (possibly nested).
    accept : callable
        True for an object that holds weights (a mapping of tensors, a module).
    max_depth : int
        How deep to look into nested dicts.

    Returns
    -------
    (object, key path) or None
        The key path is "" for the top level, else like ``"checkpoint/state_dict"``.
    """
    level: list[tuple[Any, str]] = [(obj, "")]
    for _ in range(max_depth + 1):
        nxt: list[tuple[Any, str]] = []
        for node, path in level:
            if accept(node):
                return node, path
            if isinstance(node, Mapping):
                nxt.extend((child, f"{path}/{key}".lstrip("/")) for key, child in _children(node))
        level = nxt
    return None


def is_tensor_mapping(obj: Any, is_tensor: Callable[[Any], bool]) -> bool:
    """True for a non-empty mapping whose values are mostly tensors (a state_dict)."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    n_tensors = sum(1 for v in obj.values() if is_tensor(v))
    return n_tensors > 0 and n_tensors * 2 > len(obj)


def count_parameters(entries: Iterable[TensorEntry]) -> int:
    """Number of values in the floating-point tensors (integer buffers such as step counters excluded)."""
    return int(sum(int(np.prod(e.shape, dtype=object)) for e in entries
                   if e.dtype in FLOAT_DTYPES and all(d >= 0 for d in e.shape)))


def count_ops(layers: Iterable[ConvLayer]) -> Mapping[str, int]:
    """Op type -> number of layers, as ModelInfo.op_counts wants it."""
    return MappingProxyType(dict(Counter(layer.op_type for layer in layers)))
