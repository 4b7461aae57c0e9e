"""``read_model``: the one entry point from "something that names a model" to a ModelRecord."""

from __future__ import annotations

import os
from typing import Any

from .errors import UnsupportedFormatError
from .readers import ReadOptions, read_object, read_path
from .sources import resolve_source
from .types import ModelRecord

__all__ = ["read_model"]


def read_model(model: Any, *, trust_pickle: bool = False, format: str | None = None,
               max_memory: int | str | None = None) -> ModelRecord:
    """Read a model into a :class:`~filterdb.ModelRecord` with all its convolution layers.

    Parameters
    ----------
    model : str, os.PathLike, torch.nn.Module or keras.Model
        A local file, a source name such as ``"pypi:nudenet==3.4.2#nudenet/320n.onnx"``, or a live model.
    trust_pickle : bool, default False
        Allow formats whose loading runs pickle code (joblib, plain pickle). Only for files you trust.
    format : str, optional
        Force a reader ("onnx", "pytorch", ...) instead of detecting the format from the content.
    max_memory : int or str, optional
        Bytes (or "4G", "512M") the read may allocate; a file declaring more is refused with
        :class:`~filterdb.errors.MemoryBudgetError` before anything is allocated. Default: the
        ``FILTERDB_MAX_MEMORY`` environment variable, else 4 x the file size + 512 MiB.

    Examples
    --------
    >>> record = read_model("pypi:facenet-pytorch==2.6.0#facenet_pytorch/data/pnet.pt")  # doctest: +SKIP
    >>> [layer.kernel for layer in record.layers]  # doctest: +SKIP
    [(3, 3), (3, 3), (3, 3), (1, 1), (1, 1)]
    """
    options = ReadOptions(trust_pickle=trust_pickle, format=format, max_memory=max_memory)
    if isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model)
        resolved = resolve_source(spec)
        return read_path(resolved.path, options, source=spec)
    record = read_object(model, options)
    if record is None:
        raise UnsupportedFormatError(
            f"cannot read a {type(model).__module__}.{type(model).__qualname__}: pass a file path, a source name "
            "(pypi:...), a torch.nn.Module or a Keras model"
        )
    return record
