"""Run one pass of a kernel over a plan on an engine, and merge the partial results in task order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .kernels import Partial, PassSpec, merge, run_rows
from ._selection import Plan, Task

__all__ = ["run_task", "run_pass"]


def run_task(task: Task, root: str, spec: PassSpec) -> Partial:
    """Read the task's shards (memory-mapped, each closed after use) and run ``spec`` over its segments.

    Top-level and picklable: this is what Dask workers execute.
    """
    from ..store._shards import ShardReader

    local, inverse = np.unique(task.units, return_inverse=True)
    parts = []
    for si, shard in enumerate(task.shards):
        mask = task.shard_index == si
        reader = ShardReader(Path(root), shard)
        try:
            rows = reader.array
            end = int((task.starts[mask] + task.counts[mask]).max())
            if end > len(rows):
                from ..store import StoreError

                raise StoreError(f"{Path(root) / shard}: holds {len(rows)} rows, the catalog expects >= {end}; "
                                 "the store is damaged")
            parts.append(run_rows(rows, task.starts[mask], task.counts[mask], inverse[mask], spec, len(local)))
            del rows
        finally:
            reader.close()
    out = merge(parts, spec.d, spec.nbins, len(local))
    if spec.hist:
        out.units = local.astype(np.int64)
    else:
        out.units = np.zeros(0, np.int64)
        out.hist = np.zeros((0, spec.d, spec.nbins), np.int64)
        out.unit_rows = np.zeros(0, np.int64)
    return out


def run_pass(plan: Plan, spec: PassSpec, engine: Any, task_rows: int) -> Partial:
    """One pass of ``spec`` over every row of ``plan`` on ``engine``; merged in task order."""
    tasks = plan.tasks(task_rows)
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
