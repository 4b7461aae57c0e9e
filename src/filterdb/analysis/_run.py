"""Run one pass of a kernel over a plan on an engine, and merge the partial results in task order."""

from __future__ import annotations

import math
import mmap
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._selection import Plan, Task
from .kernels import Partial, PassSpec, _Accumulator, merge, merge_into

__all__ = ["run_task", "run_pass"]

# Where the rows of a shard lie in its file, keyed by the file's identity (shards are immutable: a rewrite is
# a new file). The first open of a shard in a process parses its Arrow IPC footer (ShardReader, ~0.2 ms
# and the GIL held); later passes map the file and view the rows directly (~20 µs).
_LAYOUTS: dict[tuple[Any, ...], tuple[int, int, int, str]] = {}
_LAYOUTS_LOCK = threading.Lock()
_LAYOUTS_MAX = 1 << 16


def _layout(root: str, shard: str) -> tuple[int, int, int, str]:
    """(byte offset, rows, width, dtype) of the rows of a shard, through ShardReader (validates the file)."""
    from ..store._shards import ShardReader

    reader = ShardReader(Path(root), shard)
    try:
        arr = reader.array
        if arr.size:
            reader._source.seek(0)
            base = reader._source.read_buffer(1).address  # a zero-copy slice of the map: the file's address
        else:
            base = arr.ctypes.data
        return int(arr.ctypes.data - base), int(arr.shape[0]), int(arr.shape[1]), arr.dtype.str
    finally:
        del arr
        reader.close()


def _cached_layout(root: str, shard: str, path: str, fd: int) -> tuple[int, int, int, str]:
    st = os.fstat(fd)
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = _layout(root, shard)
        with _LAYOUTS_LOCK:
            if len(_LAYOUTS) >= _LAYOUTS_MAX:
                _LAYOUTS.clear()
            _LAYOUTS[key] = lay
    return lay


# Read-ahead: while a task computes on one shard, the kernel is asked (posix_fadvise WILLNEED, from a
# background thread so that no worker blocks on it) to read the rows of its next shards, and of the task
# that comes next, into the page cache. A cold store then streams at disk speed under the compute instead
# of between it. At most this many bytes are asked for ahead of the shard being read, per task; 0 turns
# read-ahead off. Hints only move pages into the page cache: results do not depend on them.
READAHEAD_BYTES = int(float(os.environ.get("FILTERDB_READAHEAD_MB", "256")) * (1 << 20))
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
# Linux reads at most its read-ahead size (~6 MB here) per WILLNEED call and drops the rest of the range
_HINT_CHUNK = 2 << 20


