"""The import half of the CNN Filter DB HDF5 layout: a ``dataset.h5`` -> one (record, metadata) per model.

The file is untrusted input (it is what people download): ``/meta`` is read by :mod:`._pandas_h5` (h5py and a
restricted unpickler, never ``pandas.read_hdf``, which would run code pickled in the file), and the whole
layout is checked before any filter is read:

* ``/filters`` (or ``/filter``) is a 2-D float dataset of width >= 1 stored inside the file (no external link,
  external storage or virtual dataset), with chunks the memory budget allows;
* every ``filter_ids`` is "start:end" inside ``/filters``, no two layers share a row and every row referenced
  is stored in the file (never-written rows read as zeros), so the file's own data bound what an import
  reads and writes;
* the rows referenced in all fit the budget's default for a file of this size (a 20 KB file cannot declare
  gigabytes of never-written filters), and each model's weights fit the read's budget
  (``--max-memory``, as for any model file); models are read one at a time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._budget import DEFAULT_FACTOR, DEFAULT_FLOOR, MemoryBudget
from .._format import count, size
from ..errors import FilterDBError, MemoryBudgetError, MissingDependencyError, ModelFormatError
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._pandas_h5 import read_fixed_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HDF5_COLUMNS", "iter_hdf5_models", "need_tables"]

# catalog column -> the published data set's column name
HDF5_COLUMNS = {
    "model": "Name",
    "task": "Task",
    "visual_category": "Visual Category",
    "training_dataset": "Training-Dataset",
    "pretraining_dataset": "Pretraining-Dataset",
    "architecture": "Network",
    "backbone": "Backbone",
    "framework": "Framework",
    "precision": "Precision",
    "optimizer": "Optimizer",
    "conv_weight_initializer": "Conv Weight Initializer",
    "paper": "Paper",
    "url": "Source URL",
    "license": "License",
}
_IMPORT_ALIASES = {"Datatype": "visual_category", "Architecture": "architecture", "source URL": "url"}
_DERIVED = re.compile(r"^\(\d+(, \d+)*\) filters$")  # "(3, 3) filters" counts are recomputed, not imported
_LAYER_LEVEL = {"filter_ids", "model_id", "conv_depth", "conv_depth_norm", "layer_id", "depth", "total_filters",
                "3x3_filter_share", "producer", "op_set", "model"}
_RANGE = re.compile(r"\s*(\d{1,18})\s*:\s*(\d{1,18})\s*")
_MAX_DEPTH = 2**31 - 1  # conv_depth and op_set are INTEGER columns of the catalog


def need_tables() -> None:
    """The layout's extra (``hdf5``: PyTables, which ``export_hdf5`` writes ``/meta`` with)."""
    try:
        import tables  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("the CNN Filter DB HDF5 layout (a PyTables DataFrame) needs the 'tables' "
                                     "package: pip install tables") from e


def _filters(h5: Any, source: Path, budget: MemoryBudget) -> Any:
    """The ``/filters`` dataset, its shape, type and chunking checked (rows are read later, model by model)."""
    import h5py

    key = "filters" if "filters" in h5 else "filter" if "filter" in h5 else None
    if key is None:
        raise ModelFormatError(f"{source}: no /filters (or /filter) dataset; not the CNN Filter DB layout")
    node = h5.get(key)
    if not isinstance(node, h5py.Dataset):
        raise ModelFormatError(f"{source}: /{key} is not a dataset; not the CNN Filter DB layout")
    dtype = node.dtype
    if node.ndim != 2 or dtype.kind != "f" or dtype.fields is not None:
        raise ModelFormatError(f"{source}: /{key} is a {node.ndim}-D dataset of {dtype}; the CNN Filter DB layout "
                               "keeps an N x k array of floats (one filter of k weights per row)")
    if node.shape[1] < 1:
        raise ModelFormatError(f"{source}: /{key} has shape {node.shape}: filters of width 0 hold no weight; "
                               "the file is damaged or crafted")
    if node.chunks is not None:
        budget.check(math.prod(node.chunks) * dtype.itemsize, f"one chunk {node.chunks} of /{key}")
    return node


