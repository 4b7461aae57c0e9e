"""Reading the rows a read plan (:meth:`Store.segments`) names: the one reader of shard files.

- :class:`ShardRows` maps rows ``[first, end)`` of one shard (what an analysis task reads); the shard is
  checked against the catalog on its first open in a process (its bytes but the values against those the
  record predicts, else its Arrow structure by :class:`ShardReader`), later opens map the rows directly.
- :func:`read_ahead` asks the kernel, from a background thread, to read rows into the page cache.
- :func:`iter_segment_rows` streams the rows of each segment of a plan in order (export, ``iter_filters``).
"""

from __future__ import annotations

import atexit
import mmap
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ShardCorruptError
from ._layout import predicted_layout
from ._shards import ShardReader, ShardRecord, shard_path

__all__ = ["READAHEAD_BYTES", "ShardRows", "iter_batches", "iter_segment_rows", "read_ahead", "readahead_budget"]

# Where the rows of a shard lie in its file, keyed by the file's identity (shards are immutable: a rewrite is
# a new file). The first open of a shard in a process compares its head and tail with the bytes its catalog
# record predicts (_layout.py, ~0.04 ms), or, when they differ or no record is given, parses its Arrow IPC
# footer (ShardReader, ~0.5 ms and the GIL held); later opens map the file and view the rows directly (~20 µs).
_LAYOUTS: dict[tuple[Any, ...], tuple[int, int, int, str]] = {}
_LAYOUTS_LOCK = threading.Lock()
_LAYOUTS_MAX = 1 << 16


def _layout(root: str, shard: str, record: ShardRecord | None = None) -> tuple[int, int, int, str]:
    """(byte offset, rows, width, dtype) of the rows of a shard, through ShardReader (validates the file against
    ``record``, the catalog's, else looked up)."""
    reader = ShardReader(Path(root), shard, record)
    try:
        arr = reader.array
        return reader.file_offset(), int(arr.shape[0]), int(arr.shape[1]), arr.dtype.str
    finally:
        del arr
        reader.close()


def _cached_layout(root: str, shard: str, path: str, fd: int,
                   record: ShardRecord | None = None) -> tuple[int, int, int, str]:
    st = os.fstat(fd)
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    lay = _LAYOUTS.get(key)
    if lay is None:
        # the bytes the record predicts (two preads, see _layout.py), else the full check of the Arrow footer
        lay = predicted_layout(fd, st.st_size, shard, record) or _layout(root, shard, record)
        with _LAYOUTS_LOCK:
            if len(_LAYOUTS) >= _LAYOUTS_MAX:
                _LAYOUTS.clear()
            _LAYOUTS[key] = lay
    return lay


# Read-ahead: while a task computes on one shard, the kernel is asked (posix_fadvise WILLNEED, from a
# background thread so that no worker blocks on it) to read the rows of its next shards into the page
# cache. A cold store then streams at disk speed under the compute instead of between it. At most this
# many bytes are asked for ahead of the shard being read, per task; 0 turns read-ahead off. Hints only
# move pages into the page cache: results do not depend on them.
READAHEAD_BYTES = int(float(os.environ.get("FILTERDB_READAHEAD_MB", "256")) * (1 << 20))
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
# Linux reads at most its read-ahead size (~6 MB here) per WILLNEED call and drops the rest of the range
_HINT_CHUNK = 2 << 20


def readahead_budget() -> int:
    """Bytes a reader may ask to be read ahead (``FILTERDB_READAHEAD_MB``); 0 without posix_fadvise."""
    return READAHEAD_BYTES if _WILLNEED is not None else 0


