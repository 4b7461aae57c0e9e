"""Unpickling data from untrusted files: only the globals of an allow-list, everything else refused.

A pickle runs code through the globals it names (``os.system`` as the callable of a REDUCE). An unpickler
whose ``find_class`` returns only known, harmless callables cannot run anything else: opcodes without a
global build only str, bytes, numbers, None, bool, lists, tuples, dicts and sets. Extension codes
(``EXT1``...) go through ``find_class`` too. The PyTorch reader (``readers/_torchfree.py``) and the CNN
Filter DB import (``store/_pandas_h5.py``) build their unpicklers on :class:`AllowListUnpickler`.

:data:`NUMPY_ARRAY_GLOBALS` is what a pickled numpy array needs, under numpy 1 and 2 module names. Its
``_reconstruct`` makes only the empty array that ``ndarray.__reduce__`` always pickles (shape ``(0,)``) and
``numpy.ndarray`` is a name for it, not the constructor; the data arrive with ``__setstate__``, whose length
numpy checks against the shape, so a pickle cannot make numpy allocate more than it holds.
"""

from __future__ import annotations

import io
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
    """``pickle.loads`` through an :class:`AllowListUnpickler`."""
    return AllowListUnpickler(io.BytesIO(data), allowed, refuse).load()


class _NdarrayName:
    """What the global ``numpy.ndarray`` resolves to: a name for ``_reconstruct``, not a callable, because
    ``numpy.ndarray(shape)`` would allocate whatever shape the pickle asks for."""


_NDARRAY = _NdarrayName()


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for what ``ndarray.__reduce__`` pickles: an empty ndarray."""
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,):
        raise pickle.UnpicklingError(f"_reconstruct with shape {str(shape)[:40]}, not numpy's (ndarray, (0,))")
    return np.ndarray((0,), dtype=np.dtype(dtype))


def _from_buffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays): a view of bytes the pickle holds."""
    return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape, order=order)


def _latin1_bytes(text: Any, encoding: str = "") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles (Python 2 era) use for every bytes object: latin-1 only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {str(encoding)[:20]!r} (pickles use 'latin1')")
    return text.encode("latin-1")


def _scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` (a numpy scalar, such as a float64 in an object column)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(f"a numpy {dtype} scalar from {len(data) if isinstance(data, bytes) else data!r}")
    return np.frombuffer(data, dtype=dtype)[0]


NUMPY_ARRAY_GLOBALS: Mapping[tuple[str, str], Any] = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _empty_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _from_buffer for core in ("core", "_core")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}
