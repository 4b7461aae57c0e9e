"""Reader for Keras models: Keras 2 HDF5 (full models and weight-only files) and Keras 3 ``.keras`` zips.

Only ``h5py`` is needed, never TensorFlow. Keras kernels are channels-last (HWIO); they are turned into the
canonical PyTorch layout of docs/reference.md §1 here. Depth comes from the model config's graph where there is
one, else from the order of the layers.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .._budget import MemoryBudget
from ..depth import longest_path_levels, with_graph_depth, with_order_depth
from ..errors import ModelFormatError
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._keras_config import LayerSpec, parse_model_config, snake_case
from ._h5safety import refuse_outside_data
from ._isolated import read_isolated
from ._registry import ReadOptions, make_layer, register_reader
from ._torchfree import read_member

__all__ = ["KerasReader", "keras_depthwise_to_canonical", "keras_kernel_to_canonical"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
_HDF5_OFFSETS = (0, 512, 1024, 2048)  # HDF5 allows a user block of these sizes before the superblock

_CONV = {"Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"}
_TRANSPOSE = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Deconvolution2D", "Deconvolution3D"}
_DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
_SEPARABLE = {"SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"}

Roles = Mapping[str, np.ndarray]  # variable role ("kernel", "depthwise_kernel", "bias", ...) -> array
RoleSource = Callable[[LayerSpec], Roles]


# --------------------------------------------------------------------------------------------- layouts
def keras_kernel_to_canonical(kernel: np.ndarray) -> np.ndarray:
    """Keras channels-last kernel (*k, I, O) to PyTorch layout (O, I, *k).

    The same permutation turns a transposed-conv kernel (*k, O, I) into the canonical (I, O, *k).

    Examples
    --------
    >>> keras_kernel_to_canonical(np.zeros((3, 5, 2, 7))).shape
    (7, 2, 3, 5)
    """
    n = kernel.ndim
    # (n-1, n-2, spatial...): for 2-D this is transpose(3, 2, 0, 1), not (2, 3, 0, 1) which swaps in/out.
    return np.transpose(kernel, (n - 1, n - 2, *range(n - 2)))


def keras_depthwise_to_canonical(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise kernel (*k, C, mult) to PyTorch depthwise layout (C·mult, 1, *k).

    Output channel ``c * mult + m`` is filter ``m`` of input channel ``c``, as in a PyTorch conv with
    ``groups=C``.

    Examples
    --------
    >>> keras_depthwise_to_canonical(np.zeros((3, 3, 4, 2))).shape
    (8, 1, 3, 3)
    """
    *k, c, mult = kernel.shape
    flat = kernel.reshape(*k, c * mult)
    return np.transpose(flat, (flat.ndim - 1, *range(flat.ndim - 1)))[:, None]


