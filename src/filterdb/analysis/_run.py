"""Run one pass of a kernel over a plan on an engine, and merge the partial results in task order."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..store import ShardRows, read_ahead, readahead_budget
from ._partial import Partial, merge, merge_into
from ._selection import Plan, Task
from .kernels import PassSpec, _Accumulator

__all__ = ["run_task", "run_pass"]


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


def run_task(task: Task, root: str, spec: PassSpec, next_task: Task | None = None, backward: bool = False) -> Partial:
    """Read the task's shards (:class:`filterdb.store.ShardRows`, each closed after use) and run ``spec`` over
    its segments.

    Top-level and picklable: this is what Dask workers execute. The kernel adds every shard into one set of
    accumulators (the same floats as merging one partial per shard in shard order). The shards ahead (of
    this task, then of ``next_task``: the task this process runs next, when known) are read ahead, up to
    the store's read-ahead budget (``FILTERDB_READAHEAD_MB``). ``backward``: its shards in reverse order (only
    for a pass without a Gram matrix, whose integer sums and extremes do not depend on the order).
    """
    local, inverse = np.unique(task.units, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    acc = _Accumulator(spec, len(local) if spec.hist else 0)
    slots = spec.unit_slot if spec.gram else None
    slot_acc: dict[int, _Accumulator] = {}
    if slots is not None:  # one accumulator per gram slot present in the task (-1: the rest)
        plain = replace(spec, unit_slot=None)
        slot_acc = {int(k): _Accumulator(plain, len(local) if spec.hist else 0) for k in np.unique(slots[task.units])}
    segments = _segments(task)
    if backward:
        if spec.gram:
            raise ValueError("a Gram pass reads a task's shards in order (its float sums depend on the order)")
        segments.reverse()
    ahead: list[tuple[str, int, int, int, Any]] = []  # (shard, first, end, approx. bytes, record), in order
    budget = readahead_budget()
    if budget > 0:
        # bytes are estimated as float16 rows (float32 stores read twice that much ahead)
        ahead = [(sh, f, e, (e - f) * spec.d * 2, _record(task, sh)) for sh, _, f, e in segments]
        if next_task is not None:
            after = _segments(next_task)
            if backward:
                after.reverse()
            ahead += [(sh, f, e, (e - f) * spec.d * 2, _record(next_task, sh)) for sh, _, f, e in after]
    hinted = 0  # entries of ``ahead`` hinted so far
    for i, (shard, seg, first, end) in enumerate(segments):
        if budget > 0:
            window = 0
            for j in range(i + 1, len(ahead)):
                window += ahead[j][3]
                if window > budget:
                    break
                if j >= hinted:
                    read_ahead(root, *ahead[j][:3], record=ahead[j][4])
                    hinted = j + 1
        starts = np.ascontiguousarray(task.starts[seg], np.int64)
        counts = np.ascontiguousarray(task.counts[seg], np.int64)
        with ShardRows(root, shard, first, end, record=_record(task, shard)) as rows:  # checked against the record
            if slots is None:
                acc.add(rows.array, starts - first, counts, np.ascontiguousarray(inverse[seg]))
            else:
                seg_slots = slots[task.units[seg]]
                for slot in np.unique(seg_slots):
                    mask = seg_slots == slot
                    slot_acc[int(slot)].add(rows.array, np.ascontiguousarray(starts[mask] - first),
                                            np.ascontiguousarray(counts[mask]),
                                            np.ascontiguousarray(inverse[seg][mask]))
    all_counts = np.ascontiguousarray(task.counts, np.int64)
    if slots is not None:
        return _slotted_partial(slot_acc, acc, inverse, all_counts, task.units, slots, spec)
    out = acc.partial(inverse, all_counts)
    if spec.hist:
        out.units = local.astype(np.int64)
    else:
        out.units = np.zeros(0, np.int64)
        out.hist = np.zeros((0, spec.d, spec.nbins), np.int64)
        out.unit_rows = np.zeros(0, np.int64)
    return out


def _slotted_partial(slot_acc: dict[int, _Accumulator], acc: _Accumulator, inverse: np.ndarray, counts: np.ndarray,
                     units: np.ndarray, slots: np.ndarray, spec: PassSpec) -> Partial:
    """The partial of a task whose segments went to the accumulators of their gram slots: their sum, and each
    slot's own Gram matrix, sums and count."""
    k = int(slots.max()) + 1 if len(slots) else 0
    seg_slots = slots[units]
    parts = {}
    for slot, a in sorted(slot_acc.items()):
        mask = seg_slots == slot
        parts[slot] = a.partial(inverse[mask], counts[mask])
    out = acc.partial(inverse[:0], counts[:0])
    for part in parts.values():
        merge_into(out, part)
    out.slot_gram = np.zeros((k, spec.d, spec.d))
    out.slot_sums = np.zeros((k, spec.d))
    out.slot_n = np.zeros(k, np.int64)
    for slot, part in parts.items():
        if slot >= 0:
            out.slot_gram[slot] = part.gram
            out.slot_sums[slot] = part.sums
            out.slot_n[slot] = part.n
    out.units = np.zeros(0, np.int64)
    out.hist = np.zeros((0, spec.d, spec.nbins), np.int64)
    out.unit_rows = np.zeros(0, np.int64)
    return out


