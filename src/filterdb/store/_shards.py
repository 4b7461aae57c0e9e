"""Filter shards: immutable Arrow IPC files, one ``FixedSizeList<halffloat|float>[k]`` column each.

A shard holds the filters of one kernel shape of one model, rows in (layer, out, in) order, as one record
batch: a reader memory-maps the file and slices a layer's rows out of one contiguous buffer without a copy.
Files are written under ``tmp/``, fsync'd, renamed into ``shards/<kernel>/`` and only then referenced by
the catalog; a file the catalog does not reference is garbage (see :func:`collect_garbage`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._errors import StoreError

__all__ = ["SHARD_SUFFIX", "ShardReader", "collect_garbage", "fsync_dir", "write_shard"]

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


def _arrow_type(dtype: np.dtype, width: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    value = pa.float16() if dtype == np.float16 else pa.float32()
    return pa.list_(pa.field("v", value, nullable=False), width)


def write_shard(root: Path, kernel: str, values: np.ndarray) -> tuple[str, int]:
    """Write ``values`` (n, k) as a new shard; return its path relative to ``root`` and its size in bytes.

    The file is complete and durable before it gets its final name, so a crash leaves either nothing or
    an unreferenced file under ``tmp/`` or ``shards/``, never a half-written referenced shard.
    """
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    width = values.shape[1]
    flat = pa.array(values.reshape(-1), type=pa.float16() if values.dtype == np.float16 else pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, type=_arrow_type(values.dtype, width))
    batch = pa.record_batch([column], names=[COLUMN])
    name = f"{uuid.uuid4().hex}{SHARD_SUFFIX}"
    tmp_dir = root / "tmp"
    final_dir = root / "shards" / kernel
    tmp_dir.mkdir(parents=True, exist_ok=True)
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / (name + ".part")
    with open(tmp, "wb") as fh:
        with pa.ipc.new_file(fh, batch.schema) as writer:
            writer.write_batch(batch)
        fh.flush()
        os.fsync(fh.fileno())
    final = final_dir / name
    os.rename(tmp, final)
    fsync_dir(final_dir)
    return f"shards/{kernel}/{name}", final.stat().st_size


class ShardReader:
    """A memory-mapped shard: ``rows(offset, count)`` is a zero-copy (count, k) view."""

    def __init__(self, root: Path, relpath: str) -> None:
        import pyarrow as pa

        path = root / relpath
        try:
            self._source = pa.memory_map(str(path), "r")
            reader = pa.ipc.open_file(self._source)
        except FileNotFoundError as e:
            raise StoreError(
                f"{path}: shard missing; the model was removed while it was being read, or the store was "
                "modified by hand (run `filterdb stats` to check it)"
            ) from e
        except (OSError, pa.ArrowInvalid) as e:
            raise StoreError(f"{path}: unreadable shard ({e})") from e
        if reader.num_record_batches != 1:
            raise StoreError(f"{path}: expected one record batch, found {reader.num_record_batches}")
        column = reader.get_batch(0).column(0)
        width = column.type.list_size
        dtype = np.float16 if str(column.type.value_type) == "halffloat" else np.float32
        buf = column.values.buffers()[1]
        start = column.values.offset + column.offset * width
        self.array = np.frombuffer(buf, dtype=dtype)[start : start + len(column) * width].reshape(-1, width)

    def rows(self, offset: int, count: int) -> np.ndarray:
        return self.array[offset : offset + count]

    def close(self) -> None:
        self.array = np.empty((0, 0))
        self._source.close()


def collect_garbage(root: Path, referenced: Iterable[str]) -> list[str]:
    """Delete partial files and shards no catalog row references; call only under the writer lock."""
    keep = set(referenced)
    removed: list[str] = []
    tmp_dir = root / "tmp"
    if tmp_dir.is_dir():
        for path in tmp_dir.iterdir():
            path.unlink(missing_ok=True)
            removed.append(f"tmp/{path.name}")
    shards = root / "shards"
    if shards.is_dir():
        for kernel_dir in shards.iterdir():
            if not kernel_dir.is_dir():
                continue
            for path in kernel_dir.iterdir():
                rel = f"shards/{kernel_dir.name}/{path.name}"
                if rel not in keep:
                    path.unlink(missing_ok=True)
                    removed.append(rel)
    return removed
