"""The weights lineage looks at: a model's convolutions, from a file, a live model or a store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernel import kernel_key
from ..errors import FilterDBError

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["LineageError", "ModelWeights", "ConvWeight", "weights_of", "weights_from_store"]


class LineageError(FilterDBError, ValueError):
    """The models cannot be compared: no convolution weights, a name not in the store, no fingerprints."""


_DTYPE_BITS = {"float64": 64, "float32": 32, "bfloat16": 16, "float16": 16, "int8": 8, "uint8": 8, "int4": 4}


@dataclass(frozen=True, eq=False)
class ConvWeight:
    """One convolution's weight in filterdb's canonical layout (out, in/groups, *kernel), float32."""

    name: str
    weight: np.ndarray
    storage_dtype: str = "float32"  # the dtype in the file: lower precision marks an exported copy

    @property
    def kernel(self) -> str:
        return kernel_key(self.weight.shape[2:])

    @property
    def bits(self) -> int:
        return _DTYPE_BITS.get(self.storage_dtype, 32)


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """A model as lineage sees it: a name and its convolutions in graph order."""

    name: str
    layers: tuple[ConvWeight, ...]
    sha256: str | None = None
    precision: float = 0.0  # rounding of the source, as a share of each layer's largest weight (float16 stores)
    format: str | None = None  # the reader's format name ("onnx", "tflite", "pytorch", ...), where known

    def renamed(self, name: str) -> ModelWeights:
        return ModelWeights(name, self.layers, self.sha256, self.precision, self.format)


def weights_of(model: Any, *, name: str | None = None, trust_pickle: bool = False) -> ModelWeights:
    """Read anything :func:`filterdb.read_model` takes (or a ModelRecord / ModelWeights) into ModelWeights."""
    from ..types import ModelRecord

    if isinstance(model, ModelWeights):
        return model
    if not isinstance(model, ModelRecord):
        from .._read import read_model

        model = read_model(model, trust_pickle=trust_pickle)
    label = name or model.info.source
    layers = tuple(ConvWeight(layer.name, np.asarray(layer.weight, dtype=np.float32), layer.storage_dtype)
                   for layer in model.layers if layer.weight.ndim >= 3)
    if not layers:
        raise LineageError(f"{label}: the model has no convolution layers; lineage compares convolution weights, "
                           "so it cannot place this model (check it with `filterdb inspect`)")
    return ModelWeights(label, layers, model.info.sha256, format=model.info.format)


def weights_from_store(store: Store, model: str | int) -> ModelWeights:
    """The convolutions of a store's model (its newest version for a name), rebuilt from the stored filters.

    float16 stores keep each layer to float16 precision (relative 2^-11 of the layer's largest weight):
    enough for every relation but ``identical``, which the sha256 of the files decides there.
    """
    from ..store import StoreError, resolve_models

    try:
        model_id = resolve_models(store, model)[-1]
    except StoreError as e:
        raise LineageError(str(e)) from e
    info = store.sql("SELECT model, sha256, format FROM models WHERE model_id = ?", [model_id])
    rows = store.sql("SELECT layer_id, layer, kernel, shape, storage_dtype FROM layers WHERE model_id = ? "
                     "ORDER BY layer_index", [model_id])
    weights: dict[int, list[np.ndarray]] = {}
    for kernel in sorted(set(rows["kernel"])):
        layer_ids = [int(i) for i in rows["layer_id"][rows["kernel"] == kernel]]
        # layer_id is the one column the store's filter query cannot find ambiguous
        for batch, ids in store.iter_filters(kernel, "list_contains(?, layer_id)", [layer_ids], scaled=False,
                                             with_layer_ids=True):
            for layer_id in np.unique(ids):
                weights.setdefault(int(layer_id), []).append(batch[ids == layer_id])
    layers = []
    for layer_id, layer, _kernel, shape, dtype in rows.itertuples(index=False):
        parts = weights.get(int(layer_id))
        if not parts or len(shape) < 3:
            continue
        layers.append(ConvWeight(str(layer), np.concatenate(parts).reshape([int(s) for s in shape]), str(dtype)))
    label = str(info["model"].iloc[0])
    if not layers:
        raise LineageError(f"{store.root}: model {label!r} has no convolution layers in the store; lineage "
                           "compares convolution weights")
    # a float16 store keeps w / max|w| in float16: within 2^-11 of the layer's largest weight
    precision = 2.0**-11 if getattr(store, "dtype", "float32") == "float16" else 0.0
    fmt = info["format"].iloc[0]
    return ModelWeights(label, tuple(layers), str(info["sha256"].iloc[0]), precision,
                        None if fmt is None or fmt != fmt else str(fmt))  # fmt != fmt: a missing value (NaN)