def _record(task: Task, shard: str) -> Any:
    """The catalog's record of a shard, carried by the task (None: the reader looks it up)."""
    records = getattr(task, "records", None)
    if not records:
        return None
    return records[task.shards.index(shard)]


def _task_rows(plan: Plan, task_rows: int) -> int:
    """Tasks of at most ``task_rows`` rows, and at least 16 of them for a selection big enough (>= 4 M
    filters), so that no core idles at the end of a pass. Depends on the plan only, not on the engine: every
    engine gets the same tasks and merges them in the same order (bit-identical results)."""
    if task_rows < 1:
        return task_rows  # Plan.tasks reports it
    return max(1, min(task_rows, max(262_144, math.ceil(plan.n_filters / 16))))


def run_pass(plan: Plan, spec: PassSpec, engine: Any, task_rows: int, backward: bool = False) -> Partial:
    """One pass of ``spec`` over every row of ``plan`` on ``engine``; merged in task order.

    ``backward``: read the shards in the reverse order (last task first, each task's shards last first), for a
    pass that follows another over the same plan: a store larger than the page cache keeps only the shards
    read last, and a forward second pass would evict each of them just before it gets to it (nothing found
    cached); backward, it starts on them. The result is bit-identical to a forward pass: a pass without a
    Gram matrix adds integers (histograms, counts, density) and takes extremes, which no order changes; a
    Gram pass keeps each task's shards in order and its partials are merged in task order all the same.
    """
    tasks = plan.tasks(_task_rows(plan, task_rows))
    total = merge([], spec.d, spec.nbins, plan.n_units if spec.hist else 0)
    order = tasks[::-1] if backward else tasks
    within = backward and not spec.gram  # a task's own shards in reverse too (its sums are integers)
    if getattr(engine, "shares_page_cache", False):
        # threads of this process: a task also reads ahead the first shards of the task its thread will
        # likely run next (tasks start in order, so with n threads that is the one n tasks further)
        n = max(1, int(getattr(engine, "n_threads", 1)))
        parts = engine.map(_run_task_pair, list(zip(order, order[n:] + [None] * min(n, len(order)))),
                           plan.root, spec, within)
    else:
        parts = engine.map(run_task, order, plan.root, spec, None, within)
    try:
        if backward and spec.gram:
            # float sums: merged in task order, as a forward pass does (the partials are a few KB each)
            for part in reversed(list(parts)):
                total = merge_into(total, part)
        else:
            for part in parts:
                total = merge_into(total, part)
    finally:
        close = getattr(parts, "close", None)
        if close is not None:  # an engine's iterator cancels its queued tasks and joins its threads now
            close()
    return total


def _run_task_pair(pair: tuple[Task, Task | None], root: str, spec: PassSpec, backward: bool = False) -> Partial:
    return run_task(pair[0], root, spec, pair[1], backward)
