"""Keras model configs (the JSON in an HDF5 ``model_config`` attribute or a ``.keras`` zip's config.json).

Turns a config into a flat list of :class:`LayerSpec` with each layer's graph predecessors, for Keras 2
(``inbound_nodes`` as ``[[name, node, tensor, kwargs], ...]``) and Keras 3 (``inbound_nodes`` as
``{"args": [...], "kwargs": {...}}`` with ``keras_history`` entries), Sequential and Functional models, and
models nested inside models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CONTAINER_CLASSES", "LayerSpec", "parse_model_config", "snake_case"]

# Layer classes that hold other layers (their "layers" are flattened into the outer graph).
CONTAINER_CLASSES = frozenset({"Functional", "Model", "Sequential"})


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a (possibly nested) Keras model."""

    path: tuple[str, ...]  # layer names from the outermost model down to this layer
    class_name: str  # Keras class, e.g. "Conv2D"
    config: Mapping[str, Any]  # the layer's own config dict
    preds: tuple[str, ...]  # keys (see ``key``) of the nodes this layer consumes

    @property
    def name(self) -> str:
        """The layer's own name."""
        return self.path[-1]

    @property
    def key(self) -> str:
        """Unique node key: the path joined with '/'."""
        return "/".join(self.path)


def snake_case(name: str) -> str:
    """Keras' own class-name to snake-case rule (``Conv2DTranspose`` -> ``conv2d_transpose``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _history_names(obj: Any) -> Iterator[str]:
    """Names of the layers whose outputs an ``inbound_nodes`` entry refers to, in any Keras encoding."""
    if isinstance(obj, dict):
        history = obj.get("keras_history")
        if isinstance(history, (list, tuple)) and history and isinstance(history[0], str):
            yield history[0]  # Keras 3: {"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}
            return
        for value in obj.values():
            yield from _history_names(value)
    elif isinstance(obj, (list, tuple)):
        # Keras 2: [layer_name, node_index, tensor_index, kwargs]; kwargs may hold more tensors.
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
            yield obj[0]
            for rest in obj[3:]:
                yield from _history_names(rest)
            return
        for item in obj:
            yield from _history_names(item)


def _layer_list(config: Any) -> list[dict[str, Any]]:
    # Keras <= 2.2 wrote a Sequential's config as the bare list of layers.
    if isinstance(config, list):
        return config
    layers = config.get("layers", []) if isinstance(config, dict) else []
    return list(layers)


def _layer_name(layer: Mapping[str, Any], index: int) -> str:
    name = layer.get("name") or (layer.get("config") or {}).get("name")
    return str(name) if name else f"layer_{index}"


def _output_names(class_name: str, config: Any, layers: Sequence[dict[str, Any]]) -> list[str]:
    if class_name != "Sequential" and isinstance(config, dict) and config.get("output_layers"):
        return list(dict.fromkeys(_history_names(config["output_layers"])))
    return [_layer_name(layers[-1], len(layers) - 1)] if layers else []


def _flatten(
    class_name: str, config: Any, prefix: tuple[str, ...], outer_preds: tuple[str, ...]
) -> tuple[list[LayerSpec], list[str]]:
    """Flatten one model; returns its layers and the keys of its output nodes."""
    layers = _layer_list(config)
    names = [_layer_name(layer, i) for i, layer in enumerate(layers)]
    key = {name: "/".join(prefix + (name,)) for name in names}
    specs: list[LayerSpec] = []
    previous: tuple[str, ...] = outer_preds
    for layer, name in zip(layers, names):
        inner_class = str(layer.get("class_name", ""))
        if class_name == "Sequential":
            preds = previous
        else:
            inbound = list(dict.fromkeys(_history_names(layer.get("inbound_nodes", []))))
            preds = tuple(key.get(n, n) for n in inbound) if inbound else outer_preds
        if inner_class in CONTAINER_CLASSES:
            inner_specs, inner_outputs = _flatten(inner_class, layer.get("config", {}), prefix + (name,), preds)
            specs.extend(inner_specs)
            # The container is a pass-through node: consumers of it depend on its inner outputs.
            specs.append(LayerSpec(prefix + (name,), inner_class, layer.get("config") or {}, tuple(inner_outputs)))
        else:
            specs.append(LayerSpec(prefix + (name,), inner_class, layer.get("config") or {}, preds))
        previous = (key[name],)
    outputs = [key.get(n, n) for n in _output_names(class_name, config, layers)]
    return specs, outputs


def parse_model_config(model_config: Mapping[str, Any]) -> list[LayerSpec]:
    """Flatten a Keras model config into layers with graph predecessors.

    Parameters
    ----------
    model_config : mapping
        The decoded JSON: ``{"class_name": "Functional", "config": {"layers": [...], ...}}``.

    Returns
    -------
    list of LayerSpec
        Every layer in config order; nested models are expanded in place (their layers come first,
        then a pass-through node for the container itself).

    Examples
    --------
    >>> cfg = {"class_name": "Sequential", "config": {"layers": [
    ...     {"class_name": "Conv2D", "config": {"name": "a"}}, {"class_name": "Conv2D", "config": {"name": "b"}}]}}
    >>> [(s.name, s.preds) for s in parse_model_config(cfg)]
    [('a', ()), ('b', ('a',))]
    """
    class_name = str(model_config.get("class_name", ""))
    specs, _ = _flatten(class_name, model_config.get("config", {}), (), ())
    return specs