def _spatial(value: Any, n: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


# ------------------------------------------------------------------------------------ layer building
def _kernel(roles: Roles, *names: str) -> np.ndarray | None:
    for name in names:
        if name in roles:
            return np.asarray(roles[name])
    return None


def _conv_layers(name: str, class_name: str, config: Mapping[str, Any], roles: Roles) -> list[ConvLayer]:
    """The ConvLayers of one Keras layer (two for a separable conv), without depth."""
    if class_name in _SEPARABLE:
        return _separable_layers(name, class_name, config, roles)
    depthwise = class_name in _DEPTHWISE
    kernel = _kernel(roles, "depthwise_kernel", "kernel") if depthwise else _kernel(roles, "kernel")
    if kernel is None or kernel.ndim < 3:
        return []
    n = kernel.ndim - 2
    stride, dilation = _spatial(config.get("strides"), n), _spatial(config.get("dilation_rate"), n)
    if depthwise:
        return [make_layer(name, class_name, keras_depthwise_to_canonical(kernel), groups=kernel.shape[-2],
                           storage_dtype=str(kernel.dtype), stride=stride, dilation=dilation)]
    transposed = class_name in _TRANSPOSE
    groups = int(config.get("groups", 1) or 1)
    return [make_layer(name, class_name, keras_kernel_to_canonical(kernel), groups=groups, transposed=transposed,
                       storage_dtype=str(kernel.dtype), stride=stride, dilation=dilation)]


def _separable_layers(name: str, class_name: str, config: Mapping[str, Any], roles: Roles) -> list[ConvLayer]:
    depthwise = _kernel(roles, "depthwise_kernel")
    pointwise = _kernel(roles, "pointwise_kernel")
    if depthwise is None or pointwise is None:
        return []
    n = depthwise.ndim - 2
    return [
        make_layer(f"{name}/depthwise", class_name, keras_depthwise_to_canonical(depthwise),
                   groups=depthwise.shape[-2], storage_dtype=str(depthwise.dtype),
                   stride=_spatial(config.get("strides"), n), dilation=_spatial(config.get("dilation_rate"), n)),
        make_layer(f"{name}/pointwise", class_name, keras_kernel_to_canonical(pointwise),
                   storage_dtype=str(pointwise.dtype), stride=(1,) * n, dilation=(1,) * n),
    ]


def _is_conv_class(class_name: str) -> bool:
    return class_name in _CONV | _TRANSPOSE | _DEPTHWISE | _SEPARABLE


def _graph_layers(specs: list[LayerSpec], role_source: RoleSource) -> tuple[ConvLayer, ...]:
    """Conv layers of a model with a config, with depth from the config's graph."""
    preds: dict[Hashable, tuple[Hashable, ...]] = {}
    layers: list[ConvLayer] = []
    nodes: list[Hashable] = []
    for spec in specs:
        preds[spec.key] = spec.preds
        if not _is_conv_class(spec.class_name):
            continue
        built = _conv_layers(spec.key, spec.class_name, spec.config, role_source(spec))
        if len(built) == 2:
            # A separable conv is two convolutions in a row: the depthwise one gets its own graph node.
            preds[(spec.key, "depthwise")] = spec.preds
            preds[spec.key] = ((spec.key, "depthwise"),)
            nodes.extend([(spec.key, "depthwise"), spec.key])
        else:
            nodes.extend([spec.key] * len(built))
        layers.extend(built)
    levels = longest_path_levels(preds)
    return with_graph_depth(layers, [levels.get(node) for node in nodes])


def _guess_class(roles: Roles) -> str | None:
    """The conv class of a layer in a weight-only file, from its variable names and shapes."""
    if "pointwise_kernel" in roles:
        return "SeparableConv2D"
    if "depthwise_kernel" in roles:
        return "DepthwiseConv2D"
    kernel = roles.get("kernel")
    if kernel is not None and 3 <= np.ndim(kernel) <= 5:
        return {3: "Conv1D", 4: "Conv2D", 5: "Conv3D"}[np.ndim(kernel)]
    return None


def _order_layers(named_roles: Iterator[tuple[str, Roles]]) -> tuple[ConvLayer, ...]:
    """Conv layers of a weight-only file (no config, so no graph): depth from the order of the layers."""
    layers: list[ConvLayer] = []
    for name, roles in named_roles:
        class_name = _guess_class(roles)
        if class_name is not None:
            layers.extend(_conv_layers(name, class_name, {}, roles))
    notes = ("no model config: layer class guessed from variable names (a 4-D 'kernel' is read as Conv2D)",)
    return tuple(replace(layer, notes=layer.notes + notes) for layer in with_order_depth(layers))


# ------------------------------------------------------------------------------------------ HDF5 utils
def _h5py() -> Any:
    import h5py  # a core dependency; imported here so that registering the reader costs nothing

    return h5py


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _n_values(group: Any) -> int:
    h5py = _h5py()
    total = 0

    def visit(_: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += int(obj.size)

    group.visititems(visit)
    return total


def _role(weight_name: str) -> str:
    # "conv2d_1_1/kernel:0" -> "kernel"
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _keras2_weights(group: Any) -> list[tuple[str, Any]]:
    """(weight name, dataset) pairs of one top-level layer group, in the order Keras saved them."""
    names = group.attrs.get("weight_names")
    if names is not None and len(names):
        return [(_text(n), group[_text(n)]) for n in names if _text(n) in group]
    found: list[tuple[str, Any]] = []
    h5py = _h5py()
    group.visititems(lambda n, obj: found.append((n, obj)) if isinstance(obj, h5py.Dataset) else None)
    return found


def _values(dataset: Any, budget: MemoryBudget) -> np.ndarray:
    """A dataset's values, its declared size checked against the budget before h5py allocates it."""
    dtype = dataset.dtype
    if dtype.kind not in "fiub":
        raise ModelFormatError(f"{budget.path}: dataset {dataset.name!r} holds {dtype}, not numbers")
    budget.claim(int(dataset.size) * max(dtype.itemsize, 1), f"dataset {dataset.name!r} of shape {dataset.shape}")
    return dataset[()]


def _keras2_roles(root: Any, path: tuple[str, ...], budget: MemoryBudget) -> dict[str, np.ndarray]:
    """Variables of a layer in a Keras 2 weights group; ``path`` is (layer,) or (nested model, ..., layer)."""
    if path[0] not in root:
        return {}
    weights = _keras2_weights(root[path[0]])
    if len(path) > 1:
        # A nested model's group holds every inner layer's weights: "<inner>/kernel:0" (or "<inner>_1/..."
        # in Keras 2.0, which appended a name-scope counter).
        inner = path[-1]
        exact = [(n, d) for n, d in weights if inner in n.split("/")[:-1]]
        weights = exact or [(n, d) for n, d in weights if any(c.startswith(inner + "_") for c in n.split("/")[:-1])]
    return {_role(name): _values(dataset, budget) for name, dataset in weights}


def _open_h5(path: Path, source: Any = None) -> Any:
    try:
        return _h5py().File(source if source is not None else path, "r")
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot open it as HDF5 (truncated or corrupt file?): {e}") from e


def _has_keras_weights(f: Any) -> bool:
    return "model_weights" in f or "layer_names" in f.attrs


# ------------------------------------------------------------------------------------------ Keras 2
def _read_keras2(path: Path, budget: MemoryBudget) -> ModelRecord:
    with _open_h5(path) as f:
        refuse_outside_data(path, f)
        if not _has_keras_weights(f):
            raise ModelFormatError(
                f"{path}: HDF5 file without Keras model weights (no 'model_weights' group and no 'layer_names' "
                "attribute); filterdb reads Keras models saved with model.save() or model.save_weights()"
            )
        root = f.get("model_weights", f)  # never optimizer_weights: same shapes
        raw_config = f.attrs.get("model_config")
        version = root.attrs.get("keras_version", f.attrs.get("keras_version"))
        if raw_config is not None:
            specs = parse_model_config(json.loads(_text(raw_config)))
            layers = _graph_layers(specs, lambda spec: _keras2_roles(root, spec.path, budget))
            op_counts = Counter(spec.class_name for spec in specs)
            notes: tuple[str, ...] = ()
        else:
            names = [_text(n) for n in root.attrs.get("layer_names", [])]
            layers = _order_layers((name, _keras2_roles(root, (name,), budget)) for name in names)
            op_counts = Counter()
            notes = ("weights only: no model config, depth from layer order",)
        info = ModelInfo(source=str(path), format="keras", path=str(path), producer="keras",
                         producer_version=_text(version) if version is not None else None,
                         op_counts=MappingProxyType(dict(op_counts)), n_parameters=_n_values(root), notes=notes)
    return ModelRecord(info=info, layers=layers)


# ------------------------------------------------------------------------------------------ Keras 3
_KERAS3_ROLES = {cls: ("depthwise_kernel", "pointwise_kernel", "bias") for cls in _SEPARABLE}


def _keras3_layer_group(layers_group: Any, spec: LayerSpec, fallback: Mapping[tuple[str, ...], str]) -> Any:
    group = layers_group
    for i, part in enumerate(spec.path):
        if i > 0:  # a nested model's layers sit in its own "layers" group
            if "layers" not in group:
                return None
            group = group["layers"]
        if part in group:
            group = group[part]
        elif spec.path in fallback and fallback[spec.path] in group:
            # Keras 3.0 named the groups after the class ("conv2d", "conv2d_1"), not the layer.
            group = group[fallback[spec.path]]
        else:
            return None
    return group


def _class_names(specs: list[LayerSpec]) -> dict[tuple[str, ...], str]:
    """Keras 3.0's group names: snake-case class name, de-duplicated with _1, _2 per container."""
    used: Counter[tuple[tuple[str, ...], str]] = Counter()
    names: dict[tuple[str, ...], str] = {}
    for spec in specs:
        base = snake_case(spec.class_name)
        n = used[(spec.path[:-1], base)]
        used[(spec.path[:-1], base)] += 1
        names[spec.path] = base if n == 0 else f"{base}_{n}"
    return names


def _keras3_roles(layers_group: Any, spec: LayerSpec, fallback: Mapping[tuple[str, ...], str],
                  budget: MemoryBudget) -> dict[str, Any]:
    group = _keras3_layer_group(layers_group, spec, fallback)
    if group is None or "vars" not in group:
        return {}
    variables = group["vars"]
    order = _KERAS3_ROLES.get(spec.class_name, ("kernel", "bias"))
    return {role: _values(variables[str(i)], budget) for i, role in enumerate(order) if str(i) in variables}


def _zip_member(path: Path, zf: zipfile.ZipFile, name: str, budget: MemoryBudget) -> bytes:
    if name not in zf.namelist():
        raise ModelFormatError(f"{path}: .keras archive without {name}")
    return read_member(zf, name, path, budget)  # bounded by the declared size, CRC-32 checked


def _read_keras3(path: Path, budget: MemoryBudget) -> ModelRecord:
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(_zip_member(path, zf, "config.json", budget))
            weights = _zip_member(path, zf, "model.weights.h5", budget)
            metadata = (json.loads(_zip_member(path, zf, "metadata.json", budget))
                        if "metadata.json" in zf.namelist() else {})
    except (zipfile.BadZipFile, UnicodeDecodeError, NotImplementedError, EOFError) as e:
        raise ModelFormatError(f"{path}: not a readable .keras zip archive (truncated or corrupt?): {e}") from e
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path}: the .keras archive's JSON is corrupt: {e}") from e
    specs = parse_model_config(config)
    fallback = _class_names(specs)
    with _open_h5(path, io.BytesIO(weights)) as f:
        refuse_outside_data(path, f)
        if "layers" not in f:
            raise ModelFormatError(f"{path}: model.weights.h5 has no 'layers' group: not a Keras 3 weights file")
        layers = _graph_layers(specs, lambda spec: _keras3_roles(f["layers"], spec, fallback, budget))
        n_parameters = _n_values(f["layers"])  # the file's "optimizer" group is not the model's
    info = ModelInfo(source=str(path), format="keras", path=str(path), producer="keras",
                     producer_version=metadata.get("keras_version"),
                     op_counts=MappingProxyType(dict(Counter(s.class_name for s in specs))),
                     n_parameters=n_parameters)
    return ModelRecord(info=info, layers=layers)


# ------------------------------------------------------------------------------------------ the reader
def _is_hdf5(head: bytes) -> bool:
    return any(head[off:off + 8] == HDF5_MAGIC for off in _HDF5_OFFSETS)


def _is_keras_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, NotImplementedError, EOFError):
        return False
    return {"config.json", "model.weights.h5"} <= names


