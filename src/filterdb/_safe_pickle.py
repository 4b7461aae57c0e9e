"""Unpickling data from untrusted files: only the globals of an allow-list, everything else refused.

A pickle runs code through the globals it names (``os.system`` as the callable of a REDUCE). An unpickler
whose ``find_class`` returns only known, harmless callables cannot run anything else: opcodes without a
global build only str, bytes, numbers, None, bool, lists, tuples, dicts and sets. Extension codes
(``EXT1``...) go through ``find_class`` too. The PyTorch reader (``readers/_torchfree.py``) and the CNN
Filter DB import (``store/_pandas_h5.py``) build their unpicklers on :class:`AllowListUnpickler`.

:data:`NUMPY_ARRAY_GLOBALS` is what a pickled numpy array needs, under numpy 1 and 2 module names, each a
stand-in: numpy's own ``ndarray.__setstate__`` trusts its state (an object array whose value list is
shorter than its shape crashes the interpreter), so no numpy class sees a state from the file. ``dtype``
builds only simple dtypes (numbers, text, objects); ``_reconstruct`` accepts only what ``ndarray.__reduce__``
pickles, ``(ndarray, (0,))`` (``numpy.ndarray`` is a name for it, not the constructor), and its
``__setstate__`` builds the array once shape, dtype and data agree, so a pickle never makes numpy
allocate more than the data it holds.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["AllowListUnpickler", "NUMPY_ARRAY_GLOBALS", "restricted_loads"]

Refusal = Callable[[str, str], Exception]  # (module, name) of a global that is not allowed -> the error to raise


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves a global only through ``allowed`` and raises ``refuse(module, name)`` else."""

    def __init__(self, fh: Any, allowed: Mapping[tuple[str, str], Any], refuse: Refusal) -> None:
        super().__init__(fh)
        self.allowed = allowed
        self.refuse = refuse

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise self.refuse(module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:40]!r}")


def restricted_loads(data: bytes, allowed: Mapping[tuple[str, str], Any], refuse: Refusal) -> Any:
    """``pickle.loads`` through an :class:`AllowListUnpickler`; a pickled numpy array comes back as an ndarray."""
    value = AllowListUnpickler(io.BytesIO(data), allowed, refuse).load()
    return value.result() if isinstance(value, _Array) else value


# numpy's own ndarray.__setstate__ trusts its state: an object array whose list is shorter than its shape
# crashes the interpreter. So no numpy class ever sees a state from the file: these stand-ins check it and
# build the array from the checked values.
_SIMPLE_KINDS = "biufcOSU"  # booleans, numbers, objects, text; no records, subarrays, datetimes or voids
_MAX_NDIM = 32


def _bad(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(what)


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` and its ``__setstate__``: a simple dtype, checked."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        try:
            value = np.dtype(spec) if isinstance(spec, str) and len(spec) <= 8 else None
        except TypeError:
            value = None
        if value is None or value.kind not in _SIMPLE_KINDS:
            raise _bad(f"numpy dtype {str(spec)[:20]!r} (only numbers, text and objects are read)")
        self.value: np.dtype = value

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, element size, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[2:5] != (None, None, None) \
                or (len(state) == 9 and state[8]) or state[1] not in ("<", ">", "|", "="):
            raise _bad(f"numpy dtype state {str(state)[:60]} (only simple dtypes are read)")
        value, size = self.value, state[5]
        if value.kind in "SU" and isinstance(size, int) and 0 < size <= 2**20:  # text: its width is in the state
            value = np.dtype(f"{value.kind}{size // 4 if value.kind == 'U' else size}")
        self.value = value.newbyteorder(state[1]) if state[1] in "<>" else value


def _dtype(value: Any) -> np.dtype:
    if not isinstance(value, _Dtype):
        raise _bad(f"{type(value).__name__} where a numpy dtype belongs")
    return value.value


class _NdarrayName:
    """What the global ``numpy.ndarray`` resolves to: a name for ``_reconstruct``, not a callable, because
    ``numpy.ndarray(shape)`` would allocate whatever shape the pickle asks for."""


_NDARRAY = _NdarrayName()


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise _bad(f"array shape {str(shape)[:40]}")
    return shape


class _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` and the ``__setstate__`` that follows: the
    array, built from a state whose shape, dtype and data agree."""

    def __init__(self) -> None:
        self.value: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _bad(f"array state {str(state)[:60]}")
        shape, dtype, fortran, raw = state[-4:]
        shape, dtype = _shape(shape), _dtype(dtype)
        count = math.prod(shape)
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != count:
                raise _bad(f"an object array of shape {shape} with {len(raw) if isinstance(raw, list) else 'no'} values")
            values = np.fromiter(raw, dtype=object, count=count).reshape(shape)  # numpy lists objects in C order
            self.value = np.asfortranarray(values) if fortran else values
            return
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != count * dtype.itemsize:
            raise _bad(f"an array of shape {shape} and {dtype} without its {count * dtype.itemsize} bytes")
        self.value = np.frombuffer(raw, dtype=dtype, count=count).copy().reshape(shape, order="F" if fortran else "C")

    def result(self) -> np.ndarray:
        if self.value is None:
            raise _bad("an array without its data")
        return self.value


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> _Array:
    """``numpy.core.multiarray._reconstruct`` for what ``ndarray.__reduce__`` pickles: an empty ndarray."""
    if subtype is not _NDARRAY or shape != (0,):
        raise _bad(f"_reconstruct with shape {str(shape)[:40]}, not numpy's (ndarray, (0,))")
    return _Array()


def _from_buffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays): the bytes the pickle holds, shaped."""
    dtype, shape = _dtype(dtype), _shape(shape)
    data = bytes(memoryview(buffer)) if isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)) else None
    count = math.prod(shape)
    if dtype.hasobject or data is None or len(data) != count * dtype.itemsize or order not in ("C", "F"):
        raise _bad(f"_frombuffer of shape {shape} and {dtype} from {type(buffer).__name__}")
    return np.frombuffer(data, dtype=dtype, count=count).copy().reshape(shape, order=order)


def _latin1_bytes(text: Any, encoding: str = "") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles (Python 2 era) use for every bytes object: latin-1 only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _bad(f"_codecs.encode with encoding {str(encoding)[:20]!r} (pickles use 'latin1')")
    return text.encode("latin-1")


def _scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` (a numpy scalar, such as a float64 in an object column)."""
    dtype = _dtype(dtype)
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _bad(f"a numpy {dtype} scalar from {type(data).__name__}")
    return np.frombuffer(data, dtype=dtype)[0]


NUMPY_ARRAY_GLOBALS: Mapping[tuple[str, str], Any] = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _empty_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _from_buffer for core in ("core", "_core")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1_bytes,
}
