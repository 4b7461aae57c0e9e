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

TorchScript archives (``torch.jit.save``) hold the same ``data.pkl`` + ``data/``; their pickle also names the
archive's own module classes (``__torch__.*``). :func:`load_script` rebuilds those as inert
:class:`ScriptObject` records (class name and attribute dict): no method of the archive ever runs.

Every size the file declares is checked against the read's :class:`~filterdb._budget.MemoryBudget` before
allocating, zip members are read no further than their declared size, and zipfile verifies each member's
CRC-32 as it is read.
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

from .._budget import MemoryBudget
from .._format import count, size as byte_size
from .._safe_pickle import AllowListUnpickler
from ..errors import ModelFormatError, UnsafeFormatError

__all__ = ["StoredTensor", "ScriptObject", "load", "load_script", "read_member"]

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


class ScriptObject:
    """An object of a TorchScript archive's own class, rebuilt as data: its class name and attributes."""

    qualname = ""  # "__torch__.torch.nn.modules.conv.___torch_mangle_1.Conv2d", set per class

    def __init__(self, *_: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {}


def _identity(value: Any, *_: Any) -> Any:
    return value


def _as_list(value: Any, *_: Any) -> list[Any]:
    return list(value)


# TorchScript's pickler wraps typed containers in these helpers; each just returns its argument.
_SCRIPT_HELPERS = {
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    ("torch.jit._pickle", "build_intlist"): _as_list,
    ("torch.jit._pickle", "build_doublelist"): _as_list,
    ("torch.jit._pickle", "build_boollist"): _as_list,
    ("torch.jit._pickle", "build_tensorlist"): _as_list,
}


# The globals of a state_dict, each a harmless stand-in (AllowListUnpickler refuses every other one).
_STATE_DICT_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(AllowListUnpickler):
    """Unpickler that knows only the globals of a state_dict."""

    def __init__(self, fh: BinaryIO, path: Path, on_storage: Callable[[_StorageRef], None] | None = None,
                 script: bool = False) -> None:
        super().__init__(fh, _STATE_DICT_GLOBALS, self._refusal)
        self.path = path
        self.on_storage = on_storage  # the legacy format needs every storage's dtype before its bytes
        self.script = script  # a TorchScript archive: its own classes become inert ScriptObjects
        self.script_classes: dict[str, type[ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if self.script and (module == "__torch__" or module.startswith("__torch__.")):
            qualname = f"{module}.{name}"
            if qualname not in self.script_classes:
                self.script_classes[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname})
            return self.script_classes[qualname]
        if self.script and (module, name) in _SCRIPT_HELPERS:
            return _SCRIPT_HELPERS[(module, name)]
        return super().find_class(module, name)

    def _refusal(self, module: str, name: str) -> Exception:
        what = "TorchScript archive" if self.script else "checkpoint"
        return UnsafeFormatError(
            f"{self.path}: the {what} pickles {module}.{name}, which filterdb's safe loader does not know; "
            "loading it would run code from the file, so it was refused (only torch can load it fully, and only "
            "with trust_pickle=True / --trust-pickle, for files you trust)"
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


def _materialise(tensor: _PendingTensor, storages: dict[str, np.ndarray], path: Path,
                 budget: MemoryBudget) -> StoredTensor:
    raw_dtype, dtype = STORAGE_DTYPES[tensor.storage.storage_type.name]
    if any(n < 0 for n in tensor.size) or len(tensor.size) > 32 or len(tensor.stride) != len(tensor.size):
        raise ModelFormatError(f"{path}: a tensor of storage {tensor.storage.key} has an invalid shape "
                               f"{tensor.size} / strides {tensor.stride}; the file is corrupt")
    numel = int(np.prod(tensor.size, dtype=object))
    width = 4 if dtype == "bfloat16" else np.dtype(raw_dtype).itemsize
    budget.claim(numel * width, f"a tensor of shape {tensor.size} in storage {tensor.storage.key}")
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


def _resolve(obj: Any, convert: Callable[[_PendingTensor], StoredTensor], memo: dict[int, Any] | None = None) -> Any:
    """Replace pending tensors in nested dicts/lists/tuples and ScriptObject attributes.

    Memoised by object identity: a pickle may share one container many times (a DAG whose unfolding would
    be exponential), and each is visited once.
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _PendingTensor):
        out: Any = convert(obj)
    elif isinstance(obj, ScriptObject):
        memo[id(obj)] = obj  # set first: a module may refer back to itself
        obj.state = {k: _resolve(v, convert, memo) for k, v in obj.state.items()}
        return obj
    elif isinstance(obj, dict):
        out = type(obj)((k, _resolve(v, convert, memo)) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_resolve(v, convert, memo) for v in obj)
    else:
        return obj
    memo[id(obj)] = out
    return out


def read_member(zf: zipfile.ZipFile, name: str, path: Path, budget: MemoryBudget) -> bytes:
    """One zip member's bytes, its declared size checked against the budget first, its CRC-32 verified.

    Reading stops at the declared size, so a member that inflates beyond it (a zip bomb) costs nothing.
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFormatError(f"{path}: {name} is missing from the archive") from None
    budget.claim(info.file_size, f"zip member {name} ({byte_size(info.compress_size, exact=True)} compressed)")
    with zf.open(info) as fh:  # zipfile raises BadZipFile("Bad CRC-32 ...") when the member is damaged
        data = fh.read(info.file_size)
        fh.read(1)  # reach the end, where the CRC is checked
    if len(data) != info.file_size:
        raise ModelFormatError(f"{path}: zip member {name} is shorter than its declared size (truncated)")
    return data


def _load_zip(path: Path, budget: MemoryBudget, script: bool = False) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") <= 1), None)
        if pkl is None:
            raise ModelFormatError(f"{path}: a zip archive without data.pkl is not a torch.save file")
        prefix = pkl[: -len("data.pkl")]
        obj = _RestrictedUnpickler(io.BytesIO(read_member(zf, pkl, path, budget)), path, script=script).load()
        storages: dict[str, np.ndarray] = {}

        def convert(tensor: _PendingTensor) -> StoredTensor:
            key = tensor.storage.key
            if key not in storages:
                storages[key] = np.frombuffer(read_member(zf, f"{prefix}data/{key}", path, budget), np.uint8)
            return _materialise(tensor, storages, path, budget)

        return _resolve(obj, convert)


def _load_legacy(path: Path, budget: MemoryBudget) -> Any:
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
            budget.claim(numel * itemsize[key], f"storage {key} ({count(numel)} elements)")
            data = fh.read(numel * itemsize[key])
            if len(data) < numel * itemsize[key]:
                raise ModelFormatError(f"{path}: the file ends inside storage {key} (truncated)")
            storages[key] = np.frombuffer(data, np.uint8)
    return _resolve(obj, lambda t: _materialise(t, storages, path, budget))


def load(path: Path, budget: MemoryBudget | None = None) -> Any:
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
    MemoryBudgetError
        The file declares more data than ``budget`` allows (default: :meth:`MemoryBudget.for_file`).
    """
    budget = budget or MemoryBudget.for_file(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, budget)
        return _load_legacy(path, budget)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
        raise ModelFormatError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from e


def load_script(path: Path, budget: MemoryBudget) -> Any:
    """The object tree of a TorchScript archive's ``data.pkl``, modules as :class:`ScriptObject`, no code run."""
    try:
        return _load_zip(path, budget, script=True)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
        raise ModelFormatError(f"{path}: not a readable TorchScript archive ({type(e).__name__}: {e})") from e
