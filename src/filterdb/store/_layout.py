"""O(1) shard open: a shard's layout predicted from its catalog record, checked by comparing a few hundred bytes.

A shard is one Arrow IPC file of one record batch of one ``FixedSizeList<float16|float32>[k]`` column, written
by :func:`._shards.write_ipc`. For a given pyarrow, every byte of such a file outside its values buffer (the
magic, the schema, the record batch's metadata, the padding, the footer) is a function of (rows, width,
dtype) alone: the values start at a fixed offset and only a few int64 fields (rows, values, bytes) change
with the row count. So the catalog's record (rows, bytes) and the kernel folder (width) predict the whole
file but its values; a file whose size, head (up to the values) and tail (after them) are exactly the
predicted bytes is a shard pyarrow would read with that layout, and it is served after two ``pread``s
instead of a parse of its footer (~0.04 ms against ~0.5 ms per shard; a study opens ~10⁴ shards per pass).

Any difference (a truncated, extended, replaced or edited file, a record that disagrees with it, a shard
written by another pyarrow whose bytes differ) returns None: the caller then runs the full check of
:class:`._shards.ShardReader`, which serves a valid file and refuses a damaged one with its own message.
Neither check reads the values; that is ``filterdb verify`` (sha256).

The prediction is learnt, not hand-coded: a *template* shard is written in memory with this process's
pyarrow for each (width, dtype), the int64 fields that carry the row count are found in it, and the model is
accepted only if it reproduces, byte for byte, pyarrow's own files for other row counts (else this
process always takes the full check for that width and dtype).
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._shards import ShardRecord, shard_width, write_ipc

__all__ = ["ShardTemplate", "predicted_layout", "template"]

ALIGN = 8  # Arrow IPC pads each body buffer to 8 bytes (checked against pyarrow by every template)
# Row counts of the templates: the first is learnt from, the others check the model. Odd counts, so that for
# odd widths the unpadded and padded byte counts differ (two fields never share a value by accident); the
# checks cover 1 row and different paddings.
_LEARN_ROWS = (4_099, 4_111, 1_237)
_CHECK_ROWS = (1, 2, 3, 7, 1_000, 2_053)


def _padded(n: int) -> int:
    return n + (-n) % ALIGN


# the int64 fields of the metadata that vary with the row count n of a width-k shard of itemsize s
_FIELDS: tuple[tuple[str, Callable[[int, int, int], int]], ...] = (
    ("rows", lambda n, k, s: n),
    ("values", lambda n, k, s: n * k),
    ("bytes", lambda n, k, s: n * k * s),
    ("padded bytes", lambda n, k, s: _padded(n * k * s)),
)


def _ipc_bytes(n: int, width: int, dtype: np.dtype[Any]) -> bytes:
    sink = io.BytesIO()
    write_ipc(sink, np.zeros((n, width), dtype))
    return sink.getvalue()


def _values_offset(data: bytes) -> int:
    """Where pyarrow reads the values of a shard's bytes (its own parse of the file)."""
    import pyarrow as pa

    buf = pa.py_buffer(data)
    column = pa.ipc.open_file(pa.BufferReader(buf)).get_batch(0).column(0)
    return int(column.values.buffers()[1].address - buf.address)


@dataclass(frozen=True)
class ShardTemplate:
    """The bytes of every shard of one (width, dtype) but its values: ``head`` (before the values) and ``tail``
    (after the padding that follows them), with ``fields`` (position in head + tail, which row function) to
    patch."""

    width: int
    dtype: np.dtype[Any]
    head: bytes
    tail: bytes
    fields: tuple[tuple[int, int], ...]  # (position in head + tail, index into _FIELDS)

    @property
    def offset(self) -> int:
        """Byte offset of the first value in the file."""
        return len(self.head)

    def size(self, n: int) -> int:
        return len(self.head) + _padded(n * self.width * self.dtype.itemsize) + len(self.tail)

    def predict(self, n: int) -> tuple[bytes, bytes]:
        """(head, padding + tail) of a shard of ``n`` rows (the padding bytes are zeros)."""
        k, s = self.width, self.dtype.itemsize
        meta = bytearray(self.head + self.tail)
        for pos, f in self.fields:
            struct.pack_into("<q", meta, pos, _FIELDS[f][1](n, k, s))
        pad = bytes(_padded(n * k * s) - n * k * s)
        return bytes(meta[: len(self.head)]), pad + bytes(meta[len(self.head):])


