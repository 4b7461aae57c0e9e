"""Read a pandas "fixed"-format DataFrame (``DataFrame.to_hdf`` by default) with h5py, never running file code.

``pandas.read_hdf`` reads through PyTables, which unpickles two things from the file: attributes whose bytes
end in ``.`` (Python objects that HDF5 cannot hold, such as an index name ``None``) and object arrays (an
``ObjectAtom`` VLArray holds one pickled numpy array per block of object or ``str`` columns: how the published
CNN Filter DB ``dataset.h5`` stores its text columns). Either runs code named by the file. Here both go
through :mod:`filterdb._safe_pickle` with only numpy's array reconstruction allowed, and the arrays must hold
plain values (str, bytes, int, float, bool, None); every dataset's declared size is checked against the
read's memory budget before h5py reads it.

The layout (``pandas.io.pytables.FrameFixed``): the group's attributes ``pandas_type`` ("frame"), ``ndim``
(2), ``nblocks``, ``encoding``, ``errors`` and ``axis{0,1}_variety`` ("regular" or "multi", with
``axis1_nlevels``); ``axis0`` the column names; ``axis1`` the row index, or for a MultiIndex
``axis1_level{i}`` (each level's unique values; attributes ``kind`` and ``name``) and ``axis1_label{i}``
(the codes); ``block{i}_items`` the columns of block i and ``block{i}_values`` its values, stored transposed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._budget import MemoryBudget
from .._safe_pickle import NUMPY_ARRAY_GLOBALS, restricted_loads
from ..errors import FilterDBError, ModelFormatError, UnsafeFormatError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_fixed_frame"]

MAX_LEVELS = 64  # index levels and blocks a frame may declare (the published /meta has 4 and a handful)
MAX_BLOCKS = 4096
_ENCODINGS = {"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1"}
_ERRORS = {"strict", "replace", "ignore", "surrogatepass", "surrogateescape", "backslashreplace"}
_PLAIN = (str, bytes, int, float, bool, type(None), np.generic)
_NUMERIC_KINDS = {"integer": "iub", "float": "f", "bool": "b"}
_MISSING = object()


class _Frame:
    """One fixed-format group being read: its file, node names for errors, decoding and the budget."""

    def __init__(self, group: Any, source: Path, budget: MemoryBudget) -> None:
        self.group = group
        self.source = source
        self.budget = budget
        self.encoding = "utf-8"
        self.errors = "strict"

    # -- errors ---------------------------------------------------------------------------------------
    def bad(self, node: str, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.source}: {self.group.name}/{node} {what}; not a pandas DataFrame in the "
                                "CNN Filter DB layout (the file is damaged or crafted)")

    def _refusal(self, node: str) -> Callable[[str, str], Exception]:
        def refuse(module: str, name: str) -> Exception:
            return UnsafeFormatError(
                f"{self.source}: {self.group.name}/{node} pickles {module}.{name}; unpickling it (as pandas.read_hdf "
                "would) could run code from the file, so the file was refused and nothing of it ran. filterdb reads "
                "only numpy arrays of plain values (str, numbers, None) there, as pandas writes them")
        return refuse

    # -- attributes ----------------------------------------------------------------------------------
    def attr(self, node: Any, name: str, where: str, default: Any = _MISSING) -> Any:
        """An attribute as PyTables would return it, pickled ones (bytes ending in ".") decoded safely."""
        import h5py

        try:
            value = node.attrs[name] if name in node.attrs else default
        except (OSError, TypeError, ValueError, KeyError) as e:
            raise self.bad(where, f"has an unreadable attribute {name!r} ({e})") from e
        if value is _MISSING:
            raise self.bad(where, f"lacks the attribute {name!r}")
        if isinstance(value, h5py.Empty):
            return ""
        if isinstance(value, (bytes, np.bytes_)):
            raw = bytes(value)
            if raw.endswith(b".") and raw not in (b"0", b"0."):  # PyTables' mark of a pickled attribute
                try:
                    return restricted_loads(raw, {}, self._refusal(f"{where} (attribute {name!r})"))
                except FilterDBError:
                    raise
                except Exception:  # PyTables, too, keeps the bytes when they do not unpickle
                    pass
            return raw.decode("utf-8", "replace")
        if isinstance(value, np.generic):
            return value.item()
        return value

    def text_attr(self, node: Any, name: str, where: str, default: Any = _MISSING) -> str:
        value = self.attr(node, name, where, default)
        if not isinstance(value, str):
            raise self.bad(where, f"has attribute {name!r} = {str(value)[:40]!r}, not text")
        return value

    def int_attr(self, node: Any, name: str, where: str, low: int, high: int) -> int:
        value = self.attr(node, name, where)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(where, f"has attribute {name!r} = {str(value)[:40]!r}, not an integer in [{low}, {high}]")
        return value

    # -- datasets ------------------------------------------------------------------------------------
    def dataset(self, key: str) -> Any:
        import h5py

        link = self.group.get(key, getlink=True)
        if link is None:
            raise self.bad(key, "is missing")
        if not isinstance(link, h5py.HardLink):
            raise self.bad(key, "is a link, not a dataset")
        node = self.group.get(key)
        if not isinstance(node, h5py.Dataset):
            raise self.bad(key, "is not a dataset")
        return node

    def _values(self, node: Any, key: str, kinds: str) -> np.ndarray:
        """A plain (non-VLArray) dataset's values, its declared size budgeted first."""
        dtype = node.dtype
        if dtype.kind not in kinds or dtype.fields is not None or node.ndim > 2:
            raise self.bad(key, f"holds {node.ndim}-D {dtype} data where {'text' if kinds == 'S' else 'numbers'} "
                           "were expected")
        self.budget.claim(int(node.size) * max(dtype.itemsize, 1), f"{self.group.name}/{key} {node.shape}")
        try:
            return np.asarray(node[()])
        except (OSError, ValueError, TypeError) as e:
            raise self.bad(key, f"cannot be read (truncated?): {e}") from e

    def _objects(self, node: Any, key: str) -> np.ndarray:
        """A pickled object array (a PyTables ObjectAtom VLArray), unpickled with numpy's globals only."""
        import h5py

        if h5py.check_vlen_dtype(node.dtype) != np.dtype("uint8") or node.ndim != 1 or node.shape[0] < 1:
            raise self.bad(key, f"is a VLArray of {node.dtype} {node.shape}, not one pickled object")
        try:
            raw = np.asarray(node[0], dtype=np.uint8).tobytes()
        except (OSError, ValueError, TypeError) as e:
            raise self.bad(key, f"cannot be read (truncated?): {e}") from e
        self.budget.claim(len(raw), f"{self.group.name}/{key} (a pickled array)")
        try:
            value = restricted_loads(raw, NUMPY_ARRAY_GLOBALS, self._refusal(key))
        except FilterDBError:
            raise
        except Exception as e:  # malformed pickles raise nearly anything: all are the file's fault
            raise self.bad(key, f"is not a readable pickled array ({type(e).__name__}: {str(e)[:80]})") from e
        if not isinstance(value, np.ndarray) or value.ndim > 2:
            raise self.bad(key, f"unpickles to {type(value).__name__}, not a 1-D or 2-D numpy array")
        if value.dtype.hasobject:
            odd = next((v for v in value.ravel() if not isinstance(v, _PLAIN)), _MISSING)
            if odd is not _MISSING:
                raise self.bad(key, f"holds a {type(odd).__name__}, not plain values (str, numbers, None)")
        elif value.dtype.kind not in "iufbSU":
            raise self.bad(key, f"unpickles to an array of {value.dtype}")
        return value

    def array(self, key: str) -> np.ndarray:
        """``read_array``: plain numbers, or a pickled object array; transposed back as written."""
        node = self.dataset(key)
        if self.attr(node, "CLASS", key, "") == "VLARRAY":
            if self.attr(node, "PSEUDOATOM", key, "") != "object":
                raise self.bad(key, "is a VLArray that does not hold pickled objects")
            values = self._objects(node, key)
        else:
            values = self._values(node, key, "iufb")
        transposed = self.attr(node, "transposed", key, False)
        return values.T if transposed else values

    def strings(self, node: Any, key: str) -> np.ndarray:
        data = self._values(node, key, "S").ravel()
        try:
            return np.array([bytes(b).decode(self.encoding, self.errors) for b in data], dtype=object)
        except UnicodeDecodeError as e:
            raise self.bad(key, f"holds text that is not {self.encoding} ({e})") from e

    # -- indexes -------------------------------------------------------------------------------------
    def index_values(self, key: str) -> tuple[np.ndarray, Any]:
        """``read_index_node``: one index (or MultiIndex level): its values and its name."""
        node = self.dataset(key)
        kind = self.text_attr(node, "kind", key)
        name = self.attr(node, "name", key, None)
        if not isinstance(name, (str, int, float, type(None))):
            raise self.bad(key, f"has a name of type {type(name).__name__}")
        if kind == "string":
            values = self.strings(node, key)
            nan_rep = self.attr(node, "nan_rep", key, "nan") or None  # absent: files from before the sentinel
            if nan_rep is not None:
                values[values == nan_rep] = np.nan
        elif kind in _NUMERIC_KINDS:
            values = self._values(node, key, _NUMERIC_KINDS[kind]).ravel()
        elif kind == "object":
            if self.attr(node, "CLASS", key, "") != "VLARRAY":
                raise self.bad(key, "is an object index that is not a VLArray")
            values = self._objects(node, key).ravel()
        else:
            raise self.bad(key, f"is an index of kind {kind[:40]!r}; filterdb reads text and numbers")
        if "shape" in node.attrs:  # pandas' placeholder of an empty index: one value, the real shape beside it
            values = values[:0]
        return values, name

    def index(self, key: str) -> pd.Index:
        import pandas as pd

        variety = self.text_attr(self.group, f"{key}_variety", "")
        if variety == "regular":
            values, name = self.index_values(key)
            return pd.Index(values, name=name, dtype=values.dtype if values.dtype.kind in "iufb" else object)
        if variety != "multi":
            raise self.bad("", f"declares {key} of variety {variety[:40]!r}")
        nlevels = self.int_attr(self.group, f"{key}_nlevels", "", 1, MAX_LEVELS)
        levels, codes, names = [], [], []
        for i in range(nlevels):
            values, name = self.index_values(f"{key}_level{i}")
            labels = self.array(f"{key}_label{i}")
            if labels.dtype.kind not in "iu" or labels.ndim != 1:
                raise self.bad(f"{key}_label{i}", f"holds {labels.ndim}-D {labels.dtype}, not integer codes")
            levels.append(values)
            codes.append(labels)
            names.append(name)
        try:
            return pd.MultiIndex(levels=levels, codes=codes, names=names, verify_integrity=True)
        except (ValueError, TypeError) as e:
            raise self.bad(key, f"is not a valid MultiIndex ({str(e)[:120]})") from e

    # -- the frame -----------------------------------------------------------------------------------
    def read(self) -> pd.DataFrame:
        import pandas as pd

        kind = self.text_attr(self.group, "pandas_type", "")
        if kind == "frame_table":
            raise ModelFormatError(
                f"{self.source}: {self.group.name} is a DataFrame in pandas' \"table\" format; the CNN Filter DB "
                "layout uses the default \"fixed\" format (re-save it with to_hdf(..., format='fixed'))")
        if kind != "frame":
            raise self.bad("", f"is a pandas {kind[:40]!r}, not a DataFrame")
        self.encoding = self.text_attr(self.group, "encoding", "", "utf-8").lower() or "utf-8"
        self.errors = self.text_attr(self.group, "errors", "", "strict") or "strict"
        if self.encoding not in _ENCODINGS or self.errors not in _ERRORS:
            raise self.bad("", f"declares text encoding {self.encoding[:40]!r} / errors {self.errors[:40]!r}")
        self.int_attr(self.group, "ndim", "", 2, 2)
        nblocks = self.int_attr(self.group, "nblocks", "", 0, MAX_BLOCKS)
        columns = self.index("axis0")
        rows = self.index("axis1")
        if columns.has_duplicates:
            raise self.bad("axis0", "names a column twice")
        frames = []
        seen: set[Any] = set()
        for i in range(nblocks):
            items = self.index(f"block{i}_items")
            values = self.array(f"block{i}_values")
            if values.ndim not in (1, 2):
                raise self.bad(f"block{i}_values", f"holds a {values.ndim}-D array, not a block of columns")
            block = values.T if values.ndim == 2 else values[:, None]
            if block.shape != (len(rows), len(items)):
                raise self.bad(f"block{i}_values", f"holds {values.shape} values for {len(items)} column(s) x "
                               f"{len(rows)} row(s)")
            unknown = [c for c in items if c not in columns or c in seen]
            if unknown:
                raise self.bad(f"block{i}_items", f"names column {str(unknown[0])[:40]!r}, unknown or repeated")
            seen.update(items)
            frames.append(pd.DataFrame(block, columns=pd.Index(items, dtype=object), index=rows, copy=False))
        if len(seen) != len(columns):
            raise self.bad("", f"has {len(columns)} columns but its blocks hold {len(seen)}")
        if not frames:
            return pd.DataFrame(columns=columns, index=rows)
        return pd.concat(frames, axis=1).reindex(columns=columns)


def read_fixed_frame(group: Any, source: Path, budget: MemoryBudget) -> pd.DataFrame:
    """The DataFrame in the h5py ``group`` (written by ``DataFrame.to_hdf`` in the fixed format), read without
    running code from the file: pickled values are decoded with numpy's array globals only.

    Raises :class:`~filterdb.errors.UnsafeFormatError` for a pickle that names any other global,
    :class:`~filterdb.errors.ModelFormatError` for a damaged or crafted layout and
    :class:`~filterdb.errors.MemoryBudgetError` when a dataset declares more than the budget allows.
    """
    return _Frame(group, source, budget).read()
