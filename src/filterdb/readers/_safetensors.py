"""Reader for safetensors files (format "safetensors"), whatever framework wrote them.

Conv weights are found by the state_dict rules of :mod:`._statedict` (PyTorch ``*.weight`` in OIHW,
Keras/Flax ``*kernel`` in channels-last layout). A safetensors file keeps no layer order (its header is
sorted by name), so conv_depth follows the *natural* sort order of the tensor names ("conv2" before
"conv10", "layer1.9" before "layer1.10"); the layers say ``depth_source == "order"``.

Values are read with ``safetensors.safe_open(..., framework="numpy")``. numpy has no bfloat16, so BF16
tensors are read as raw bytes at the offsets of the header and widened to float32 here (exact: a bfloat16 is
the upper half of a float32).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .._budget import MemoryBudget
from ..errors import ModelFormatError, missing_dependency
from ..types import ModelInfo, ModelRecord
from ._registry import ReadOptions, register_reader
from ._statedict import TensorEntry, conv_layers, count_ops, count_parameters, strip_wrapper_prefixes

__all__ = ["SafetensorsReader"]

# safetensors dtype -> numpy-style name used by TensorEntry (numpy itself lacks bfloat16 and float8).
DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}
MAX_HEADER = 100_000_000  # the format's own limit on the JSON header size
_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


# Python objects per byte of JSON header when it is parsed (measured ~20 for headers of empty tensors): a
# header is checked against the memory budget before it is parsed, so 10^6 empty entries cannot cost gigabytes.
HEADER_EXPANSION = 24


def read_header(path: Path, budget: MemoryBudget | None = None) -> tuple[dict[str, Any], int]:
    """The JSON header (without ``__metadata__``) and the byte offset where tensor data starts.

    Raises
    ------
    ModelFormatError
        When the header length, the JSON or a tensor's offsets do not fit the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ModelFormatError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER or 8 + n > size:
            raise ModelFormatError(f"{path}: not a readable safetensors file (header length {n} exceeds the file)")
        (budget or MemoryBudget.for_file(path)).check(n * HEADER_EXPANSION, f"the JSON header ({n:,} bytes) parsed")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: not a readable safetensors file (bad JSON header: {e})") from e
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path}: not a readable safetensors file (the header is not a JSON object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    for name, spec in header.items():
        try:
            start, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFormatError(f"{path}: tensor {name!r} has no valid data_offsets in the header") from e
        if not 0 <= start <= end <= data_size:
            raise ModelFormatError(f"{path}: tensor {name!r} lies past the end of the file (truncated?)")
    return header, 8 + n


def _entries(header: dict[str, Any], path: Path) -> list[TensorEntry]:
    try:
        entries = [TensorEntry(name, tuple(int(d) for d in spec["shape"]), DTYPES.get(spec["dtype"], spec["dtype"]))
                   for name, spec in header.items()]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFormatError(f"{path}: a tensor in the header lacks a valid dtype or shape") from e
    return sorted(entries, key=lambda e: _natural_key(e.name))


def _read_bfloat16(path: Path, spec: dict[str, Any], data_start: int) -> np.ndarray:
    start, end = spec["data_offsets"]
    with open(path, "rb") as fh:
        fh.seek(data_start + start)
        raw = np.frombuffer(fh.read(end - start), "<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(spec["shape"])


class SafetensorsReader:
    """safetensors files: a little-endian u64 header length, a JSON header, raw tensor bytes."""

    format = "safetensors"
    extensions: tuple[str, ...] = (".safetensors",)
    description = "safetensors tensor file (any framework's naming; depth from name order)"

    def sniff(self, path: Path, head: bytes) -> bool:
        if len(head) < 10:
            return False
        (n,) = struct.unpack("<Q", head[:8])
        return 0 < n <= MAX_HEADER and head[8:9] == b"{" and head[9:10] in b'"} \n\t\r'

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        try:
            from safetensors import safe_open
        except ImportError as e:
            raise missing_dependency("safetensors", "reading .safetensors files", "safetensors") from e
        budget = MemoryBudget.for_file(path, options.max_memory)
        header, data_start = read_header(path, budget)
        renamed = strip_wrapper_prefixes(header)
        original = {v: k for k, v in renamed.items()}
        entries = [TensorEntry(renamed[e.name], e.shape, e.dtype) for e in _entries(header, path)]
        with safe_open(str(path), framework="numpy") as fh:

            def load(name: str) -> np.ndarray:
                key = original[name]
                start, end = header[key]["data_offsets"]
                budget.claim(2 * (end - start) if header[key]["dtype"] == "BF16" else end - start, f"tensor {key!r}")
                if header[key]["dtype"] == "BF16":
                    return _read_bfloat16(path, header[key], data_start)
                return fh.get_tensor(key)

            layers = conv_layers(entries, load)
            metadata = fh.metadata() or {}
        notes = ("safetensors keeps no layer order: conv_depth follows the natural sort order of tensor names",)
        info = ModelInfo(source=str(path), format=self.format, path=str(path), producer=metadata.get("format"),
                         op_counts=count_ops(layers), n_parameters=count_parameters(entries), notes=notes)
        return ModelRecord(info=info, layers=layers)


register_reader(SafetensorsReader())