def _learn(n: int, width: int, dtype: np.dtype[Any]) -> ShardTemplate | None:
    data = _ipc_bytes(n, width, dtype)
    k, s = width, dtype.itemsize
    offset = _values_offset(data)
    end = offset + n * k * s
    head, tail = data[:offset], data[end + _padded(n * k * s) - n * k * s:]
    if data[end : len(data) - len(tail)].strip(b"\0"):
        return None  # padding that is not zeros: not the format this module knows
    # two fields with one value (1-wide rows: rows = values; k·s a multiple of 8: bytes = padded bytes) are one
    # function of n for odd n: the first stands for both (and the checks would catch any other coincidence)
    values: dict[int, int] = {}
    for i, (_, f) in enumerate(_FIELDS):
        values.setdefault(f(n, k, s), i)
    meta = head + tail
    fields = []
    for v, i in values.items():
        needle = struct.pack("<q", v)
        pos = meta.find(needle)
        while pos >= 0:
            fields.append((pos, i))
            pos = meta.find(needle, pos + 1)
    return ShardTemplate(width, dtype, head, tail, tuple(sorted(fields)))


def _checked(t: ShardTemplate) -> bool:
    """Whether ``t`` predicts pyarrow's own bytes and values offset for every count of ``_CHECK_ROWS``."""
    k, s = t.width, t.dtype.itemsize
    for n in _CHECK_ROWS:
        data = _ipc_bytes(n, k, t.dtype)
        head, tail = t.predict(n)
        if (len(data) != t.size(n) or data[: len(head)] != head or data[len(data) - len(tail):] != tail
                or _values_offset(data) != t.offset):
            return False
    return True


_TEMPLATES: dict[tuple[int, str], ShardTemplate | None] = {}
_TEMPLATES_LOCK = threading.Lock()


def template(width: int, dtype: Any) -> ShardTemplate | None:
    """The checked template of (width, dtype) shards for this process's pyarrow (None: no model found; every
    such shard then takes the full check). Learnt once per process (~ms)."""
    dt = np.dtype(dtype)
    key = (int(width), dt.str)
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    with _TEMPLATES_LOCK:
        if key not in _TEMPLATES:
            found = None
            if width >= 1:
                for n in _LEARN_ROWS:
                    t = _learn(n, int(width), dt)
                    if t is not None and _checked(t):
                        found = t
                        break
            _TEMPLATES[key] = found
    return _TEMPLATES[key]


def predicted_layout(fd: int, size: int, relpath: str,
                     record: ShardRecord | None) -> tuple[int, int, int, str] | None:
    """(values offset, rows, width, dtype) of the open shard ``fd`` of ``size`` bytes, when its bytes but the
    values are exactly those pyarrow writes for the rows and size ``record`` gives and the width its
    folder names; None otherwise (the caller runs the full check)."""
    if record is None or size != record.n_bytes or record.n_rows < 1:
        return None
    width = shard_width(relpath)
    if width is None:
        return None
    n = int(record.n_rows)
    for dtype in (np.float16, np.float32):
        t = template(width, dtype)
        if t is None or t.size(n) != size:
            continue
        head, tail = t.predict(n)
        if os.pread(fd, len(head), 0) == head and os.pread(fd, len(tail), size - len(tail)) == tail:
            return t.offset, n, width, t.dtype.str
    return None
