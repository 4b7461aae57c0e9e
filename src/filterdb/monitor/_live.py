"""Live models as records: the conv layers of a training model with the weights they hold right now.

The readers' public dispatch (:func:`filterdb.readers.object_reader_for`) says which framework an object
belongs to and reads it. PyTorch modules get an adapter that reads the module once (a torch.fx trace, for
``conv_depth``) and afterwards only each conv module's current weight; any other framework the readers
know (Keras) is re-read through its object reader each time, whose config parse is cheap next to an epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import UnsupportedFormatError
from ..readers import ObjectReader, ReadOptions, object_reader_for
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

    def __init__(self, module: Any, reader: ObjectReader) -> None:
        self.module = module
        self.reader = reader
        self._template: ModelRecord | None = None  # names, kinds and depth from one torch.fx trace

    def record(self) -> ModelRecord:
        if self._template is None:
            record = _owned(self.reader.read_object(self.module, ReadOptions()))
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


class _ReaderModel:
    """Any framework the object readers know: the whole model re-read through its reader each time."""

    def __init__(self, model: Any, reader: ObjectReader) -> None:
        self.model = model
        self.reader = reader
        self.framework = reader.format

    def record(self) -> ModelRecord:
        return _owned(self.reader.read_object(self.model, ReadOptions()))

    def has_nonfinite(self) -> bool:
        return any(not np.isfinite(layer.weight).all() for layer in self.reader.read_object(self.model,
                                                                                          ReadOptions()).layers)


_ADAPTERS: dict[str, Callable[[Any, ObjectReader], LiveModel]] = {}


def register_live_model(format: str, adapter: Callable[[Any, ObjectReader], LiveModel]) -> None:
    """Watch the objects of one reader format (``ObjectReader.format``) with ``adapter(obj, reader)`` instead
    of re-reading them whole at every evaluation."""
    _ADAPTERS[format] = adapter


# The readers' dispatch decides the framework: on the torch backend a keras.Model is also a torch.nn.Module,
# and the Keras object reader, registered first, claims it.
register_live_model("pytorch", _TorchModule)


def live_model(obj: Any) -> LiveModel:
    """The adapter for a training model; raises UnsupportedFormatError for anything else."""
    reader = object_reader_for(obj)
    if reader is None:
        raise UnsupportedFormatError(
            f"filterdb.Monitor cannot watch a {type(obj).__module__}.{type(obj).__qualname__}: pass the "
            "torch.nn.Module or keras.Model that is being trained"
        )
    return _ADAPTERS.get(reader.format, _ReaderModel)(obj, reader)
