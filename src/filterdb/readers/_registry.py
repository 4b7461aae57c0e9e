"""The reader registry: one reader per file format, chosen by content first, extension second.

A new format is a new module with a class that satisfies :class:`Reader` and one call to
:func:`register_reader` (see ``readers/__init__.py``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np

from .._hashing import file_sha256
from ..errors import FilterDBError, MemoryBudgetError, ModelFormatError, ModelNotFoundError, UnsupportedFormatError
from ..types import ConvLayer, LayerKind, ModelRecord

__all__ = [
    "ReadOptions",
    "Reader",
    "ObjectReader",
    "register_reader",
    "register_object_reader",
    "registered_readers",
    "reader_for_path",
    "read_path",
    "object_reader_for",
    "read_object",
    "make_layer",
    "HEAD_BYTES",
]

HEAD_BYTES = 4096  # how much of a file the sniffers see


@dataclass(frozen=True)
class ReadOptions:
    """How to read a model."""

    trust_pickle: bool = False  # allow formats that run pickle code on load (joblib, plain pickle, full torch pickles)
    format: str | None = None  # force a reader by name instead of detecting it
    max_memory: int | str | None = None  # bytes ("4G") a read may allocate; None: $FILTERDB_MAX_MEMORY or 4x file + 512M


@runtime_checkable
class Reader(Protocol):
    """Reads one file format into a :class:`ModelRecord`."""

    format: str  # short name, shown to users: "onnx"
    extensions: tuple[str, ...]  # lower-case suffixes with the dot: (".onnx",)
    description: str  # one line for `filterdb formats` and error messages

    def sniff(self, path: Path, head: bytes) -> bool:
        """True when the first bytes say the file is in this format (no full parse)."""
        ...

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        """Read the file; raise ModelFormatError (naming the path) when it is not readable."""
        ...


@runtime_checkable
class ObjectReader(Protocol):
    """Reads a live in-memory model (a torch.nn.Module, a Keras model)."""

    format: str

    def accepts(self, obj: Any) -> bool: ...

    def read_object(self, obj: Any, options: ReadOptions) -> ModelRecord: ...


_READERS: dict[str, Reader] = {}
_OBJECT_READERS: dict[str, ObjectReader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add a file reader to the registry (a later registration of the same format replaces it)."""
    _READERS[reader.format] = reader
    return reader


def register_object_reader(reader: ObjectReader) -> ObjectReader:
    """Add a reader of live model objects to the registry."""
    _OBJECT_READERS[reader.format] = reader
    return reader


def registered_readers() -> dict[str, Reader]:
    """The registered file readers by format name."""
    return dict(_READERS)


def _supported_extensions() -> str:
    return ", ".join(sorted({ext for r in _READERS.values() for ext in r.extensions}))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFormatError(f"{path}: is a directory, expected a model file")
    if not path.is_file():
        raise ModelFormatError(f"{path}: is not a regular file")
    if path.stat().st_size == 0:
        raise ModelFormatError(f"{path}: the file is empty (0 bytes)")


def reader_for_path(path: Path, options: ReadOptions = ReadOptions()) -> Reader:
    """The reader for a file: by its first bytes, else by its extension."""
    _check_file(path)
    if options.format is not None:
        try:
            return _READERS[options.format]
        except KeyError:
            raise UnsupportedFormatError(
                f"unknown format {options.format!r}; known formats: {', '.join(sorted(_READERS))}"
            ) from None
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot open the file: {e.strerror or e}") from e
    for reader in _READERS.values():
        if reader.sniff(path, head):
            return reader
    suffix = path.suffix.lower()
    for reader in _READERS.values():
        if suffix in reader.extensions:
            return reader
    raise UnsupportedFormatError(
        f"{path}: not a model file filterdb can read (content not recognised, extension {suffix or 'none'!r}); "
        f"supported: {_supported_extensions()}"
    )


