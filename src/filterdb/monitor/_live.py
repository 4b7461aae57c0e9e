"""Live models as records: the conv layers of a training model with the weights they hold right now.

One adapter per framework, chosen by a registry. The torch adapter traces the module once (torch.fx, for
``conv_depth``) and afterwards only reads each conv module's current weight; the Keras adapter re-reads
the model through filterdb's Keras object reader, whose config parse is cheap next to an epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from .._read import read_model
from ..errors import UnsupportedFormatError
from ..types import ModelRecord

__all__ = ["LiveModel", "live_model", "register_live_model"]


class LiveModel(Protocol):
    """A training model whose conv layers can be read at any moment."""

    framework: str  # "torch" | "keras"

    def record(self) -> ModelRecord:
        """The model's conv layers with their current weights (arrays the caller may keep)."""
        ...

    def has_nonfinite(self) -> bool:
        """Whether any conv weight holds NaN or ±Inf (cheap: no copy of the weights to the host)."""
        ...


class _TorchModule:
    framework = "torch"

    def __init__(self, module: Any) -> None:
        self.module = module
        self._template: ModelRecord | None = None  # names, kinds and depth from one torch.fx trace

    def record(self) -> ModelRecord:
        from ..readers._torch import module_record

        if self._template is None:
            record = _owned(module_record(self.module))
            # keep the structure only: a zero-byte stand-in, not a second host copy of every weight
            self._template = ModelRecord(info=record.info, layers=tuple(
                dataclasses.replace(layer, weight=np.broadcast_to(np.float32(0), layer.weight.shape))
                for layer in record.layers))
            return record
        modules = dict(self.module.named_modules())
        layers = tuple(dataclasses.replace(layer, weight=_torch_weight(modules[layer.name].weight))
                       for layer in self._template.layers)
        return ModelRecord(info=self._template.info, layers=layers)

    def has_nonfinite(self) -> bool:
        import torch

        if self._template is None:
            return False
        modules = dict(self.module.named_modules())
        with torch.no_grad():
            flags = [~torch.isfinite(modules[layer.name].weight).all() for layer in self._template.layers]
            return bool(torch.stack(flags).any()) if flags else False  # one device sync for all layers


def _torch_weight(weight: Any) -> np.ndarray:
    """The weight as a float32 host array that does not alias the live tensor (works for CUDA tensors)."""
    import torch

    with torch.no_grad():
        tensor = weight.detach()
        if tensor.dtype != torch.float32:
            tensor = tensor.float()
        return tensor.to("cpu", copy=True).numpy()


def _owned(record: ModelRecord) -> ModelRecord:
    """A record whose weights are copies: a CPU tensor's numpy view would change with the next step."""
    layers = tuple(dataclasses.replace(layer, weight=np.array(layer.weight, dtype=np.float32, copy=True))
                   for layer in record.layers)
    return ModelRecord(info=record.info, layers=layers)


class _KerasModel:
    framework = "keras"

    def __init__(self, model: Any) -> None:
        self.model = model

    def record(self) -> ModelRecord:
        return _owned(read_model(self.model))

    def has_nonfinite(self) -> bool:
        return any(not np.isfinite(layer.weight).all() for layer in read_model(self.model).layers)


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(obj).__mro__)


def _is_keras_model(obj: Any) -> bool:
    from ..readers._keras_live import KerasObjectReader

    return KerasObjectReader().accepts(obj)


_ADAPTERS: list[tuple[Callable[[Any], bool], Callable[[Any], LiveModel]]] = []


def register_live_model(accepts: Callable[[Any], bool], adapter: Callable[[Any], LiveModel]) -> None:
    """Add a framework: ``accepts(obj)`` says whether ``adapter(obj)`` can read the object."""
    _ADAPTERS.append((accepts, adapter))


# Keras first: on the torch backend a keras.Model is also a torch.nn.Module, but its layers are Keras layers.
register_live_model(_is_keras_model, _KerasModel)
register_live_model(_is_torch_module, _TorchModule)


def live_model(obj: Any) -> LiveModel:
    """The adapter for a training model; raises UnsupportedFormatError for anything else."""
    for accepts, adapter in _ADAPTERS:
        if accepts(obj):
            return adapter(obj)
    raise UnsupportedFormatError(
        f"filterdb.Monitor cannot watch a {type(obj).__module__}.{type(obj).__qualname__}: pass the "
        "torch.nn.Module or keras.Model that is being trained"
    )
