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

from .._kernel import KernelKey, kernel_key  # the one kernel-key rule (filterdb._kernel)
from ..errors import UsageError
from ..types import ConvLayer, ModelRecord
from ._catalog import METRIC_COLUMNS, normalise_column

__all__ = ["LayerMetrics", "PreparedModel", "check_prepared", "kernel_key", "metric_rows", "model_name", "name_for",
           "prepare_model", "source_name",
           "record_sha256"]

@dataclass(frozen=True)
class LayerMetrics:
    """The metrics of each layer of one record, as numpy columns: what ingest hands the store (which stores
    them; it never computes them). ``names`` are the layers' names (checked against the record);
    ``columns`` holds one array per catalog metric column (float64, int64 for counts) and ``verdicts`` the
    verdict kinds per layer.

    Build it with :meth:`from_columns` from ``filterdb.check.check_model(record).columns`` (no DataFrame).
    """

    names: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    verdicts: tuple[tuple[str, ...], ...]

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> LayerMetrics:
        """From per-layer columns (name -> sequence): ``name``, the metric columns (missing ones: NULL), and
        ``verdicts`` (per layer, a list of kinds)."""
        names = tuple(str(n) for n in columns.get("name", ()))
        n = len(names)
        out: dict[str, np.ndarray] = {}
        for col, sql_type in METRIC_COLUMNS.items():
            if col == "verdicts" or col not in columns:
                continue
            values = columns[col]
            if sql_type == "BIGINT":
                arr = np.array([None if _missing(v) else int(v) for v in values], dtype=object)
            else:
                arr = np.asarray([np.nan if _missing(v) else float(v) for v in values], dtype=np.float64)
            if len(arr) != n:
                raise UsageError(f"layer metrics: column {col!r} has {len(arr)} values for {n} layers")
            out[col] = arr
        raw = columns.get("verdicts")
        verdicts = tuple(tuple(str(v) for v in (row if isinstance(row, (list, tuple, np.ndarray)) else ()))
                         for row in raw) if raw is not None else tuple(() for _ in names)
        if len(verdicts) != n:
            raise UsageError(f"layer metrics: {len(verdicts)} verdict lists for {n} layers")
        return cls(names, out, verdicts)

    @classmethod
    def of(cls, table: Any) -> LayerMetrics:
        """From a layer metrics table: a LayerMetrics, ``check_model(record).layers`` (a DataFrame) or its rows."""
        if isinstance(table, LayerMetrics):
            return table
        if hasattr(table, "to_dict"):
            return cls.from_columns({c: list(table[c]) for c in table.columns})
        rows = [dict(r) for r in table]
        keys = {k for r in rows for k in r}
        return cls.from_columns({k: [r.get(k) for r in rows] for k in keys} if rows else {"name": []})

    def rows(self) -> list[dict[str, Any]]:
        """The catalog's metric columns per layer (None for NULL)."""
        out = []
        for i in range(len(self.names)):
            row: dict[str, Any] = {col: None for col in METRIC_COLUMNS}
            for col, arr in self.columns.items():
                value = arr[i]
                bigint = METRIC_COLUMNS[col] == "BIGINT"
                row[col] = None if _missing(value) else (int(value) if bigint else float(value))
            row["verdicts"] = list(self.verdicts[i]) if self.verdicts else None
            out.append(row)
        return out


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
    # other per-model data (kind -> arrays, e.g. the pruning headroom), saved with put_model_data after the commit
    model_data: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def n_filters(self) -> int:
        return int(sum(len(v) for v in self.filters.values()))


def _scale(weight: np.ndarray) -> float:
    finite = np.abs(weight[np.isfinite(weight)]) if not np.isfinite(weight).all() else np.abs(weight)
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def metric_rows(table: LayerMetrics | Any, record: ModelRecord) -> list[dict[str, Any]]:
    """The catalog's metric columns per layer of ``record`` from its layer metrics (a :class:`LayerMetrics`, a
    DataFrame or rows)."""
    metrics = LayerMetrics.of(table)
    names = tuple(layer.name for layer in record.layers)
    if metrics.names != names:
        raise UsageError(f"{record.info.source}: the metrics table has layers {list(metrics.names)[:5]}…, "
                         f"the model {list(names)[:5]}…; compute it from this record (filterdb.check.check_model)")
    return metrics.rows()


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
    metrics: LayerMetrics | Any | None,
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
    name = _name(record, metadata)
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


