"""Reader for live Keras model objects (Keras 3 on any backend, and tf.keras).

The model's own ``get_config()`` gives the graph (parsed exactly as a saved file's config) and its
variables give the kernels, so a live model and the same model saved to ``.keras`` read identically.
Keras is never imported here: a Keras model object can only exist when the user already imported it.
"""

from __future__ import annotations

import sys
from collections import Counter
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..types import ModelInfo, ModelRecord
from ._keras import _graph_layers, _order_layers, _role
from ._keras_config import parse_model_config
from ._registry import ReadOptions, register_object_reader

__all__ = ["KerasObjectReader"]


def _model_classes() -> tuple[type, ...]:
    classes = []
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(getattr(keras, "Model", None), type):
        classes.append(keras.Model)
    tf = sys.modules.get("tensorflow")
    tf_keras = getattr(tf, "keras", None) if tf is not None else None
    if tf_keras is not None and isinstance(getattr(tf_keras, "Model", None), type):
        classes.append(tf_keras.Model)
    return tuple(classes)


def _roles(layer: Any) -> dict[str, np.ndarray]:
    roles: dict[str, np.ndarray] = {}
    for variable in layer.weights:
        name = getattr(variable, "path", None) or variable.name
        roles[_role(name)] = np.asarray(variable.numpy())
    return roles


def _find_layer(model: Any, path: tuple[str, ...]) -> Any:
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return layer


def _config(model: Any) -> dict[str, Any] | None:
    """The model's config as a saved file holds it, or None for subclassed models without one."""
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError):
        return None
    if not isinstance(config, dict) or "layers" not in config:
        return None
    return {"class_name": type(model).__name__, "config": config}


def _flat_layers(model: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for layer in model.layers:
        path = prefix + (layer.name,)
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_flat_layers(layer, path))
        else:
            out.append((path, layer))
    return out


class KerasObjectReader:
    """Reads a ``keras.Model`` (functional, sequential, or subclassed) held in memory."""

    format: str = "keras"

    def accepts(self, obj: Any) -> bool:
        classes = _model_classes()
        return bool(classes) and isinstance(obj, classes)

    def read_object(self, obj: Any, options: ReadOptions) -> ModelRecord:
        if not getattr(obj, "built", True):
            raise ModelFormatError(
                f"the Keras model {obj.name!r} is not built yet, so it has no weights: call it on an input "
                "or build() it first"
            )
        config = _config(obj)
        notes: tuple[str, ...] = ()
        if config is not None:
            specs = parse_model_config(config)
            layers = _graph_layers(specs, lambda spec: _roles(_find_layer(obj, spec.path)))
            op_counts = Counter(s.class_name for s in specs)
        else:
            flat = _flat_layers(obj)
            layers = _order_layers(("/".join(path), _roles(layer)) for path, layer in flat)
            op_counts = Counter(type(layer).__name__ for _, layer in flat)
            notes = ("subclassed model without a config: depth from layer order",)
        keras = sys.modules.get("keras")
        info = ModelInfo(
            source=f"<{type(obj).__module__}.{type(obj).__qualname__} {obj.name!r}>",
            format="keras",
            producer="keras",
            producer_version=getattr(keras, "__version__", None),
            op_counts=MappingProxyType(dict(op_counts)),
            n_parameters=int(sum(int(np.prod(v.shape)) for v in obj.weights)),
            notes=notes,
        )
        return ModelRecord(info=info, layers=layers)


register_object_reader(KerasObjectReader())
