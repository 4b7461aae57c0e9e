"""Filter shards: immutable Arrow IPC files, one ``FixedSizeList<halffloat|float>[k]`` column each.

A shard holds the filters of one kernel shape of one model, rows in (layer, out, in) order, as one record
batch: a reader memory-maps the file and slices a layer's rows out of one contiguous buffer without a copy.
Files are written under ``tmp/``, fsync'd, renamed into ``shards/<kernel>/`` and only then referenced by
the catalog; a file the catalog does not reference is garbage (see :func:`collect_garbage`).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._kernel import KEY_PATTERN, KernelKey
from ..errors import UsageError
from ._errors import ShardCorruptError, write_error
from ._paths import SHARDS_DIR, TMP_DIR, own_dir, own_files

__all__ = ["SHARD_NAME", "SHARD_SUFFIX", "TMP_NAME", "ShardReader", "ShardRecord", "collect_garbage",
           "collect_garbage_candidates", "fsync_dir", "partial_files", "remove_files", "shard_path", "shard_width",
           "unreferenced_shards", "write_shard"]

SHARD_SUFFIX = ".arrow"
COLUMN = "filter"


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _arrow_type(dtype: np.dtype[Any], width: int) -> Any:  # a pyarrow list type (pyarrow is imported lazily)
    import pyarrow as pa

    value = pa.float16() if dtype == np.float16 else pa.float32()
    return pa.list_(pa.field("v", value, nullable=False), width)


class _HashingFile:
    """A write-only file object that hashes what passes through it (the shard's checksum, in one pass)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.closed = True  # the caller closes the real file after fsync


def write_ipc(sink: Any, values: np.ndarray) -> None:
    """Write ``values`` (n, k) to ``sink`` as a shard's bytes: the one writer of the shard format (write_shard,
    and the templates of :mod:`._layout`, which predict a shard's bytes from its rows and width)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    width = values.shape[1]
    flat = pa.array(values.reshape(-1), type=pa.float16() if values.dtype == np.float16 else pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, type=_arrow_type(values.dtype, width))
    batch = pa.record_batch([column], names=[COLUMN])
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)


def write_shard(root: Path, kernel: str, values: np.ndarray) -> tuple[str, int, str]:
    """Write ``values`` (n, k) as a new shard; return its path relative to ``root``, its size in bytes and the
    sha256 of its bytes (recorded in the catalog, checked by ``filterdb verify``).

    The file is complete and durable before it gets its final name, so a crash leaves either nothing or
    an unreferenced file under ``tmp/`` or ``shards/``, never a half-written referenced shard. A failed
    write (disk full, read-only store) removes its partial file and raises :class:`StoreWriteError`.
    """
    name = f"{uuid.uuid4().hex}{SHARD_SUFFIX}"
    tmp_dir = root / TMP_DIR
    final_dir = root / SHARDS_DIR / kernel
    tmp = tmp_dir / (name + ".part")
    final = final_dir / name
    try:
        own_dir(root, TMP_DIR, create=True)  # real folders of the store, never links (StoreError otherwise)
        own_dir(root, SHARDS_DIR, kernel, create=True)
        with open(tmp, "xb") as fh:
            hashing = _HashingFile(fh)
            write_ipc(hashing, values)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, final)
        fsync_dir(final_dir)
        size = final.stat().st_size
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only store has no partial file; anything left under tmp/ is garbage anyway
        raise write_error(root, f"writing a {kernel} shard", e) from e
    return f"shards/{kernel}/{name}", size, hashing.digest.hexdigest()


_SHARD_NAME = re.compile(f"shards/{KEY_PATTERN}/[0-9a-f]{{32}}" + re.escape(SHARD_SUFFIX))


def shard_path(root: Path, relpath: str) -> Path:
    """The file of a shard the catalog names, which must be one this store wrote (``shards/3x3/<uuid>.arrow``):
    a hostile catalog must not make a reader open, or ``rm`` delete, a file elsewhere."""
    if not isinstance(relpath, str) or not _SHARD_NAME.fullmatch(relpath):
        raise ShardCorruptError(f"{root}: the catalog names a shard {str(relpath)[:200]!r} that is not a shard "
                                "path of a store; refusing to touch it (the catalog was edited or is hostile)")
    return root / relpath


def shard_width(relpath: str) -> int | None:
    """Values per filter from the shard's folder name ('shards/3x3/...' -> 9); None if it is not a shape."""
    parts = relpath.split("/")
    if len(parts) < 3:
        return None
    try:
        return KernelKey.parse(parts[-2]).width
    except UsageError:
        return None


@dataclass(frozen=True)
class ShardRecord:
    """What the catalog recorded about a shard: checked on every open (size, rows) and by verify (sha256)."""

    n_bytes: int
    n_rows: int
    owner: str  # "model 'name' (id 3)", for messages
    sha256: str | None = None


# Shard records per store, loaded from the catalog once per process for readers that do not pass them
# (shards are immutable and their names unique, so an entry never goes stale; a miss reloads).
_RECORDS: dict[str, dict[str, ShardRecord]] = {}
_RECORDS_LOCK = threading.Lock()


def _recorded(root: Path, relpath: str) -> ShardRecord | None:
    key = str(root)
    records = _RECORDS.get(key)
    if records is None or relpath not in records:
        from ._catalog import shard_records

        with _RECORDS_LOCK:
            records = _RECORDS[key] = shard_records(root)
    return records.get(relpath)


class ShardReader:
    """A memory-mapped shard: ``rows(offset, count)`` is a zero-copy (count, k) view.

    Opening checks the file against the catalog's record (size and rows; given as ``record``, else looked up
    once per process) and the Arrow structure (footer, one column of float16/float32 vectors of the
    shape's width): a truncated, replaced or overwritten shard raises :class:`ShardCorruptError`, it is
    never served. The full check of the values (sha256) is ``filterdb verify``.
    """

    def __init__(self, root: Path, relpath: str, record: ShardRecord | None = None) -> None:
        import pyarrow as pa

        path = shard_path(root, relpath)
        if record is None:
            record = _recorded(root, relpath)
        owner = record.owner if record is not None else "an unknown model"
        try:
            self._source = pa.memory_map(str(path), "r")
        except FileNotFoundError as e:
            raise ShardCorruptError(
                f"{path}: shard missing ({owner}); the model was removed while it was being read, or the "
                f"store was modified by hand (`filterdb verify {root}` checks every shard)"
            ) from e
        except OSError as e:
            raise ShardCorruptError(f"{path}: unreadable shard of {owner} ({e})") from e
        try:
            self.array = self._open(pa, root, relpath, record, owner)
        except BaseException:
            self._source.close()
            raise

    def _open(self, pa: Any, root: Path, relpath: str, record: ShardRecord | None, owner: str) -> np.ndarray:
        path = root / relpath

        def corrupt(what: str) -> ShardCorruptError:
            return ShardCorruptError(
                f"{path}: corrupt shard of {owner}: {what}; re-ingest the model (`filterdb rm {root} ID`, then "
                f"ingest its file again); `filterdb verify {root}` checks every shard")

        size = self._source.size()
        if record is not None and size != record.n_bytes:
            raise corrupt(f"{size:,} bytes, the catalog recorded {record.n_bytes:,}")
        try:
            reader = pa.ipc.open_file(self._source)
            if reader.num_record_batches != 1:
                raise corrupt(f"expected one record batch, found {reader.num_record_batches}")
            batch = reader.get_batch(0)
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
            raise corrupt(f"not a complete Arrow file ({str(e).splitlines()[0]})") from e
        if batch.num_columns != 1 or not pa.types.is_fixed_size_list(batch.schema.field(0).type):
            raise corrupt(f"unexpected schema {batch.schema.to_string(show_schema_metadata=False)!r}")
        column = batch.column(0)
        value_type = column.type.value_type
        if value_type not in (pa.float16(), pa.float32()):
            raise corrupt(f"values of type {value_type}, expected float16 or float32")
        width = column.type.list_size
        expected_width = shard_width(relpath)
        if expected_width is not None and width != expected_width:
            raise corrupt(f"{width} values per filter, the kernel shape needs {expected_width}")
        if record is not None and len(column) != record.n_rows:
            raise corrupt(f"{len(column):,} rows, the catalog recorded {record.n_rows:,}")
        if column.null_count or column.values.null_count:
            raise corrupt("null values")
        dtype = np.float16 if value_type == pa.float16() else np.float32
        buf = column.values.buffers()[1]
        start = column.values.offset + column.offset * width
        flat = np.frombuffer(buf, dtype=dtype)
        if flat.size < start + len(column) * width:
            raise corrupt("the value buffer is shorter than its rows")
        return flat[start : start + len(column) * width].reshape(-1, width)

    def rows(self, offset: int, count: int) -> np.ndarray:
        if offset < 0 or offset + count > len(self.array):  # a catalog row pointing past the shard
            raise ShardCorruptError(f"rows {offset}..{offset + count} asked of a shard of {len(self.array)} rows; "
                                    "the catalog is inconsistent (`filterdb verify` names the model)")
        return self.array[offset : offset + count]

    def file_offset(self) -> int:
        """Where ``array``'s first value lies in the file, in bytes (rows are contiguous from there)."""
        if not self.array.size:
            return 0
        self._source.seek(0)
        base = self._source.read_buffer(1).address  # a zero-copy slice of the map: the file's address
        return int(self.array.ctypes.data - base)

    def close(self) -> None:
        self.array = np.empty((0, 0))
        self._source.close()


# The names the store gives its files: clean-up deletes nothing else (a foreign file or a link is left alone).
TMP_NAME = re.compile(r"[0-9a-f]{32}\.(arrow|npz)\.part")
SHARD_NAME = re.compile(r"[0-9a-f]{32}" + re.escape(SHARD_SUFFIX))
_KERNEL_DIR = re.compile(KEY_PATTERN)


def partial_files(root: Path) -> list[str]:
    """Files being written under ``tmp/`` (garbage when no writer holds the lock), relative to ``root``."""
    return [f"{TMP_DIR}/{p.name}" for p in own_files(root, root / TMP_DIR, TMP_NAME)]


def unreferenced_shards(root: Path, referenced: Iterable[str]) -> list[str]:
    """Shard files no catalog row references, relative to ``root``."""
    keep = set(referenced)
    shards = own_dir(root, SHARDS_DIR)
    found: list[str] = []
    try:
        kernels = sorted(e.name for e in os.scandir(shards) if _KERNEL_DIR.fullmatch(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for kernel in kernels:
        folder = own_dir(root, SHARDS_DIR, kernel)
        found.extend(rel for rel in (f"{SHARDS_DIR}/{kernel}/{p.name}" for p in own_files(root, folder, SHARD_NAME))
                     if rel not in keep)
    return found


def collect_garbage_candidates(root: Path, referenced: Iterable[str]) -> list[str]:
    """Partial files under ``tmp/`` and shards no catalog row references (paths relative to ``root``)."""
    return partial_files(root) + unreferenced_shards(root, referenced)


def remove_files(root: Path, relpaths: Iterable[str]) -> list[str]:
    """Delete the store's own files ``relpaths`` (checked again: regular files, never links); those removed."""
    removed = []
    for rel in relpaths:
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        path.unlink(missing_ok=True)
        removed.append(rel)
    return removed


def collect_garbage(root: Path, referenced: Iterable[str], *, shards: bool = True) -> list[str]:
    """Delete partial files and (``shards``: no reader holds the store) shards no catalog row references;
    call only under the writer lock."""
    return remove_files(root, partial_files(root) + (unreferenced_shards(root, referenced) if shards else []))