def read_path(
    path: Path | str, options: ReadOptions = ReadOptions(), *, source: str | None = None, sha256: str | None = None
) -> ModelRecord:
    """Read a local model file with the reader its content calls for.

    Any unexpected exception while sniffing or reading becomes a :class:`ModelFormatError` that names the
    file: corrupt input must end in a clear message, never in a traceback from a parsing library. ``sha256``:
    the file's hash when the caller already has it (ingest hashes before reading), so it is not computed twice.
    """
    path = Path(os.fspath(path))
    with _reader_errors(path, "model"):
        reader = reader_for_path(path, options)
    # the file's hash is computed beside the read, not after it (hashlib releases the GIL): on a 100 MB model
    # that is a tenth of `filterdb prune`'s time saved where a second core is free (docs/prune.md, "Speed")
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(file_sha256, path) if sha256 is None else None
        with _reader_errors(path, reader.format):
            record = reader.read(path, options)
        info = replace(
            record.info,
            source=source or record.info.source or str(path),
            path=str(path),
            sha256=sha256 or record.info.sha256 or (digest.result() if digest is not None else file_sha256(path)),
            size_bytes=path.stat().st_size,
        )
    return ModelRecord(info=info, layers=record.layers)


@contextmanager
def _reader_errors(path: Path, what: str) -> Iterator[None]:
    """Turn what a parsing library raises on corrupt bytes into a ModelFormatError naming the file."""
    try:
        yield
    except FilterDBError as e:
        if str(path) in str(e):
            raise
        raise type(e)(f"{path}: {e}") from e  # every message names the file
    except MemoryError as e:
        raise MemoryBudgetError(f"{path}: ran out of memory while reading it as {what}; the file declares more "
                                "data than fits (lower --max-memory to refuse such files before allocating)") from e
    except RecursionError as e:
        raise ModelFormatError(f"{path}: not a readable {what} file (nested too deeply)") from e
    except Exception as e:  # noqa: BLE001 - third-party parsers raise anything on corrupt bytes
        text = str(e).strip()
        detail = text.splitlines()[0][:300] if text else type(e).__name__
        raise ModelFormatError(f"{path}: not a readable {what} file ({detail})") from e


def object_reader_for(obj: Any) -> ObjectReader | None:
    """The reader of a live model object (the first registered that accepts it; its ``format`` names the
    framework: "keras", "pytorch"); None when no object reader accepts it."""
    for reader in _OBJECT_READERS.values():
        if reader.accepts(obj):
            return reader
    return None


def read_object(obj: Any, options: ReadOptions = ReadOptions()) -> ModelRecord | None:
    """Read a live model object; None when no object reader accepts it."""
    reader = object_reader_for(obj)
    return None if reader is None else reader.read_object(obj, options)


def classify_kind(weight_shape: tuple[int, ...], groups: int, transposed: bool) -> LayerKind:
    """conv / grouped / depthwise / transpose from a weight's canonical shape and its groups."""
    if transposed:
        return "transpose"
    if groups > 1 and weight_shape[1] == 1:
        return "depthwise"
    if groups > 1:
        return "grouped"
    return "conv"


def make_layer(
    name: str,
    op_type: str,
    weight: Any,
    *,
    groups: int = 1,
    transposed: bool = False,
    storage_dtype: str | None = None,
    stride: tuple[int, ...] | None = None,
    dilation: tuple[int, ...] | None = None,
    notes: tuple[str, ...] = (),
    kind: LayerKind | None = None,
) -> ConvLayer:
    """Build a ConvLayer from a weight already in canonical layout, converting it to float32."""
    array = np.asarray(weight)
    dtype = storage_dtype or str(array.dtype)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim < 3:
        raise ModelFormatError(f"layer {name!r}: a convolution weight needs >= 3 dimensions, got shape {array.shape}")
    if min(array.shape[2:]) < 1:  # a kernel key (and every metric) needs sizes >= 1: the file's fault, not a usage
        raise ModelFormatError(f"layer {name!r}: kernel size {tuple(array.shape[2:])} has a 0; a convolution kernel "
                               "needs sizes >= 1, so the file is corrupt")
    # The weight's first axis (out channels; in channels when transposed) is split into `groups` groups.
    if not 1 <= int(groups) <= max(array.shape[0], 1) or array.shape[0] % int(groups):
        raise ModelFormatError(f"layer {name!r}: groups={int(groups)} cannot split a weight of shape {array.shape} "
                         f"(it must be >= 1 and divide {array.shape[0]}); the file is corrupt")
    return ConvLayer(
        name=name,
        op_type=op_type,
        kind=kind or classify_kind(array.shape, groups, transposed),
        weight=array,
        groups=int(groups),
        stride=tuple(int(s) for s in stride) if stride is not None else None,
        dilation=tuple(int(d) for d in dilation) if dilation is not None else None,
        storage_dtype=dtype,
        notes=tuple(notes),
    )
