"""Run a reader in a forked child process, so that a crash of native parsing code cannot kill filterdb.

HDF5 is parsed by the HDF5 C library, which has crashed on malformed files before; a segfault there must
end in an error line (and ``ingest --keep-going`` must go on), not in exit code 139. The child reads the
file and sends the record back as JSON plus an ``.npz`` of the weights (``allow_pickle=False``): no pickle
crosses from the process that touched the hostile bytes. Where ``os.fork`` does not exist the reader runs
in-process.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from .. import errors
from ..errors import FilterDBError, ModelFormatError
from ..types import ConvLayer, ModelInfo, ModelRecord

__all__ = ["read_isolated"]

_LAYER_FIELDS = ("name", "op_type", "kind", "groups", "stride", "dilation", "conv_depth", "conv_depth_norm",
                 "depth_source", "storage_dtype", "notes")
_INFO_FIELDS = ("source", "format", "path", "producer", "producer_version", "opset", "n_parameters", "sha256",
                "size_bytes", "notes")


def _encode(record: ModelRecord) -> bytes:
    info = {f: getattr(record.info, f) for f in _INFO_FIELDS} | {"op_counts": dict(record.info.op_counts)}
    layers = [{f: getattr(layer, f) for f in _LAYER_FIELDS} for layer in record.layers]
    buffer = io.BytesIO()
    np.savez(buffer, *[layer.weight for layer in record.layers])
    meta = json.dumps({"ok": True, "info": info, "layers": layers}).encode()
    return struct.pack("<Q", len(meta)) + meta + buffer.getvalue()


def _decode(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _record(meta: dict[str, Any], arrays: bytes) -> ModelRecord:
    with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
        weights = [npz[f"arr_{i}"] for i in range(len(meta["layers"]))]
    layers = []
    for fields, weight in zip(meta["layers"], weights):
        fields = dict(fields)
        for key in ("stride", "dilation", "notes"):
            if fields[key] is not None:
                fields[key] = tuple(fields[key])
        layers.append(ConvLayer(weight=weight, **fields))
    info = dict(meta["info"])
    info["notes"] = tuple(info["notes"])
    info["op_counts"] = MappingProxyType(info["op_counts"])
    return ModelRecord(info=ModelInfo(**info), layers=tuple(layers))


def _error(meta: dict[str, Any]) -> BaseException:
    cls = getattr(errors, meta.get("error", ""), None)
    message = meta.get("message", "")
    if isinstance(cls, type) and issubclass(cls, FilterDBError):
        return cls(message)
    return ModelFormatError(message)


def _child(write_fd: int, read: Callable[[], ModelRecord]) -> None:
    try:
        try:
            payload = _encode(read())
        except FilterDBError as e:
            meta = {"ok": False, "error": type(e).__name__, "message": str(e)}
            payload = struct.pack("<Q", len(json.dumps(meta).encode())) + json.dumps(meta).encode()
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which words it
            text = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            meta = {"ok": False, "error": "", "message": f"{type(e).__name__}: {text}"}
            payload = struct.pack("<Q", len(json.dumps(meta).encode())) + json.dumps(meta).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
    finally:
        os._exit(0)  # never return into the parent's code (no atexit handlers, no flushing its buffers)


def read_isolated(path: Path, what: str, read: Callable[[], ModelRecord]) -> ModelRecord:
    """``read()`` in a forked child; its record, or its error, or a ModelFormatError when the child died."""
    if not hasattr(os, "fork"):
        return read()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(write_fd, read)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(1 << 20), b""):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFSIGNALED(status) or len(data) < 8:
        how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit code {os.waitstatus_to_exitcode(status)}")
        raise ModelFormatError(f"{path}: the {what} parser crashed on this file ({how}); the file is corrupt "
                               "or hostile (filterdb itself kept running)")
    meta, arrays = _decode(data)
    if not meta["ok"]:
        raise _error(meta)
    return _record(meta, arrays)