class _ReadAhead:
    """A daemon thread issuing ``posix_fadvise(WILLNEED)`` for queued (root, shard, first row, end row).

    It is joined at exit (:func:`_stop_readahead`, an ``atexit`` hook): its first look at a shard queries the
    catalog (DuckDB) and parses the Arrow footer, C++ code run with the GIL released. A daemon thread still in
    there when the interpreter finalizes is unwound by ``pthread_exit`` through C++ frames, and the process
    aborts after its work is done ("terminate called without an active exception", exit 134).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, str, int, int, ShardRecord | None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def hint(self, root: str, shard: str, first: int, end: int, record: ShardRecord | None = None) -> None:
        if self._thread is None:
            with self._lock:
                if self._stopped:
                    return
                if self._thread is None:
                    t = threading.Thread(target=self._run, name="filterdb-readahead", daemon=True)
                    t.start()
                    self._thread = t
        if not self._stopped:
            self._queue.put((root, shard, first, end, record))

    def stop(self) -> None:
        """Drop the queued hints and join the thread (it finishes the hint in hand, a few ms)."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        advice = _WILLNEED
        if advice is None:  # no posix_fadvise here: read_ahead never queues, nothing to do
            return
        while True:
            item = self._queue.get()
            if item is None or self._stopped:
                return
            root, shard, first, end, record = item
            try:
                path = str(shard_path(Path(root), shard))
                fd = os.open(path, os.O_RDONLY)
                try:
                    offset, n, width, dtype = _cached_layout(root, shard, path, fd, record)
                    row = width * np.dtype(dtype).itemsize
                    lo = offset + max(0, min(first, n)) * row
                    hi = offset + max(0, min(end, n)) * row
                    while lo < hi and not self._stopped:
                        step = min(_HINT_CHUNK, hi - lo)
                        os.posix_fadvise(fd, lo, step, advice)
                        lo += step
                finally:
                    os.close(fd)
            except Exception:  # noqa: BLE001, S110 - only a hint: the reader itself reports a bad shard
                pass


_READAHEAD = _ReadAhead()


def _reset_readahead() -> None:  # a forked child (e.g. a Dask worker) has no thread: start its own
    global _READAHEAD
    _READAHEAD = _ReadAhead()


def _stop_readahead() -> None:  # at exit: no thread of filterdb may outlive the interpreter
    _READAHEAD.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_readahead)
atexit.register(_stop_readahead)


def read_ahead(root: str, shard: str, first: int, end: int, record: ShardRecord | None = None) -> None:
    """Ask for rows ``[first, end)`` of a shard to be read into the page cache in the background (a hint);
    ``record``: the catalog's record of the shard, when the caller has it (no catalog lookup then)."""
    if _WILLNEED is not None:
        _READAHEAD.hint(root, shard, first, end, record)


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: fault the pages in with the mmap call itself


