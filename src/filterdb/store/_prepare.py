"""Turn a ModelRecord into what the store writes: rows for the catalog and one filter array per kernel shape.

Pure and picklable, so that ingest can run it in worker processes next to the (CPU-bound) model readers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._kernel import kernel_key  # the one kernel-key rule (filterdb._kernel)
from ..errors import UsageError
from ..types import ConvLayer, ModelRecord
from ._catalog import METRIC_COLUMNS, normalise_column

__all__ = ["LayerMetrics", "PreparedModel", "kernel_key", "metric_rows", "prepare_model", "record_sha256"]

# A layer metrics table, one row per layer of the record: filterdb.check.check_model(record).layers (a DataFrame)
# or its rows (mappings). The store stores it; it never computes one (that is the ingest layer's job).
LayerMetrics = Any


def record_sha256(record: ModelRecord) -> str:
    """Content address of a record: the file's sha256, else a hash of its layers (names, shapes, weights)."""
    if record.info.sha256:
        return record.info.sha256
    digest = hashlib.sha256(b"filterdb-record-v1")
    for layer in record.layers:
        digest.update(layer.name.encode() + b"\0" + str(layer.weight.shape).encode() + b"\0")
        digest.update(np.ascontiguousarray(layer.weight, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass
class PreparedModel:
    """Everything one catalog transaction needs for one model."""

    sha256: str
    model_row: dict[str, Any]  # t_models columns (without model_id / version)
    layer_rows: list[dict[str, Any]]  # t_layers columns (without ids / shard / row_offset)
    filters: dict[str, np.ndarray] = field(default_factory=dict)  # kernel key -> (n, k) stored values
    layer_kernel: list[str] = field(default_factory=list)  # kernel key of each layer row
    fingerprint: Any = None  # the model's lineage fingerprint (docs/lineage.md), saved next to the catalog

    @property
    def n_filters(self) -> int:
        return int(sum(len(v) for v in self.filters.values()))


def _scale(weight: np.ndarray) -> float:
    finite = np.abs(weight[np.isfinite(weight)]) if not np.isfinite(weight).all() else np.abs(weight)
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def metric_rows(table: LayerMetrics, record: ModelRecord) -> list[dict[str, Any]]:
    """The catalog's metric columns per layer of ``record`` from a layer metrics table (DataFrame or rows)."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else [dict(r) for r in table]
    names = [layer.name for layer in record.layers]
    if [r.get("name") for r in rows] != names:
        raise UsageError(f"{record.info.source}: the metrics table has layers {[r.get('name') for r in rows][:5]}…, "
                         f"the model {names[:5]}…; compute it from this record (filterdb.check.check_model)")
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for col in METRIC_COLUMNS:
            value = row.get(col)
            if col == "verdicts":
                clean[col] = [str(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else None
            elif value is None or _missing(value):
                clean[col] = None
            else:
                clean[col] = int(value) if METRIC_COLUMNS[col] == "BIGINT" else float(value)
        out.append(clean)
    return out


def _missing(value: Any) -> bool:
    """None, NaN or pandas NA (whose comparisons are neither true nor false)."""
    try:
        return value is None or bool(value != value)
    except TypeError:
        return True


def _layer_row(index: int, layer: ConvLayer) -> dict[str, Any]:
    return {
        "layer_index": index,
        "layer": layer.name,
        "op_type": layer.op_type,
        "kind": layer.kind,
        "shape": [int(s) for s in layer.weight.shape],
        "kernel": kernel_key(layer.kernel),
        "spatial_ndim": layer.spatial_ndim,
        "groups": layer.groups,
        "stride": list(layer.stride) if layer.stride is not None else None,
        "dilation": list(layer.dilation) if layer.dilation is not None else None,
        "n_filters": layer.n_filters,
        "conv_depth": layer.conv_depth,
        "conv_depth_norm": layer.conv_depth_norm,
        "depth_source": layer.depth_source,
        "storage_dtype": layer.storage_dtype,
        "notes": "; ".join(layer.notes) or None,
    }


def prepare_model(
    record: ModelRecord,
    metadata: Mapping[str, Any] | None = None,
    *,
    dtype: str = "float16",
    metrics: LayerMetrics | None,
) -> PreparedModel:
    """Catalog rows and per-shape filter arrays of ``record``.

    ``metrics`` is the model's layer metrics table (:func:`filterdb.check.check_model`'s ``layers``, one row per
    layer of ``record``), or None (or False) to store NULL metrics; :func:`filterdb.ingest_record` computes it.
    ``metadata`` keys are normalised to catalog column names ("Visual Category" -> "visual_category").

    float16 stores divide each layer by its max |w| (finite values; kept as ``scale``), so that
    ``stored * scale`` is within 2**-11 * scale of the original weight; float32 stores keep exact values
    with scale 1.
    """
    metadata = {normalise_column(k): v for k, v in (metadata or {}).items()}
    info = record.info
    notes = list(info.notes)
    if metrics is True:  # the store never runs the health check itself
        raise UsageError("prepare_model(metrics=True): the store does not compute metrics; pass "
                        "filterdb.check.check_model(record).layers, or None, or use filterdb.ingest_record")
    layer_metrics = None if metrics is False or metrics is None else metric_rows(metrics, record)
    rows: list[dict[str, Any]] = []
    kernels: list[str] = []
    chunks: dict[str, list[np.ndarray]] = {}
    for index, layer in enumerate(record.layers):
        row = _layer_row(index, layer)
        flat = layer.filters()
        if dtype == "float16":
            scale = _scale(flat)
            stored = (flat / np.float32(scale)).astype(np.float16)
        else:
            scale = 1.0
            stored = flat.astype(np.float32, copy=False)
        row["scale"] = scale
        if layer_metrics is not None:
            row.update(layer_metrics[index])
        rows.append(row)
        kernels.append(row["kernel"])
        chunks.setdefault(row["kernel"], []).append(stored)
    filters = {k: (np.concatenate(v) if len(v) > 1 else v[0]) for k, v in chunks.items()}
    name = metadata.pop("name", None) or metadata.pop("model", None) or _default_name(record)
    sha256 = record_sha256(record)
    model_row: dict[str, Any] = {
        "model": str(name),
        "sha256": sha256,
        "source": info.source,
        "path": info.path,
        "format": info.format,
        "producer": info.producer,
        "producer_version": info.producer_version,
        "opset": info.opset,
        "n_parameters": info.n_parameters,
        "size_bytes": info.size_bytes,
        "n_layers": len(rows),
        "n_filters": int(sum(r["n_filters"] for r in rows)),
        "op_counts": json.dumps(dict(info.op_counts), sort_keys=True) if info.op_counts else None,
        "notes": "; ".join(notes) or None,
    }
    for key, value in metadata.items():
        if key in model_row or key in ("model_id", "version", "ingested_at"):
            key = f"meta_{key}"
        model_row[key] = None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return PreparedModel(sha256, model_row, rows, filters, kernels)


def _default_name(record: ModelRecord) -> str:
    from pathlib import PurePath

    src = record.info.source or record.info.path or "model"
    return PurePath(src.split("#")[-1]).name or src
