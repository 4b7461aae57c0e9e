"""Run one pass of a kernel over a plan on an engine, and merge the partial results in task order."""

from __future__ import annotations

import math
import mmap
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._selection import Plan, Task
from .kernels import Partial, PassSpec, _Accumulator, merge

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
            st = os.fstat(fd)
            key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            lay = _LAYOUTS.get(key)
            if lay is None:
                lay = _layout(root, shard)
                with _LAYOUTS_LOCK:
                    if len(_LAYOUTS) >= _LAYOUTS_MAX:
                        _LAYOUTS.clear()
                    _LAYOUTS[key] = lay
            offset, n, width, dtype = lay
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


def run_task(task: Task, root: str, spec: PassSpec) -> Partial:
    """Read the task's shards (memory-mapped, each closed after use) and run ``spec`` over its segments.

    Top-level and picklable: this is what Dask workers execute. The kernel adds every shard into one set of
    accumulators (the same floats as merging one partial per shard in shard order).
    """
    local, inverse = np.unique(task.units, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    acc = _Accumulator(spec, len(local) if spec.hist else 0)
    order = np.argsort(task.shard_index, kind="stable")
    bounds = np.flatnonzero(np.diff(task.shard_index[order])) + 1
    for seg in np.split(order, bounds):
        if not len(seg):
            continue
        shard = task.shards[int(task.shard_index[seg[0]])]
        starts = np.ascontiguousarray(task.starts[seg], np.int64)
        counts = np.ascontiguousarray(task.counts[seg], np.int64)
        first, end = int(starts.min()), int((starts + counts).max())
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
    for part in engine.map(run_task, tasks, plan.root, spec):
        total = _merge_into(total, part)
    return total


def _merge_into(total: Partial, p: Partial) -> Partial:
    total.n += p.n
    total.gram += p.gram
    total.sums += p.sums
    if len(p.units):
        total.hist[p.units] += p.hist
        total.unit_rows[p.units] += p.unit_rows
    np.minimum(total.cmin, p.cmin, out=total.cmin)
    np.maximum(total.cmax, p.cmax, out=total.cmax)
    return total
