"""The O(1) shard open (store/_layout.py): the layout predicted from a shard's catalog record is the one pyarrow
reads from the file, and any file that differs from the prediction takes the full check (and is refused when
damaged, served when it is a valid Arrow file written differently)."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest

from filterdb.store import ShardCorruptError, ShardRecord
from filterdb.store import _reading
from filterdb.store._layout import predicted_layout, template
from filterdb.store._reading import ShardRows
from filterdb.store._shards import ShardReader, write_shard


def _write(root, kernel, values):
    rel, size, sha = write_shard(root, kernel, values)
    return rel, ShardRecord(size, len(values), "model 'm' (id 1)", sha)


def _predicted(root, rel, record):
    fd = os.open(root / rel, os.O_RDONLY)
    try:
        return predicted_layout(fd, os.fstat(fd).st_size, rel, record)
    finally:
        os.close(fd)


def _pyarrow_layout(root, rel, record):
    reader = ShardReader(root, rel, record)  # pyarrow's own parse of the footer, every check of the full path
    try:
        return reader.file_offset(), reader.array.shape[0], reader.array.shape[1], reader.array.dtype.str
    finally:
        reader.close()


def _rows(root, rel, record, first=0, end=None):
    _reading._LAYOUTS.clear()  # a first open in this process
    end = record.n_rows if end is None else end
    with ShardRows(str(root), rel, first, end, record=record) as rows:
        return rows.array.copy()


@pytest.mark.parametrize("kernel, width", [("1x1", 1), ("2x2", 4), ("3x3", 9), ("5x5", 25), ("1x3", 3)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4099, 70_001])
def test_predicted_layout_is_pyarrows(tmp_path, kernel, width, dtype, n):
    values = np.random.default_rng(n + width).standard_normal((n, width)).astype(dtype)
    rel, record = _write(tmp_path, kernel, values)
    got = _predicted(tmp_path, rel, record)
    assert got is not None
    assert got == _pyarrow_layout(tmp_path, rel, record)
    np.testing.assert_array_equal(_rows(tmp_path, rel, record), values)
    np.testing.assert_array_equal(_rows(tmp_path, rel, record, n // 3, n // 2 + 1), values[n // 3 : n // 2 + 1])


def test_template_matches_an_independent_reading_of_the_ipc_format(tmp_path):
    # the offset of the values read from the file's own Arrow metadata (the record batch message's length and
    # the body buffers), not through pyarrow's reader
    t = template(9, np.float16)
    assert t is not None
    values = np.ones((5, 9), np.float16)
    rel, record = _write(tmp_path, "3x3", values)
    data = (tmp_path / rel).read_bytes()
    assert data[:6] == b"ARROW1" and data[-6:] == b"ARROW1"
    footer_len = int.from_bytes(data[-10:-6], "little")
    assert len(data) == t.size(5) == record.n_bytes
    # schema message: 0xFFFFFFFF, int32 length, flatbuffer; then the record batch message the same way
    pos = 8
    meta_len = int.from_bytes(data[pos + 4 : pos + 8], "little")
    pos += 8 + meta_len
    assert data[pos : pos + 4] == b"\xff\xff\xff\xff"
    meta_len = int.from_bytes(data[pos + 4 : pos + 8], "little")
    body = pos + 8 + meta_len
    assert t.offset == body  # two empty validity buffers, then the values
    assert np.frombuffer(data[body : body + 90], np.float16).tolist() == [1.0] * 45
    assert footer_len < len(t.tail)


def _flip(path, pos):
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x5A
    path.write_bytes(bytes(data))


def _tamper_cases():
    # name, change (root, rel, record) -> (rel, record), the full check's message
    def truncate(root, rel, record):
        with open(root / rel, "r+b") as fh:
            fh.truncate(record.n_bytes - 1)
        return rel, record

    def truncate_and_record(root, rel, record):
        with open(root / rel, "r+b") as fh:
            fh.truncate(record.n_bytes - 8)
        return rel, ShardRecord(record.n_bytes - 8, record.n_rows, record.owner)

    def extend_and_record(root, rel, record):
        with open(root / rel, "ab") as fh:
            fh.write(b"\0" * 8)
        return rel, ShardRecord(record.n_bytes + 8, record.n_rows, record.owner)

    def more_rows_recorded(root, rel, record):
        return rel, ShardRecord(record.n_bytes, record.n_rows + 1, record.owner)

    def fewer_rows_recorded(root, rel, record):
        return rel, ShardRecord(record.n_bytes, record.n_rows - 1, record.owner)

    def footer_byte(root, rel, record):
        _flip(root / rel, record.n_bytes - 12)  # inside the footer's flatbuffer / its length
        return rel, record

    def footer_length(root, rel, record):
        _flip(root / rel, record.n_bytes - 8)
        return rel, record

    def trailing_magic(root, rel, record):
        _flip(root / rel, record.n_bytes - 1)
        return rel, record

    def leading_magic(root, rel, record):
        _flip(root / rel, 0)
        return rel, record

    def other_width_folder(root, rel, record):
        # the 3x3 shard moved under 2x2: a folder whose width the file does not have
        new = rel.replace("shards/3x3/", "shards/2x2/")
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / rel, root / new)
        return new, record

    def same_size_other_type(root, rel, record):
        # float32 rows of width 4 in place of float16 rows of width 8 (a 2x4 shard): the same size, the same rows
        values = np.zeros((record.n_rows, 4), np.float32)
        other, other_record = _write(root, "2x2", values)
        new = "shards/2x4/" + rel.rsplit("/", 1)[1]
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / other, root / new)
        return new, ShardRecord(other_record.n_bytes, record.n_rows, record.owner)

    return [
        ("truncated", truncate, "bytes, the catalog recorded"),
        ("truncated, record edited", truncate_and_record, "not a complete Arrow file"),
        ("extended, record edited", extend_and_record, "not a complete Arrow file"),
        ("record: more rows", more_rows_recorded, "rows, the catalog recorded"),
        ("record: fewer rows", fewer_rows_recorded, "rows, the catalog recorded"),
        ("footer byte", footer_byte, "not a complete Arrow file|unexpected schema|rows|values"),
        ("footer length", footer_length, "not a complete Arrow file"),
        ("trailing magic", trailing_magic, "not a complete Arrow file"),
        ("leading magic", leading_magic, None),  # pyarrow reads the file from its footer: served as before
        ("other width folder", other_width_folder, "values per filter"),
        ("same size, other type", same_size_other_type, "values per filter"),
    ]


@pytest.mark.parametrize("name, change, message", _tamper_cases(), ids=[c[0] for c in _tamper_cases()])
def test_tampered_shard_falls_back_and_is_refused(tmp_path, name, change, message):
    n = 1000
    kernel = "2x4" if name == "same size, other type" else "3x3"
    width = 8 if kernel == "2x4" else 9
    rel, record = _write(tmp_path, kernel, np.ones((n, width), np.float16))
    assert _predicted(tmp_path, rel, record) is not None  # the intact shard takes the fast path
    rel, record = change(tmp_path, rel, record)
    assert _predicted(tmp_path, rel, record) is None
    if message is None:  # a change the full check does not look at either: served as it was before
        np.testing.assert_array_equal(_rows(tmp_path, rel, record), np.ones((n, width), np.float16))
        return
    with pytest.raises(ShardCorruptError, match=message):
        _rows(tmp_path, rel, record)


def test_a_valid_shard_written_otherwise_is_served_by_the_full_check(tmp_path):
    # bytes the template does not predict (schema metadata), but a valid shard: served, with pyarrow's layout
    values = np.arange(90, dtype=np.float16).reshape(10, 9)
    rel, _ = _write(tmp_path, "3x3", values)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 9)
    batch = pa.record_batch([column], names=["filter"])
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, batch.schema.with_metadata({"written": "elsewhere"})) as writer:
        writer.write_batch(batch)
    (tmp_path / rel).write_bytes(sink.getvalue())
    record = ShardRecord(len(sink.getvalue()), 10, "model 'm' (id 1)")
    assert _predicted(tmp_path, rel, record) is None
    np.testing.assert_array_equal(_rows(tmp_path, rel, record), values)


def test_no_record_takes_the_full_check(tmp_path):
    rel, record = _write(tmp_path, "3x3", np.ones((4, 9), np.float16))
    assert _predicted(tmp_path, rel, None) is None
    assert _predicted(tmp_path, rel, record) == _pyarrow_layout(tmp_path, rel, record)