class ShardRows:
    """A read-only map of rows ``[first, end)`` of one shard; ``array`` is their (end - first, width) view.
    The mapping lives as long as the last array viewing it: ``close`` (or the end of a ``with`` block) drops
    this object's hold and unmaps at once when no view of it remains. Rows past the shard's end raise :class:`ShardCorruptError` (the catalog and the
    file disagree).

    Only the pages of the rows read are mapped, and (Linux) they are populated by the mmap call itself, with
    the GIL released: one system call instead of a page fault per 4-64 KB taken inside the kernel (page
    faults of two threads contend on the process' memory-map lock; that cost ~10 % on two cores).
    """

    def __init__(self, root: str, shard: str, first: int, end: int, record: ShardRecord | None = None) -> None:
        path = str(shard_path(Path(root), shard))
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            _layout(root, shard)  # raises the store's own error message for a missing shard
            raise
        try:
            offset, n, width, dtype = _cached_layout(root, shard, path, fd, record)
            if end > n or first < 0:
                raise ShardCorruptError(f"{path}: holds {n} rows, the catalog expects rows {first}..{end}; the store "
                                        f"is damaged (`filterdb verify {root}` names the model)")
            itemsize = np.dtype(dtype).itemsize
            if end <= first:
                self.array = np.zeros((0, width), dtype)
                return
            lo = offset + first * width * itemsize
            hi = offset + end * width * itemsize
            start = lo - lo % mmap.ALLOCATIONGRANULARITY
            try:
                self._map = mmap.mmap(fd, hi - start, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ,
                                      offset=start)
            except OSError:  # e.g. a filesystem that refuses MAP_POPULATE
                self._map = mmap.mmap(fd, hi - start, access=mmap.ACCESS_READ, offset=start)
        finally:
            os.close(fd)
        self.array = np.frombuffer(self._map, dtype=dtype, count=(end - first) * width,
                                   offset=lo - start).reshape(end - first, width)

    def __enter__(self) -> ShardRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release this object's hold on the mapping. The pages are unmapped when nothing views them any more:
        an array taken from ``array`` (a slice a kernel kept, a view a traceback holds) owns a reference to
        the map and stays valid, so closing never invalidates memory still in use (nor fails because of it)."""
        self.array = None  # type: ignore[assignment]  # closed: read through views taken before, if any
        mapped, self._map = self._map, None
        if mapped is not None:
            try:
                mapped.close()  # unmapped now when no view exists: the common case, no page held longer
            except BufferError:  # views exist: each holds the map, the last one to go unmaps it
                pass


def _record(n_rows: Any, n_bytes: Any, sha256: Any, owner: str) -> ShardRecord | None:
    if n_rows is None or n_rows != n_rows:  # no t_shards row (None, or NaN from pandas)
        return None
    return ShardRecord(int(n_bytes), int(n_rows), owner, sha256 if isinstance(sha256, str) else None)


def iter_segment_rows(root: Path, segments: Any) -> Iterator[np.ndarray]:
    """The stored rows (zero-copy views, valid until the next step) of each row of a read plan, in order.

    Each shard is opened once per run of consecutive segments, checked against the catalog's record
    (size, rows, Arrow structure), and closed when the plan moves on.
    """
    current: tuple[str, ShardReader] | None = None
    try:
        for shard, offset, count, n_rows, n_bytes, sha, mid, name in zip(
                segments["shard"], segments["row_offset"], segments["n_filters"], segments["shard_rows"],
                segments["shard_bytes"], segments["shard_sha256"], segments["model_id"], segments["model"]):
            if current is None or current[0] != shard:
                if current is not None:
                    current[1].close()
                    current = None
                current = (shard, ShardReader(root, shard, _record(n_rows, n_bytes, sha, f"model {name!r} (id {mid})")))
            yield current[1].rows(int(offset), int(count))
    finally:
        if current is not None:
            current[1].close()


def iter_batches(root: Path, table: Any, width: int, batch_rows: int, scaled: bool,
                 with_layer_ids: bool) -> Iterator[Any]:
    """float32 ``(batch_rows, width)`` batches of the rows of a read plan (see :meth:`Store.iter_filters`)."""
    out = np.empty((batch_rows, width), dtype=np.float32)
    ids = np.empty(batch_rows, dtype=np.int64)
    fill = 0
    for layer_id, scale, rows in zip(table["layer_id"], table["scale"], iter_segment_rows(root, table)):
        pos = 0
        while pos < len(rows):
            take = min(batch_rows - fill, len(rows) - pos)
            block = out[fill : fill + take]
            np.copyto(block, rows[pos : pos + take], casting="unsafe")
            if scaled:
                _scale_rows(block)
            elif scale != 1.0:
                block *= np.float32(scale)
            ids[fill : fill + take] = layer_id
            fill += take
            pos += take
            if fill == batch_rows:
                yield (out.copy(), ids.copy()) if with_layer_ids else out.copy()
                fill = 0
    if fill:
        yield (out[:fill].copy(), ids[:fill].copy()) if with_layer_ids else out[:fill].copy()


def _scale_rows(block: np.ndarray) -> None:
    """Divide each row by its max |value| in place; all-zero rows stay zero."""
    peak = np.abs(block).max(axis=1, keepdims=True)
    np.divide(block, peak, out=block, where=peak > 0)
