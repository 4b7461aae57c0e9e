"""ONNX protobuf parsing and tensor decoding, light and bounded.

``import onnx`` costs seconds (its helpers import ml_dtypes, whose native extension alone took 1-2 s on the
machines we measured); reading a model needs only the generated protobuf classes. :func:`model_proto`
loads ``onnx/onnx_ml_pb2.py`` under its own name without running the onnx package's ``__init__``; a later
``import onnx`` finds that module in ``sys.modules`` and uses the very same classes.

:func:`to_array` decodes a TensorProto itself for the common dtypes, after checking the declared shape
against the data actually stored and against the read's memory budget; rare dtypes (float8, int4, ...)
go through ``onnx.numpy_helper`` once their size has been checked the same way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._budget import MemoryBudget
from ..errors import ModelFormatError, missing_dependency

__all__ = ["model_proto", "to_array", "dims_of", "text", "NP_DTYPES"]

# TensorProto.DataType -> (numpy dtype of the values, name of the repeated field that holds them when the
# tensor has no raw_data, and the dtype name filterdb reports as the storage type)
NP_DTYPES: dict[int, tuple[str, str, str]] = {
    1: ("<f4", "float_data", "float32"), 2: ("u1", "int32_data", "uint8"), 3: ("i1", "int32_data", "int8"),
    4: ("<u2", "int32_data", "uint16"), 5: ("<i2", "int32_data", "int16"), 6: ("<i4", "int32_data", "int32"),
    7: ("<i8", "int64_data", "int64"), 9: ("?", "int32_data", "bool"), 10: ("<f2", "int32_data", "float16"),
    11: ("<f8", "double_data", "float64"), 12: ("<u4", "uint64_data", "uint32"),
    13: ("<u8", "uint64_data", "uint64"), 16: ("<u2", "int32_data", "bfloat16"),
}
_BITS_IN_INT32 = {10, 16}  # float16 / bfloat16 values stored as their bit patterns in int32_data
_MAX_RANK = 32


def model_proto() -> Any:
    """The ``ModelProto`` class, imported without the rest of the onnx package."""
    name = "onnx.onnx_ml_pb2"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.find_spec("onnx")
        if spec is None or not spec.submodule_search_locations:
            raise missing_dependency("onnx", "reading .onnx files")
        location = Path(next(iter(spec.submodule_search_locations))) / "onnx_ml_pb2.py"
        if not location.is_file():  # an unusual onnx build: take the ordinary route
            import onnx

            return onnx.ModelProto
        file_spec = importlib.util.spec_from_file_location(name, location)
        assert file_spec is not None and file_spec.loader is not None
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        try:
            file_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return module.ModelProto


def text(value: Any) -> str:
    """A name or string field as text: ONNX is proto2, so invalid UTF-8 arrives as bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dims_of(tensor: Any, what: str, path: Path) -> tuple[int, ...]:
    """A tensor's declared shape, refused when a dimension is negative or the rank absurd."""
    dims = tuple(int(d) for d in tensor.dims)
    if len(dims) > _MAX_RANK or any(d < 0 for d in dims):
        raise ModelFormatError(f"{path}: {what} declares the invalid shape {dims}; the file is corrupt")
    return dims


def _numel(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def to_array(tensor: Any, budget: MemoryBudget, what: str) -> tuple[np.ndarray, str]:
    """(values, storage dtype name) of a TensorProto; sizes checked before anything is allocated.

    bfloat16 values are widened to float32 exactly (numpy has no bfloat16).
    """
    path = budget.path
    dims = dims_of(tensor, what, path)
    numel = _numel(dims)
    if tensor.data_location == 1:  # EXTERNAL, not loaded: the caller loads external data first
        raise ModelFormatError(f"{path}: {what} is stored in an external file that was not loaded")
    if tensor.data_type not in NP_DTYPES:
        return _rare_dtype(tensor, dims, numel, budget, what)
    raw_dtype, field, name = NP_DTYPES[tensor.data_type]
    itemsize = np.dtype(raw_dtype).itemsize
    budget.check(numel * max(itemsize, 4 if name == "bfloat16" else itemsize), f"{what} {dims}")
    if tensor.HasField("raw_data"):
        raw = tensor.raw_data
        if len(raw) != numel * itemsize:
            raise ModelFormatError(f"{path}: {what} declares shape {dims} ({numel:,} x {itemsize} bytes) but stores "
                                   f"{len(raw):,} bytes; the file is corrupt")
        array = np.frombuffer(raw, raw_dtype, count=numel)
    else:
        values = getattr(tensor, field)
        if len(values) != numel:
            raise ModelFormatError(f"{path}: {what} declares shape {dims} ({numel:,} values) but stores "
                                   f"{len(values):,}; the file is corrupt")
        if tensor.data_type in _BITS_IN_INT32:
            array = np.asarray(values, np.int64).astype("<u2").view(raw_dtype)
        else:
            array = np.asarray(values).astype(raw_dtype)
    if name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    return array.reshape(dims), name


def _rare_dtype(tensor: Any, dims: tuple[int, ...], numel: int, budget: MemoryBudget,
                what: str) -> tuple[np.ndarray, str]:
    """float8 / int4 / complex / string tensors, through onnx.numpy_helper once their size is known to fit."""
    budget.check(numel * 16, f"{what} {dims}")
    from onnx.numpy_helper import to_array as onnx_to_array

    array = onnx_to_array(tensor)
    return array, str(array.dtype)