def _name(record: ModelRecord, metadata: dict[str, Any]) -> str:
    return str(metadata.pop("name", None) or metadata.pop("model", None) or _default_name(record))


def model_name(record: ModelRecord, metadata: Mapping[str, Any] | None) -> tuple[str, str]:
    """(the name, the source) ``record`` is ingested under with ``metadata``."""
    return _name(record, {normalise_column(k): v for k, v in (metadata or {}).items()}), record.info.source


def name_for(source: str, metadata: Mapping[str, Any] | None) -> str:
    """The name a model from ``source`` is ingested under: the manifest's Name, else the file name."""
    clean = {normalise_column(k): v for k, v in (metadata or {}).items()}
    return str(clean.get("name") or clean.get("model") or source_name(source))


def check_prepared(prepared: PreparedModel, dtype: str) -> None:
    """Refuse a prepared model whose rows disagree with each other or with its arrays: each layer's shape,
    groups, kernel and n_filters, and each kernel's filter count and width (a reader or a caller's bug must
    not reach the catalog, where every later reader would trip on it)."""
    from ._errors import StoreError

    model = prepared.model_row.get("model")
    expect = np.float16 if dtype == "float16" else np.float32
    counts: dict[str, int] = {}
    if len(prepared.layer_kernel) != len(prepared.layer_rows):
        raise StoreError(f"model {model!r}: {len(prepared.layer_rows)} layer rows but {len(prepared.layer_kernel)} "
                         "kernel keys")
    for row, key in zip(prepared.layer_rows, prepared.layer_kernel):
        def bad(what: str) -> StoreError:
            return StoreError(f"model {model!r}, layer {str(row.get('layer'))[:120]!r}: {what}; the rows disagree, "
                              "nothing was written (a reader's or the caller's bug)")

        raw = row.get("shape")
        if not isinstance(raw, (list, tuple)) or len(raw) < 3 or not all(isinstance(d, int) and d > 0 for d in raw):
            raise bad(f"weight shape {raw!r} is not (out, in, *kernel) of positive sizes")
        shape: list[int] = list(raw)
        n, groups = row.get("n_filters"), row.get("groups")
        if n != shape[0] * shape[1]:
            raise bad(f"n_filters {n!r} is not out x in = {shape[0] * shape[1]} of shape {tuple(shape)}")
        if not isinstance(groups, int) or groups < 1 or shape[0] % groups:
            raise bad(f"groups {groups!r} does not divide the {shape[0]} filters of the first axis")
        if row.get("kernel") != key or key != kernel_key(tuple(shape[2:])):
            raise bad(f"kernel {row.get('kernel')!r} / {key!r} is not the shape's {kernel_key(tuple(shape[2:]))!r}")
        counts[key] = counts.get(key, 0) + n
    for key, values in prepared.filters.items():
        width = KernelKey.parse(key).width
        if values.dtype != expect:
            raise StoreError(f"model {model!r}: prepared filters are {values.dtype}, the store holds {dtype}")
        if values.ndim != 2 or values.shape[1] != width or values.shape[0] != counts.get(key, 0):
            raise StoreError(f"model {model!r}: the {key} filters are an array of shape {values.shape}, the layer "
                             f"rows need ({counts.get(key, 0)}, {width}); nothing was written")
    missing = set(counts) - set(prepared.filters)
    if any(counts[k] for k in missing):
        raise StoreError(f"model {model!r}: layers of kernel {sorted(missing)[0]} have no filter array")


def _default_name(record: ModelRecord) -> str:
    return source_name(record.info.source or record.info.path or "model")


def source_name(source: str) -> str:
    """The name a model gets from its source when the manifest gives none: the file name."""
    from pathlib import PurePath

    return PurePath(source.split("#")[-1]).name or source