class KerasReader:
    """Keras 2 HDF5 models and weight files, and Keras 3 ``.keras`` archives."""

    format: str = "keras"
    extensions: tuple[str, ...] = (".h5", ".hdf5", ".keras")
    description: str = "Keras model (HDF5 .h5/.hdf5 from Keras 2, .keras zip from Keras 3)"

    def sniff(self, path: Path, head: bytes) -> bool:
        """Any HDF5 file (the only HDF5 reader: not opened here, so the HDF5 library never parses bytes outside
        the isolated read), or a zip holding config.json and model.weights.h5."""
        if _is_hdf5(head):
            return True
        if head.startswith(ZIP_MAGIC):
            return _is_keras_zip(path)
        return False

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        """Read a Keras file; raises ModelFormatError naming the file when it is not a Keras model."""
        with open(path, "rb") as fh:
            head = fh.read(4096)
        budget = MemoryBudget.for_file(path, options.max_memory)
        # The HDF5 C library parses the bytes: run it in a child process, so a crash there is an error line.
        if head.startswith(ZIP_MAGIC):
            return read_isolated(path, "HDF5", lambda: _read_keras3(path, budget))
        if _is_hdf5(head):
            return read_isolated(path, "HDF5", lambda: _read_keras2(path, budget))
        raise ModelFormatError(f"{path}: neither an HDF5 file nor a .keras zip archive: not a Keras model")


register_reader(KerasReader())
