"""Which rows of which shards an analysis reads, and which group each row belongs to.

The store's read plan (:meth:`Store.segments`, one read-only catalog query) turns a selection (kernel shape,
``where`` predicate over the ``layers`` view, grouping axis) into a :class:`Plan`: the selected layers as
segments ``(shard, row offset, count)`` with a histogram *unit* per segment — a (group, model) pair, so
that group histograms can be summed plainly or averaged per model. The plan is a snapshot: models added
while an analysis runs are not part of it, and shards are immutable, so a running analysis sees a
consistent store (a model removed meanwhile makes its shard vanish: a clear :class:`StoreError`).
The plan is then cut into tasks of about ``task_rows`` rows that never share a shard file between
tasks unless one shard alone is bigger than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from ..selection import DEPTH_LABELS
from ._settings import AnalysisError, Selection, SelectionError, shape_width

if TYPE_CHECKING:
    from ..store import Store

# where a layer's rows lie and what the catalog recorded of their shard (carried to the tasks)
SHARD_COLUMNS = ("shard", "row_offset", "shard_rows", "shard_bytes", "shard_sha256", "model")

__all__ = ["AnalysisError", "SelectionError", "Plan", "Task", "make_plan", "plan_for", "shape_width", "DEPTH_LABELS", "group_expression"]



@dataclass(frozen=True)
class Task:
    """Some segments of some shards: the unit of work of an engine (small and picklable)."""

    shards: tuple[str, ...]  # shard paths relative to the store root
    shard_index: np.ndarray  # (s,) int32: segment -> position in ``shards``
    starts: np.ndarray  # (s,) int64 row offsets inside the shard
    counts: np.ndarray  # (s,) int64
    units: np.ndarray  # (s,) int64 global unit ids
    records: tuple[Any, ...] = ()  # the catalog's ShardRecord of each of ``shards`` (checked on open); () unknown

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class Plan:
    """A snapshot of the selected rows, their groups and models."""

    root: str  # the store directory
    dtype: str  # float16 or float32 shards
    shape: str  # kernel shape key, '3x3'
    d: int  # values per filter
    layers: Any  # DataFrame: layer_id, model_id, n_filters, group, shard, row_offset, unit
    groups: tuple[str, ...]  # group labels, in first-seen order (depth deciles in decile order)
    unit_group: np.ndarray  # (u,) unit -> group index
    unit_model: np.ndarray  # (u,) unit -> model id
    notes: tuple[str, ...]  # what was left out and why
    unit_half: np.ndarray | None = None  # (u,) unit -> half of its group's layers (0/1), when split for noise floors

    @property
    def n_filters(self) -> int:
        return int(self.layers["n_filters"].sum())

    @property
    def n_units(self) -> int:
        return len(self.unit_group)

    def group_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """(filters, models) per group, from the catalog (no data read)."""
        g = len(self.groups)
        filters = np.bincount(self.layers["group"], weights=self.layers["n_filters"], minlength=g).astype(np.int64)
        pairs = np.unique(np.stack([self.unit_group, self.unit_model], 1), axis=0).reshape(-1, 2)  # halves: once
        models = np.bincount(pairs[:, 0], minlength=g).astype(np.int64)
        return filters, models

    def restrict(self, keep: Sequence[int], notes: Sequence[str] = ()) -> Plan:
        """The same snapshot with only the groups at indices ``keep`` (renumbered in that order)."""
        keep = [int(k) for k in keep]
        remap = np.full(len(self.groups), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        frame = self.layers[remap[self.layers["group"].to_numpy()] >= 0].copy()
        frame["group"] = remap[frame["group"].to_numpy()]
        old_units = np.flatnonzero(remap[self.unit_group] >= 0)
        unit_remap = np.full(len(self.unit_group), -1, np.int64)
        unit_remap[old_units] = np.arange(len(old_units))
        frame["unit"] = unit_remap[frame["unit"].to_numpy()]
        return Plan(self.root, self.dtype, self.shape, self.d, frame, tuple(self.groups[k] for k in keep),
                    remap[self.unit_group[old_units]], self.unit_model[old_units], self.notes + tuple(notes),
                    None if self.unit_half is None else self.unit_half[old_units])

    def tasks(self, task_rows: int = 4_000_000) -> list[Task]:
        """Cut the plan into tasks of about ``task_rows`` rows (segments ordered by shard and offset)."""
        if task_rows < 1:
            raise UsageError(f"task_rows must be >= 1, got {task_rows}")
        frame = self.layers
        shards = frame["shard"].to_numpy()
        starts = frame["row_offset"].to_numpy(np.int64)
        counts = frame["n_filters"].to_numpy(np.int64)
        units = frame["unit"].to_numpy(np.int64)
        records = _shard_records(frame)
        tasks: list[Task] = []
        cur: list[tuple[str, int, int, int]] = []
        cur_rows = 0

        def flush() -> None:
            nonlocal cur, cur_rows
            if not cur:
                return
            names = tuple(dict.fromkeys(c[0] for c in cur))
            pos = {n: i for i, n in enumerate(names)}
            merged: list[list[int]] = []  # join contiguous segments of one shard and unit
            for shard, start, count, unit in cur:
                si = pos[shard]
                if merged and merged[-1][0] == si and merged[-1][3] == unit and merged[-1][1] + merged[-1][2] == start:
                    merged[-1][2] += count
                else:
                    merged.append([si, start, count, unit])
            arr = np.array(merged, dtype=np.int64).reshape(-1, 4)
            tasks.append(Task(names, arr[:, 0].astype(np.int32), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy(),
                              tuple(records.get(n) for n in names) if records else ()))
            cur, cur_rows = [], 0

        for shard, start, count, unit in zip(shards, starts, counts, units):
            start, count = int(start), int(count)
            while count > 0:
                take = min(count, task_rows - cur_rows) if count > task_rows else count
                if cur_rows and cur_rows + take > task_rows:
                    flush()
                    continue
                cur.append((shard, start, take, int(unit)))
                cur_rows += take
                start += take
                count -= take
                if cur_rows >= task_rows:
                    flush()
        flush()
        return tasks


def _shard_records(frame: Any) -> dict[str, Any]:
    """shard -> the catalog's ShardRecord, from the read plan's columns (empty when the plan lacks them)."""
    if "shard_rows" not in frame.columns:
        return {}
    from ..store import ShardRecord

    first = frame.drop_duplicates("shard")
    out = {}
    for shard, rows, size, sha, model, mid in zip(first["shard"], first["shard_rows"], first["shard_bytes"],
                                                  first["shard_sha256"], first["model"], first["model_id"]):
        if rows is None or size is None or rows != rows or size != size:  # no t_shards row: the reader reports it
            continue
        out[str(shard)] = ShardRecord(int(size), int(rows), f"model {model!r} (id {int(mid)})",
                                      None if sha is None or sha != sha else str(sha))
    return out


def group_expression(store: Store, by: str | None) -> tuple[str, bool]:
    """(SQL expression for the group value, whether it is the depth-decile axis): the store's rule
    (:meth:`Catalog.axis_sql`), kept for callers that name an axis before any work."""
    if by is None:
        return "'all'", False
    return store.catalog.axis_sql(by)


def _finite_layers(store: Store, frame: Any, selection: Selection) -> tuple[Any, list[str]]:
    """The selected layers without the ones known to hold NaN / inf weights (noted); an AnalysisError when
    nothing is left."""
    shape, where, params = selection.shape_key, selection.where, selection.params
    notes: list[str] = []
    if frame.empty:
        sel = f" matching {where!r}" + (f" with params {list(params)!r}" if params else "") if where else ""
        raise AnalysisError(
            f"{store.root}: no {shape} filters{sel}; `filterdb layers {store.root}` lists what the store holds"
        )
    bad = frame["_nonfinite"].to_numpy(np.int64) > 0
    if bad.any():
        notes.append(f"{int(bad.sum())} layer(s) with {int(frame.loc[bad, 'n_filters'].sum())} filters hold NaN or "
                     "infinite weights and were left out (`filterdb check` names them)")
        frame = frame[~bad].copy()
        if frame.empty:
            raise AnalysisError(f"{store.root}: every selected {shape} layer holds NaN or infinite weights")
    return frame.drop(columns="_nonfinite"), notes


def make_plan(store: Store, shape: str = "3x3", where: str | None = None, params: Sequence[Any] | None = None,
              by: str | None = None, *, groups: Sequence[str] | None = None) -> Plan:
    """:func:`plan_for` with the selection given as keywords (kept for existing callers)."""
    return plan_for(store, Selection(shape, where, tuple(params or ()), by,
                                     None if groups is None else tuple(groups)))


def plan_for(store: Store, selection: Selection, *, halves: bool = False) -> Plan:
    """Snapshot the selection: segments, groups (``by``) and histogram units. See the module docstring.

    ``selection.groups`` restricts and orders the groups (values of ``by`` as text); a listed group with
    no filters is reported in ``notes``. ``halves``: units are (group, model, half), the half a fixed split of
    the layers (the store's ``half`` column), for the noise floors (:mod:`filterdb.analysis._floors`).
    """
    shape, d = selection.shape_key, selection.d
    by, groups = selection.by, selection.groups
    frame = store.segments(selection.replace(groups=None) if by is not None else selection, halves=halves)
    is_depth = "group_value" in frame.attrs.get("depth", ())  # the plan says so: no second catalog open
    if by is None:
        frame["group_value"] = "all"
    frame = frame.loc[frame["n_filters"] > 0, ["layer_id", "model_id", "n_filters", "group_value", *SHARD_COLUMNS,
                                               "n_nonfinite", *(["half"] if halves else [])]]
    frame = frame.rename(columns={"group_value": "_group", "n_nonfinite": "_nonfinite"}).reset_index(drop=True)
    frame, notes = _finite_layers(store, frame, selection)
    nulls = frame["_group"].isna()
    if len(frame) and nulls.all():  # the axis exists but no model has a value on it: say so, not "no filters"
        raise AnalysisError(
            f"{store.root}: no model in the selection has a value for {by!r} (all {len(frame)} layers with {shape} "
            f"filters have it empty); give the models metadata with `filterdb ingest STORE SOURCES --manifest "
            f"FILE.csv` (docs/store.md), or group by another column such as 'model' or 'depth'")
    if nulls.any():
        notes.append(f"{int(nulls.sum())} layer(s) with {int(frame.loc[nulls, 'n_filters'].sum())} filters have no "
                     f"value for {by!r} and were left out")
        frame = frame[~nulls].copy()
    frame["_group"] = frame["_group"].astype(str)
    if is_depth:
        present = set(frame["_group"])
        order = [g for g in DEPTH_LABELS if g in present]
    else:
        order = list(dict.fromkeys(frame["_group"]))
    if groups is not None:
        wanted = [str(g) for g in groups]
        for g in wanted:
            if g not in order:
                notes.append(f"group {g!r} has no {shape} filters in this selection")
        order = [g for g in wanted if g in order]
        frame = frame[frame["_group"].isin(order)].copy()
    if frame.empty:
        raise AnalysisError(f"{store.root}: none of the groups {list(groups)!r} has {shape} filters" if groups
                            else f"{store.root}: the selection has no {shape} filters")
    gindex = {g: i for i, g in enumerate(order)}
    frame["group"] = frame["_group"].map(gindex).astype(np.int64)
    keys = ["group", "model_id", *(["half"] if halves else [])]
    pairs = frame[keys].drop_duplicates().reset_index(drop=True)
    pairs["unit"] = np.arange(len(pairs), dtype=np.int64)
    frame = frame.merge(pairs, on=keys, how="left", sort=False)
    frame = frame.drop(columns="_group")
    return Plan(
        root=str(store.root),
        dtype=store.dtype,
        shape=shape,
        d=d,
        layers=frame,
        groups=tuple(order),
        unit_group=pairs["group"].to_numpy(np.int64),
        unit_model=pairs["model_id"].to_numpy(np.int64),
        notes=tuple(notes),
        unit_half=pairs["half"].to_numpy(np.int64) if halves else None,
    )
