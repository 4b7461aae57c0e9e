"""Read ``torch.save`` state_dicts without torch: a restricted unpickler that rebuilds tensors as numpy.

The unpickler's ``find_class`` allows only what a state_dict needs: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the ``torch.*Storage`` types, each
replaced by a harmless stand-in. Any other global raises :class:`UnsafeFormatError`, so nothing in the file
can run code. Both container formats are handled:

* zip (torch >= 1.6): ``<archive>/data.pkl`` plus one raw little-endian storage per ``<archive>/data/<key>``;
* legacy: four pickles (magic number, protocol version, system info, the object) followed by a pickled list
  of storage keys and, per key, an int64 element count and the raw bytes.

Tensors are views into storages (offset and strides in elements), rebuilt with ``as_strided`` and copied.
bfloat16 storages are widened to float32 exactly (bf16 is the upper half of a float32).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from ..errors import ModelFormatError, UnsafeFormatError

__all__ = ["StoredTensor", "load"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# torch storage class -> (numpy dtype of the raw bytes, torch dtype name)
STORAGE_DTYPES = {
    "FloatStorage": ("<f4", "float32"), "DoubleStorage": ("<f8", "float64"), "HalfStorage": ("<f2", "float16"),
    "BFloat16Storage": ("<u2", "bfloat16"), "LongStorage": ("<i8", "int64"), "IntStorage": ("<i4", "int32"),
    "ShortStorage": ("<i2", "int16"), "CharStorage": ("i1", "int8"), "ByteStorage": ("u1", "uint8"),
    "BoolStorage": ("?", "bool"),
}


@dataclass(frozen=True)
class StoredTensor:
    """A tensor rebuilt without torch: its values (bfloat16 widened to float32) and its stored dtype."""

    array: np.ndarray
    dtype: str  # torch dtype name as stored: "float32", "bfloat16", ...

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class _StorageType:
    name: str  # "FloatStorage"


@dataclass
class _StorageRef:
    """A storage named by a persistent id; its bytes may arrive later (legacy format)."""

    key: str
    storage_type: _StorageType
    offset: int = 0  # legacy storage views: element offset into the root storage
    size: int | None = None


@dataclass
class _PendingTensor:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, size: Any, stride: Any, *_: Any) -> _PendingTensor:
    return _PendingTensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only the globals of a state_dict."""

    def __init__(self, fh: BinaryIO, path: Path, on_storage: Callable[[_StorageRef], None] | None = None) -> None:
        super().__init__(fh)
        self.path = path
        self.on_storage = on_storage  # the legacy format needs every storage's dtype before its bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeFormatError(
            f"{self.path}: the checkpoint pickles {module}.{name}, which a plain state_dict never holds; loading "
            "it would run code from the file, so it was refused (only torch can load it fully, and only with "
            "trust_pickle=True / --trust-pickle, for files you trust)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or _text(pid[0]) != "storage":
            raise ModelFormatError(f"{self.path}: unexpected persistent id {pid!r} in the pickle")
        storage_type, key = pid[1], _text(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise ModelFormatError(f"{self.path}: storage {key} has no storage type")
        ref = _StorageRef(key, storage_type)
        if len(pid) > 5 and pid[5] is not None:  # legacy view: (view_key, offset, view_size)
            ref.offset, ref.size = int(pid[5][1]), int(pid[5][2])
        if self.on_storage is not None:
            self.on_storage(ref)
        return ref


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _materialise(tensor: _PendingTensor, storages: dict[str, np.ndarray], path: Path) -> StoredTensor:
    raw_dtype, dtype = STORAGE_DTYPES[tensor.storage.storage_type.name]
    try:
        flat = storages[tensor.storage.key].view(raw_dtype)
    except KeyError:
        raise ModelFormatError(f"{path}: storage {tensor.storage.key} is missing") from None
    flat = flat[tensor.storage.offset:]
    if tensor.storage.size is not None:
        flat = flat[: tensor.storage.size]
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride) if n > 0)
    if any(n == 0 for n in tensor.size):
        array = np.zeros(tensor.size, raw_dtype)
    elif last >= flat.size or tensor.offset < 0 or min(tensor.stride, default=0) < 0:
        raise ModelFormatError(f"{path}: a tensor reaches past the end of storage {tensor.storage.key} (truncated?)")
    else:
        strides = tuple(s * flat.itemsize for s in tensor.stride)
        array = np.lib.stride_tricks.as_strided(flat[tensor.offset:], tensor.size, strides).copy()
    if dtype == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return StoredTensor(array.astype(array.dtype.newbyteorder("="), copy=False), dtype)


def _resolve(obj: Any, convert: Callable[[_PendingTensor], StoredTensor]) -> Any:
    """Replace pending tensors in nested dicts/lists/tuples."""
    if isinstance(obj, _PendingTensor):
        return convert(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, convert)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, convert) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise ModelFormatError(f"{path}: a zip archive without data.pkl is not a torch.save file")
        prefix = pkl[: -len("data.pkl")]
        obj = _RestrictedUnpickler(io.BytesIO(zf.read(pkl)), path).load()
        storages: dict[str, np.ndarray] = {}

        def convert(tensor: _PendingTensor) -> StoredTensor:
            key = tensor.storage.key
            if key not in storages:
                try:
                    storages[key] = np.frombuffer(zf.read(f"{prefix}data/{key}"), np.uint8)
                except KeyError:
                    raise ModelFormatError(f"{path}: storage data/{key} is missing from the archive") from None
            return _materialise(tensor, storages, path)

        return _resolve(obj, convert)


def _load_legacy(path: Path) -> Any:
    with open(path, "rb") as fh:
        if _RestrictedUnpickler(fh, path).load() != LEGACY_MAGIC_NUMBER:
            raise ModelFormatError(f"{path}: not a torch.save file (bad magic number)")
        if _RestrictedUnpickler(fh, path).load() != LEGACY_PROTOCOL:
            raise ModelFormatError(f"{path}: unknown legacy torch protocol version")
        sys_info = _RestrictedUnpickler(fh, path).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ModelFormatError(f"{path}: big-endian legacy torch files are not supported")
        refs: list[_StorageRef] = []
        obj = _RestrictedUnpickler(fh, path, on_storage=refs.append).load()
        keys = [_text(k) for k in _RestrictedUnpickler(fh, path).load()]
        itemsize = {r.key: np.dtype(STORAGE_DTYPES[r.storage_type.name][0]).itemsize for r in refs}
        storages = {}
        for key in keys:
            header = fh.read(8)
            if len(header) < 8 or key not in itemsize:
                raise ModelFormatError(f"{path}: the file ends inside storage {key} (truncated)")
            (numel,) = struct.unpack("<q", header)
            data = fh.read(numel * itemsize[key])
            if len(data) < numel * itemsize[key]:
                raise ModelFormatError(f"{path}: the file ends inside storage {key} (truncated)")
            storages[key] = np.frombuffer(data, np.uint8)
    return _resolve(obj, lambda t: _materialise(t, storages, path))


def load(path: Path) -> Any:
    """Unpickle a ``torch.save`` file with tensors as :class:`StoredTensor`, running no code from the file.

    Parameters
    ----------
    path : Path
        A zip-format or legacy-format torch file.

    Raises
    ------
    UnsafeFormatError
        The pickle names a global a state_dict never needs (a custom class, a function).
    ModelFormatError
        The file is truncated or not a torch file.
    """
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
        raise ModelFormatError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from e
