"""How common degenerated layers are: per model, per group and per depth decile (docs/reference.md §7).

Reads the layer metrics stored at ingest (sparsity, normalised variance entropy, neighbour-tap correlation)
from the catalog — no filter data — and judges them with :func:`filterdb.check.judge_layers`, the rule of
``filterdb check``: the cut-offs are parameters, and a store ingested by an older filterdb is judged by the
current rule (the ``verdicts`` column stored at ingest is not read). For each kind ("sparse",
"low-diversity", "random") it reports the share of layers flagged and the share of filters that sit in
flagged layers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..selection import DEPTH_LABELS
from ._selection import AnalysisError
from ._settings import Selection, selection_of
from .pca import as_store

__all__ = ["DegenerationResult", "NoMetricsError", "degeneration", "KINDS"]

KINDS = ("sparse", "low-diversity", "random")


class NoMetricsError(AnalysisError):
    """No selected layer has stored metrics: there is nothing to judge (not a failure of the analysis)."""


@dataclass(frozen=True, eq=False)
class DegenerationResult:
    """Shares of degenerated layers and of the filters in them.

    Each table (pandas DataFrame) has one row per model / group / depth decile with ``n_layers``,
    ``n_filters`` and, per kind K in ("sparse", "low-diversity", "random", "any"), ``K_layers`` (share of
    layers flagged) and ``K_filters`` (share of filters in flagged layers).
    """

    per_model: Any
    per_group: Any | None
    per_depth: Any
    overall: dict[str, float]
    by: str | None
    thresholds: Any
    notes: tuple[str, ...] = field(default=())

    def to_frame(self) -> Any:
        """The main table: ``per_group`` when the result is grouped (``by``), else ``per_model``."""
        return self.per_group if self.per_group is not None else self.per_model

    def to_dict(self) -> dict[str, Any]:
        def records(frame: Any) -> Any:
            return None if frame is None else json.loads(frame.to_json(orient="records"))

        import dataclasses

        return {"by": self.by, "overall": self.overall, "thresholds": dataclasses.asdict(self.thresholds),
                "per_model": records(self.per_model), "per_group": records(self.per_group),
                "per_depth": records(self.per_depth), "notes": list(self.notes)}

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .pca import _write_atomic

            _write_atomic(path, text.encode())
        return text


def _flags(frame: Any, t: Any) -> Any:
    """``frame`` with one boolean column per kind and "any", judged by filterdb.check's rule."""
    from ..check import judge_layers

    judged = judge_layers(frame, t)
    out = frame.copy()
    for kind in KINDS:
        out[kind] = judged.flags[kind]
    out["any"] = out[list(KINDS)].any(axis=1)
    return out


def _table(frame: Any, key: str) -> Any:
    import pandas as pd

    rows = []
    for value, part in frame.groupby(key, sort=False, dropna=False):
        total = float(part["n_filters"].sum())
        row: dict[str, Any] = {key: value, "n_models": int(part["model_id"].nunique()), "n_layers": len(part),
                               "n_filters": int(total)}
        for kind in (*KINDS, "any"):
            flagged = part[kind]
            row[f"{kind}_layers"] = float(flagged.mean())
            row[f"{kind}_filters"] = float(part.loc[flagged, "n_filters"].sum() / total) if total else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def degeneration(store: Any, by: str | None = None, where: str | None = None, params: Sequence[Any] | None = None,
                 *, shape: str | None = None, thresholds: Any = None,
                 selection: Selection | None = None) -> DegenerationResult:
    """Shares of sparse / low-diversity / random layers and of their filters (docs/reference.md §7).

    Parameters
    ----------
    by : str, optional
        A grouping for ``per_group``: a column of the ``layers`` view, ``"depth"`` or an SQL expression.
    where, params : optional
        Layer selection, as everywhere.
    shape : str, optional
        Only layers of this kernel shape (default: every 2-D conv layer).
    thresholds : filterdb.check.Thresholds, optional
        Cut-offs (default: the ones of ``filterdb check``).
    selection : Selection, optional
        ``by``, ``where``, ``params`` and ``shape`` as one object (its ``shape`` may be None: every 2-D
        kernel shape); leave the loose keywords at their defaults.

    Examples
    --------
    >>> result = degeneration("zoo.fdb", by="task")  # doctest: +SKIP
    >>> result.per_group[["task", "sparse_layers", "random_filters"]]  # doctest: +SKIP
    """
    from ..check import Thresholds

    if selection is None:
        sel = Selection(shape, where, tuple(params or ()), by)
    else:
        sel = selection_of(selection, by=by, where=where, params=params, shape=shape if shape is not None else "3x3")
    by = sel.by
    t = thresholds or Thresholds()
    store = as_store(store)
    # the store writes the selection's SQL; the depth deciles are its axis "depth" (the one rule)
    frame = store.catalog.selected_layers(sel.replace(by=None), axes=["depth"] if by is None else ["depth", by],
                                  columns=("layer_id", "model_id", "model", "n_filters", "kernel", "conv_depth_norm",
                                           "sparsity", "variance_entropy_norm", "variance_entropy_clean_norm",
                                           "neighbour_corr", "n_nonfinite"))
    notes: list[str] = []
    if frame.empty:
        raise AnalysisError(f"{store.root}: no conv layers match the selection; `filterdb layers {store.root}` "
                            "lists what the store holds")
    missing = frame["sparsity"].isna() & frame["variance_entropy_norm"].isna()
    if missing.any():
        notes.append(f"{int(missing.sum())} layer(s) have no stored metrics (ingested with metrics off) and are "
                     "left out; re-ingest them with metrics to include them")
        frame = frame[~missing].copy()
    if frame.empty:
        raise NoMetricsError(f"{store.root}: none of the selected layers has stored metrics (ingested with metrics "
                             "off); re-ingest the models with metrics to judge their layers")
    frame["depth_decile"] = frame["axis_0"].where(frame["axis_0"].notna(), "unknown")
    flagged = _flags(frame, t)
    per_model = _table(flagged, "model")
    per_depth = _table(flagged, "depth_decile")
    order = {label: i for i, label in enumerate((*DEPTH_LABELS, "unknown"))}
    per_depth = per_depth.sort_values("depth_decile", key=lambda s: s.map(order)).reset_index(drop=True)
    per_group = None
    if by is not None:
        empty = "unknown" if store.catalog.axis_sql(by)[1] else "(none)"  # depth: as in per_depth
        flagged["group"] = flagged["axis_1"].astype(object).where(flagged["axis_1"].notna(), empty).astype(str)
        per_group = _table(flagged, "group").rename(columns={"group": by})
    total = float(flagged["n_filters"].sum())
    overall = {"n_layers": float(len(flagged)), "n_filters": total}
    for kind in (*KINDS, "any"):
        overall[f"{kind}_layers"] = float(flagged[kind].mean())
        overall[f"{kind}_filters"] = float(flagged.loc[flagged[kind], "n_filters"].sum() / total) if total else 0.0
    return DegenerationResult(per_model, per_group, per_depth, overall, by, t, tuple(notes))