class _ReadAhead:
    """A daemon thread issuing ``posix_fadvise(WILLNEED)`` for queued (root, shard, first row, end row)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, str, int, int]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def hint(self, root: str, shard: str, first: int, end: int) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    t = threading.Thread(target=self._run, name="filterdb-readahead", daemon=True)
                    t.start()
                    self._thread = t
        self._queue.put((root, shard, first, end))

    def _run(self) -> None:
        advice = _WILLNEED
        if advice is None:  # no posix_fadvise here: hints are never queued (run_task checks), nothing to do
            return
        while True:
            root, shard, first, end = self._queue.get()
            try:
                path = os.path.join(root, shard)
                fd = os.open(path, os.O_RDONLY)
                try:
                    offset, n, width, dtype = _cached_layout(root, shard, path, fd)
                    row = width * np.dtype(dtype).itemsize
                    lo = offset + max(0, min(first, n)) * row
                    hi = offset + max(0, min(end, n)) * row
                    while lo < hi:
                        step = min(_HINT_CHUNK, hi - lo)
                        os.posix_fadvise(fd, lo, step, advice)
                        lo += step
                finally:
                    os.close(fd)
            except Exception:  # noqa: BLE001, S110 - only a hint: the task itself reports a bad shard
                pass


_READAHEAD = _ReadAhead()


def _reset_readahead() -> None:  # a forked child (e.g. a Dask worker) has no thread: start its own
    global _READAHEAD
    _READAHEAD = _ReadAhead()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_readahead)


def _segments(task: Task) -> list[tuple[str, np.ndarray, int, int]]:
    """(shard, segment positions, first row, end row) of each shard of a task, in shard order."""
    order = np.argsort(task.shard_index, kind="stable")
    bounds = np.flatnonzero(np.diff(task.shard_index[order])) + 1
    out = []
    for seg in np.split(order, bounds):
        if not len(seg):
            continue
        shard = task.shards[int(task.shard_index[seg[0]])]
        first = int(task.starts[seg].min())
        end = int((task.starts[seg] + task.counts[seg]).max())
        out.append((shard, seg, first, end))
    return out


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: fault the pages in with the mmap call itself


class _MappedRows:
    """A read-only map of rows ``[first, end)`` of one shard; ``array`` is their (end - first, width) view and
    ``n_rows`` the shard's row count; ``close`` unmaps it.

    Only the pages of the rows read are mapped, and (Linux) they are populated by the mmap call itself, with
    the GIL released: one system call instead of a page fault per 4-64 KB taken inside the kernel (page
    faults of two threads contend on the process' memory-map lock; that cost ~10 % on two cores).
    """

    def __init__(self, root: str, shard: str, first: int, end: int) -> None:
        path = os.path.join(root, shard)
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            _layout(root, shard)  # raises the store's own error message for a missing shard
            raise
        try:
            offset, n, width, dtype = _cached_layout(root, shard, path, fd)
            self.n_rows = n
            itemsize = np.dtype(dtype).itemsize
            first, end = max(0, min(first, n)), max(0, min(end, n))
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

    def close(self) -> None:
        self.array = None  # type: ignore[assignment]
        if self._map is not None:
            self._map.close()
            self._map = None


def run_task(task: Task, root: str, spec: PassSpec, next_task: Task | None = None) -> Partial:
    """Read the task's shards (memory-mapped, each closed after use) and run ``spec`` over its segments.

    Top-level and picklable: this is what Dask workers execute. The kernel adds every shard into one set of
    accumulators (the same floats as merging one partial per shard in shard order). The shards ahead (of
    this task, then of ``next_task``: the task this process runs next, when known) are read ahead, up to
    ``READAHEAD_BYTES``.
    """
    local, inverse = np.unique(task.units, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    acc = _Accumulator(spec, len(local) if spec.hist else 0)
    segments = _segments(task)
    ahead = []  # (shard, first, end, approximate bytes) of the shards still to be read, in order
    budget = READAHEAD_BYTES if _WILLNEED is not None else 0
    if budget > 0:
        # bytes are estimated as float16 rows (float32 stores read twice that much ahead)
        ahead = [(sh, f, e, (e - f) * spec.d * 2) for sh, _, f, e in segments]
        if next_task is not None:
            ahead += [(sh, f, e, (e - f) * spec.d * 2) for sh, _, f, e in _segments(next_task)]
    hinted = 0  # entries of ``ahead`` hinted so far
    for i, (shard, seg, first, end) in enumerate(segments):
        if budget > 0:
            window = 0
            for j in range(i + 1, len(ahead)):
                window += ahead[j][3]
                if window > budget:
                    break
                if j >= hinted:
                    _READAHEAD.hint(root, *ahead[j][:3])
                    hinted = j + 1
        starts = np.ascontiguousarray(task.starts[seg], np.int64)
        counts = np.ascontiguousarray(task.counts[seg], np.int64)
        rows_of = _MappedRows(root, shard, first, end)
        try:
            if end > rows_of.n_rows:
                from ..store import StoreError

                raise StoreError(f"{Path(root) / shard}: holds {rows_of.n_rows} rows, the catalog expects >= {end}; "
                                 "the store is damaged")
            rows = rows_of.array
            acc.add(rows, starts - first, counts, np.ascontiguousarray(inverse[seg]))
            del rows
        finally:
            rows_of.close()
    out = acc.partial(inverse, np.ascontiguousarray(task.counts, np.int64))
    if spec.hist:
        out.units = local.astype(np.int64)
    else:
        out.units = np.zeros(0, np.int64)
        out.hist = np.zeros((0, spec.d, spec.nbins), np.int64)
        out.unit_rows = np.zeros(0, np.int64)
    return out


def _task_rows(plan: Plan, task_rows: int) -> int:
    """Tasks of at most ``task_rows`` rows, and at least 16 of them for a selection big enough (>= 4 M
    filters), so that no core idles at the end of a pass. Depends on the plan only, not on the engine: every
    engine gets the same tasks and merges them in the same order (bit-identical results)."""
    if task_rows < 1:
        return task_rows  # Plan.tasks reports it
    return max(1, min(task_rows, max(262_144, math.ceil(plan.n_filters / 16))))


def run_pass(plan: Plan, spec: PassSpec, engine: Any, task_rows: int) -> Partial:
    """One pass of ``spec`` over every row of ``plan`` on ``engine``; merged in task order."""
    tasks = plan.tasks(_task_rows(plan, task_rows))
    total = merge([], spec.d, spec.nbins, plan.n_units if spec.hist else 0)
    if getattr(engine, "shares_page_cache", False):
        # threads of this process: a task also reads ahead the first shards of the task its thread will
        # likely run next (tasks start in order, so with n threads that is the one n tasks further)
        n = max(1, int(getattr(engine, "n_threads", 1)))
        parts = engine.map(_run_task_pair, list(zip(tasks, tasks[n:] + [None] * min(n, len(tasks)))),
                           plan.root, spec)
    else:
        parts = engine.map(run_task, tasks, plan.root, spec)
    for part in parts:
        total = merge_into(total, part)
    return total


def _run_task_pair(pair: tuple[Task, Task | None], root: str, spec: PassSpec) -> Partial:
    return run_task(pair[0], root, spec, pair[1])