def _ranges(meta: pd.DataFrame, n_rows: int, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) row ranges of every /meta row, checked: inside /filters, non-empty, no row shared."""
    text = meta["filter_ids"].astype(str)
    parts = text.str.fullmatch(_RANGE.pattern)
    if not parts.all():
        bad = text[~parts].iloc[0]
        raise ModelFormatError(f"{source}: filter_ids {bad[:40]!r} is not 'start:end'; not the CNN Filter DB layout")
    bounds = text.str.extract(_RANGE.pattern).astype(np.int64).to_numpy()
    starts, ends = bounds[:, 0], bounds[:, 1] + 1
    outside = (ends <= starts) | (ends > n_rows)
    if outside.any():
        raise ModelFormatError(f"{source}: filter_ids {text[outside].iloc[0][:40]!r} lies outside the {n_rows:,} "
                               "filters of /filters (or ends before it starts); the file is damaged or crafted")
    order = np.argsort(starts, kind="stable")
    overlap = np.flatnonzero(starts[order][1:] < ends[order][:-1])
    if overlap.size:
        first, second = text.iloc[order[overlap[0]]], text.iloc[order[overlap[0] + 1]]
        raise ModelFormatError(f"{source}: filter_ids {first[:40]!r} and {second[:40]!r} share filters; each filter "
                               "of the layout belongs to one layer (the file is damaged or crafted)")
    return starts, ends


def _check_written(node: Any, ids: pd.Series, starts: np.ndarray, ends: np.ndarray, source: Path) -> None:
    """Every referenced row must be stored in the file: HDF5 answers rows never written with zeros (its fill
    value), so a few KB could otherwise declare millions of filters. Contiguous data is stored whole or not at
    all; chunked data row-chunk by row-chunk (each chunk in the chunk index, whatever its compression)."""
    rows, width = node.shape
    if not len(starts):
        return
    if node.chunks is None:
        stored = node.id.get_storage_size()
        if stored < rows * width * node.dtype.itemsize:
            raise ModelFormatError(f"{source}: {node.name} declares {rows:,} x {width} values but stores "
                                   f"{size(stored, exact=True)}: its rows were never written (the file is damaged or "
                                   "crafted)")
        return
    chunk_rows, chunk_cols = node.chunks
    found: list[int] = []
    if hasattr(node.id, "chunk_iter"):  # HDF5 >= 1.12.3: one pass over the chunk index
        node.id.chunk_iter(lambda info: found.append(info.chunk_offset[0] // chunk_rows))
    else:
        found = [node.id.get_chunk_info(i).chunk_offset[0] // chunk_rows for i in range(node.id.get_num_chunks())]
    chunk_ids, n_parts = np.unique(np.asarray(found, dtype=np.int64), return_counts=True)
    complete = chunk_ids[n_parts >= -(-width // chunk_cols)]  # every column chunk of the row chunk is stored
    first, last = starts // chunk_rows, (ends - 1) // chunk_rows
    stored = np.searchsorted(complete, last, side="right") - np.searchsorted(complete, first, side="left")
    missing = np.flatnonzero(stored < last - first + 1)
    if missing.size:
        raise ModelFormatError(f"{source}: filter_ids {str(ids.iloc[missing[0]])[:40]!r} reaches rows of {node.name} "
                               "that the file never wrote (HDF5 would read them as zeros); the file is damaged or "
                               "crafted")


def _check_total(n_filters: int, width: int, source: Path, budget: MemoryBudget) -> None:
    """The rows /meta references must be data the file can hold (or the user raised --max-memory above them)."""
    nbytes = n_filters * width * 4  # as float32
    limit = DEFAULT_FACTOR * source.stat().st_size + DEFAULT_FLOOR
    if nbytes > max(limit, budget.limit if budget.explicit else 0):
        raise MemoryBudgetError(
            f"{source}: /meta references {count(n_filters)} filters of {width} weights ({size(nbytes, exact=True)} "
            f"as float32), more than a file of {size(source.stat().st_size, exact=True)} can hold "
            f"({DEFAULT_FACTOR} x its size + {size(DEFAULT_FLOOR, exact=True)}); the file declares data it does not "
            "hold or is hostile - if you trust it, raise --max-memory above that")


def _int_or_none(value: Any, column: str, where: str, high: int = _MAX_DEPTH) -> int | None:
    number = _number(value, column, where)
    if number is None:
        return None
    if number != int(number) or not 0 <= number <= high:
        raise ModelFormatError(f"{where}: {column} = {value!r} is not an integer in [0, {high}]")
    return int(number)


def _number(value: Any, column: str, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelFormatError(f"{where}: {column} = {str(value)[:40]!r} is not a number") from None
    if math.isnan(number):
        return None
    if not math.isfinite(number):
        raise ModelFormatError(f"{where}: {column} = {value!r} is not finite")
    return number


def _read_meta(h5: Any, source: Path, budget: MemoryBudget) -> pd.DataFrame:
    import h5py

    node = h5.get("meta")
    if not isinstance(node, h5py.Group):
        raise ModelFormatError(f"{source}: no /meta group (a pandas DataFrame); not the CNN Filter DB layout")
    try:
        meta = read_fixed_frame(node, source, budget).reset_index()
    except ValueError as e:  # an index level named like a column (or like another level)
        if isinstance(e, ModelFormatError):
            raise
        raise ModelFormatError(f"{source}: /meta's index levels clash with its columns ({e}); the file is damaged "
                               "or crafted") from e
    missing = [c for c in ("model_id", "filter_ids") if c not in meta.columns]
    if missing:
        raise ModelFormatError(f"{source}: /meta lacks {', '.join(missing)}; not the CNN Filter DB layout")
    if meta["model_id"].isna().any():
        raise ModelFormatError(f"{source}: /meta has a row without model_id; the file is damaged or crafted")
    return meta


def iter_hdf5_models(path: str | os.PathLike[str], *,
                     max_memory: int | str | None = None) -> Iterator[tuple[ModelRecord, dict[str, Any]]]:
    """The models of a CNN Filter DB ``dataset.h5``, one (record, metadata) per ``model_id``, in id order.

    The format half of an import (:func:`filterdb.ingest.import_hdf5` computes metrics and commits). The
    published layout keeps no (out, in) structure: each layer comes in as one output channel with n inputs,
    (1, n, kh, kw), so that the metrics that need output channels (orthogonality) stay NULL.

    The file is checked as the module says before the first model is read; ``max_memory`` (bytes or "4G";
    default: $FILTERDB_MAX_MEMORY, else 4 x the file size + 512 MiB) bounds what one model may allocate.
    Raises :class:`~filterdb.errors.UnsafeFormatError`, :class:`~filterdb.errors.ModelFormatError` or
    :class:`~filterdb.errors.MemoryBudgetError`, each naming the file.
    """
    import h5py

    from ..readers import make_layer
    from ..readers._h5safety import refuse_outside_data

    source = Path(os.fspath(path))
    budget = MemoryBudget.for_file(source, max_memory)
    try:
        h5 = h5py.File(source, "r")
    except OSError as e:
        raise ModelFormatError(f"{source}: cannot open it as HDF5 (truncated or not an HDF5 file?): {e}") from e
    with h5:
        with _hdf5_errors(source):
            refuse_outside_data(source, h5)
            meta = _read_meta(h5, source, budget)
            filters = _filters(h5, source, budget)
            n_rows, width = (int(n) for n in filters.shape)
            starts, ends = _ranges(meta, n_rows, source)
            _check_written(filters, meta["filter_ids"], starts, ends, source)
        _check_total(int((ends - starts).sum()), width, source, budget)
        side = math.isqrt(width)
        kernel = (side, side) if side * side == width else (width,)
        meta = meta.assign(_start=starts, _end=ends)
        extra_cols = [c for c in meta.columns if c not in _LAYER_LEVEL and not _DERIVED.match(str(c))
                      and c not in ("_start", "_end")]
        names = {c: _column_name(c, source) for c in extra_cols}
        for model_id, rows in _models(meta, source):
            where = f"{source}: model {str(model_id)[:40]}"
            model_budget = MemoryBudget.for_file(source, max_memory)  # one model in memory at a time
            model_budget.check(sum(row["_end"] - row["_start"] for row in rows) * width * 4,
                               f"model {str(model_id)[:40]} ({count(len(rows))} layers) as float32")
            layers: list[ConvLayer] = []
            for row in rows:
                start, end = int(row["_start"]), int(row["_end"])
                with _hdf5_errors(source, f"model {str(model_id)[:40]}: /filters rows {start}:{end}"):
                    weight = np.asarray(filters[start:end], dtype=np.float32).reshape(1, end - start, *kernel)
                layer = make_layer(f"layer_{row.get('layer_id', len(layers))}", "Conv", weight,
                                   notes=("imported from the CNN Filter DB layout: (out, in) unknown",))
                layers.append(replace(layer, conv_depth=_int_or_none(row.get("conv_depth"), "conv_depth", where),
                                      conv_depth_norm=_number(row.get("conv_depth_norm"), "conv_depth_norm", where)))
            first = rows[0]
            info = ModelInfo(source=f"{source.name}#model_id={model_id}", format="cnn-filter-db",
                             producer=_text(first.get("producer")),
                             opset=_int_or_none(first.get("op_set"), "op_set", where))
            metadata: dict[str, Any] = {names[c]: _text(first.get(c)) for c in extra_cols}
            if not metadata.get("model"):
                metadata["model"] = _text(first.get("Name")) or _text(first.get("model")) or f"model_{model_id}"
            metadata.pop("name", None)
            metadata["original_model_id"] = str(model_id)
            yield ModelRecord(info=info, layers=tuple(layers)), metadata


@contextmanager
def _hdf5_errors(source: Path, what: str = "") -> Iterator[None]:
    """What h5py raises on damaged structures (RuntimeError, KeyError, OSError, even SystemError) -> one
    ModelFormatError naming the file: the HDF5 library reports a lying byte in many ways."""
    try:
        yield
    except FilterDBError:
        raise
    except MemoryError as e:
        raise MemoryBudgetError(f"{source}: ran out of memory reading {what or 'it'}; the file declares more "
                                "data than fits (lower --max-memory to refuse such files before allocating)") from e
    except RecursionError as e:
        raise ModelFormatError(f"{source}: {what or 'the file'} is nested too deeply to read") from e
    except Exception as e:  # noqa: BLE001 - the HDF5 library raises anything on corrupt bytes
        text = str(e).strip()
        detail = text.splitlines()[0][:300] if text else type(e).__name__
        raise ModelFormatError(f"{source}: {what + ' cannot be read' if what else 'not a readable HDF5 file'} "
                               f"(damaged or crafted: {detail})") from e


def _models(meta: pd.DataFrame, source: Path) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """(model_id, its /meta rows in layer order) in model_id order: one sort, one pass."""
    order = ["model_id", "layer_id" if "layer_id" in meta.columns else "_start"]
    try:
        meta = meta.sort_values(order, kind="stable")
    except TypeError as e:  # ids of mixed types (text and numbers) do not sort
        raise ModelFormatError(f"{source}: /meta's {' / '.join(order)} values cannot be ordered ({e}); the file is "
                               "damaged or crafted") from e
    ids = meta["model_id"].tolist()
    rows = meta.to_dict("records")
    begin = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or ids[i] != ids[begin]:
            yield ids[begin], rows[begin:i]
            begin = i


def _column_name(published: Any, source: Path) -> str:
    """The catalog column of a /meta column: the published names mapped back, others normalised."""
    from ._catalog import normalise_column

    alias = _IMPORT_ALIASES.get(str(published))
    if alias:
        return alias
    reverse = {v: k for k, v in HDF5_COLUMNS.items()}
    try:
        return reverse.get(str(published)) or normalise_column(str(published))
    except ValueError:
        raise ModelFormatError(f"{source}: /meta column {str(published)[:40]!r} has no letters or digits to name "
                               "a catalog column; the file is damaged or crafted") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip()
    return text or None
