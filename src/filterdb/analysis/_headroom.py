"""The study's pruning headroom: per model, the share of its conv weights removable at no measured risk (near-zero
channels) and the share more at low diversity (near-duplicate channels), summed over the zoo and per group.

The numbers are the ones ``filterdb ingest`` kept per model (``filterdb.prune.Headroom``, the store's per-model
data of kind "prune": ``prune_plan(model, free_only=True)``'s totals); the study never reads weights for them. A
model ingested before they were kept is "not measured" (never a 0), and the note says how to fill it
(docs/report.md, "Pruning headroom").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GroupHeadroom", "ModelHeadroom", "PruneHeadroom", "prune_headroom"]

MEASURED, NOT_MEASURED, NOT_MEASURABLE = "measured", "not measured", "not measurable"


def _share(part: int | None, total: int | None) -> float | None:
    return part / total if part is not None and total else None


class _Shares:
    """The two shares of a model's or a group's conv weights, and the dict both write (their fields first)."""

    params_total: int | None
    free_params: int | None
    redundant_params: int | None

    @property
    def free_share(self) -> float | None:
        return _share(self.free_params, self.params_total)

    @property
    def redundant_share(self) -> float | None:
        return _share(self.redundant_params, self.params_total)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "free_share": self.free_share,  # type: ignore[call-overload]
                "redundant_share": self.redundant_share}


@dataclass(frozen=True)
class ModelHeadroom(_Shares):
    """One model's headroom, or why there is none."""

    model: str
    """The model's name (``name@version`` where a name has several versions)."""
    model_id: int
    status: str
    """"measured", "not measured" (ingested before filterdb kept it, or its data is damaged) or "not measurable"
    (with the reason in ``note``)."""
    params_total: int | None = None
    """Conv weights of the model (None unless measured)."""
    free_params: int | None = None
    """Of them, in near-zero channels and the inputs that read them: removable at no measured risk."""
    redundant_params: int | None = None
    """More in near-duplicate channels: removable at low diversity."""
    n_layers: int | None = None
    """Conv layers the plan read."""
    group: str | None = None
    """The model's value of :attr:`PruneHeadroom.by` (None: no value, or no grouping)."""
    note: str | None = None


@dataclass(frozen=True)
class GroupHeadroom(_Shares):
    """The measured models of one group (or of the whole zoo), summed: shares of their conv weights together."""

    group: str
    n_models: int
    """Measured models in the group."""
    n_not_measured: int
    """Models of the group without numbers (not measured or not measurable): left out of the sums."""
    params_total: int
    free_params: int
    redundant_params: int


@dataclass(frozen=True)
class PruneHeadroom:
    """Pruning headroom of every model of the store (see the module docstring)."""

    models: tuple[ModelHeadroom, ...]
    """Every model, in the store's order."""
    total: GroupHeadroom
    """The measured models summed (group "all models")."""
    by: str | None
    """The grouping of :attr:`groups`: the study's first axis when it is a model column (task, ...), else None."""
    groups: tuple[GroupHeadroom, ...]
    """Per value of :attr:`by`, largest free share first; empty without a grouping."""
    note: str | None = None
    """How to fill the models not measured, when there are some."""

    @property
    def not_measured(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.models if m.status == NOT_MEASURED)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.to_dict(), "by": self.by, "groups": [g.to_dict() for g in self.groups],
                "models": [m.to_dict() for m in self.models], "not_measured": list(self.not_measured),
                "note": self.note}


def _labels(rows: Any) -> list[str]:
    counts = rows["model"].value_counts()
    return [str(m) if counts[m] == 1 else f"{m}@{v}" for m, v in zip(rows["model"], rows["version"])]


def _model(store: Any, model_id: int, name: str, sha: str, group: str | None) -> ModelHeadroom:
    from ..prune import HEADROOM_KIND, Headroom
    from ..store import StoreError, model_data

    try:
        arrays = model_data(store, sha, HEADROOM_KIND) if len(sha) == 64 else None
    except (StoreError, OSError, ValueError) as e:  # damaged: said, never a 0
        return ModelHeadroom(name, model_id, NOT_MEASURED, group=group, note=f"damaged headroom data: {e}")
    found = Headroom.from_arrays(arrays) if arrays is not None else None
    if found is None:
        return ModelHeadroom(name, model_id, NOT_MEASURED, group=group,
                             note=None if arrays is None else "headroom data of another layout")
    if not found.measured:
        return ModelHeadroom(name, model_id, NOT_MEASURABLE, group=group, note=found.reason)
    return ModelHeadroom(name, model_id, MEASURED, found.params_total, found.free_params, found.redundant_params,
                         len(found.layers), group)


def _sum(name: str, models: list[ModelHeadroom]) -> GroupHeadroom:
    done = [m for m in models if m.status == MEASURED]
    return GroupHeadroom(name, len(done), len(models) - len(done), sum(m.params_total or 0 for m in done),
                         sum(m.free_params or 0 for m in done), sum(m.redundant_params or 0 for m in done))


def prune_headroom(store: Any, by: str | None = None) -> PruneHeadroom:
    """The headroom the store keeps for its models (one small file per model; no weights are read), summed
    over all of them and per value of ``by`` when it is a column of the ``models`` view."""
    rows = store.models()
    by = by if by is not None and by in rows.columns else None
    names = _labels(rows) if len(rows) else []
    groups = [None if by is None or _missing(v) else str(v) for v in (rows[by] if by else [None] * len(rows))]
    models = [_model(store, int(mid), name, str(sha), group)
              for mid, name, sha, group in zip(rows["model_id"], names, rows["sha256"], groups)]
    per_group = []
    if by is not None:
        for value in dict.fromkeys(g for g in groups if g is not None):
            per_group.append(_sum(value, [m for m in models if m.group == value]))
        per_group.sort(key=lambda g: (-(g.free_share or 0.0), -(g.redundant_share or 0.0), g.group))
    missing = [m for m in models if m.status == NOT_MEASURED]
    note = None
    if missing:
        note = (f"{len(missing)} of {len(models)} models have no pruning headroom in the store (ingested before "
                "filterdb kept it, or its file is damaged): they are \"not measured\", left out of the sums. "
                f"`filterdb ingest {store.root} FILE...` with their model files again fills it (each file is read "
                "once; the models stay as they are).")
    return PruneHeadroom(tuple(models), _sum("all models", models), by, tuple(per_group), note)


def _missing(value: Any) -> bool:
    """No value, or one that says "not known" (never a group of its own, as in the study's axes)."""
    import pandas as pd

    from ._study_run import UNKNOWN_VALUES

    return value is None or bool(pd.isna(value)) or str(value).strip().lower() in UNKNOWN_VALUES
