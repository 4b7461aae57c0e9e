"""The public read plan (Store.segments) and the store's row reader (ShardRows), checked against a direct
DuckDB query over the catalog file, pyarrow reading the shard files, hashlib, and the weights ingested."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from filterdb import ingest_record
from filterdb.store import SEGMENT_COLUMNS, ShardCorruptError, ShardRows, StoreQueryError, init_store, open_store
from filterdb.testing import synthetic_record

TASKS = {"net0": "Classification", "net1": "Detection", "net2": "Classification"}


@pytest.fixture()
def zoo(tmp_path):
    """Three float32 models (exact values); two of them share the task selected below. Not the session zoo on
    purpose: the tests compare exact weights and truncate or delete shards of their own copy."""
    root = tmp_path / "zoo"
    store = init_store(root, dtype="float32")
    records = {}
    for seed, (name, task) in enumerate(TASKS.items()):
        records[name] = synthetic_record(seed, n_layers=2 + seed, name=name)
        ingest_record(store, records[name], {"Name": name, "Task": task, "Visual Category": "natural"})
    return root, records


def _catalog_segments(root, task):
    """The reference: the physical tables queried directly, without filterdb."""
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT l.layer_id, m.model, l.layer, l.shard, l.row_offset, l.n_filters, s.n_rows, s.bytes, s.sha256 "
            "FROM t_layers l JOIN t_models m USING (model_id) JOIN t_shards s ON s.shard = l.shard "
            "WHERE l.kernel = '3x3' AND m.task = ? ORDER BY l.layer_id", [task]).fetchall()
    finally:
        con.close()


def _arrow_rows(path):
    """All rows of a shard file, read by pyarrow alone: (n, k) float32."""
    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    column = table.column(0).combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)


def test_segments_cover_exactly_the_selected_layers(zoo):
    root, records = zoo
    plan = open_store(root).segments("3x3", "task = ?", ["Classification"])
    assert tuple(plan.columns) == SEGMENT_COLUMNS
    expected = _catalog_segments(root, "Classification")
    assert len(expected) == 2 + 4  # net0: stem + 1 conv, net2: stem + 3 convs (the 1x1 heads are left out)
    got = plan.sort_values("layer_id")
    assert list(got["layer_id"]) == [r[0] for r in expected]
    assert list(got["model"]) == [r[1] for r in expected]
    assert list(zip(got["shard"], got["row_offset"], got["n_filters"])) == [(r[3], r[4], r[5]) for r in expected]
    assert list(zip(got["shard_rows"], got["shard_bytes"], got["shard_sha256"])) == [(r[6], r[7], r[8])
                                                                                      for r in expected]
    assert (plan["n_nonfinite"] == 0).all()
    # the recorded size and checksum are those of the files
    for shard, n_bytes, sha in set(zip(plan["shard"], plan["shard_bytes"], plan["shard_sha256"])):
        data = (root / shard).read_bytes()
        assert len(data) == n_bytes and hashlib.sha256(data).hexdigest() == sha
    # the rows a segment names are that layer's weights (stored value x scale), read by pyarrow
    layers = {(name, layer.name): layer for name, rec in records.items() for layer in rec.layers}
    by_layer = dict(zip(got["layer_id"], (r[2] for r in expected)))
    for row in plan.itertuples(index=False):
        stored = _arrow_rows(root / row.shard)[row.row_offset : row.row_offset + row.n_filters]
        weights = layers[(row.model, by_layer[row.layer_id])].filters()
        np.testing.assert_array_equal(stored * np.float32(row.scale), weights)


def test_segments_group_and_layer_columns(zoo):
    root, _ = zoo
    store = open_store(root)
    grouped = store.segments("3x3", group="upper(task)")
    assert dict(zip(grouped["model"], grouped["group_value"])) == {k: v.upper() for k, v in TASKS.items()}
    wide = store.segments("3x3", "model = ?", ["net1"], layer_columns=True)
    assert list(wide["layer"]) == ["stem", "conv1", "conv2"] and "task" in wide.columns and "shard" in wide.columns
    assert store.segments("5x5").empty
    with pytest.raises(StoreQueryError, match="unknown column 'taks'; did you mean 'task'"):
        store.segments("3x3", "taks = ?", ["Detection"])


def test_shard_rows_reads_what_the_plan_names(zoo):
    root, _ = zoo
    plan = open_store(root).segments("3x3")
    for shard, part in plan.groupby("shard"):
        first = int(part["row_offset"].min())
        end = int((part["row_offset"] + part["n_filters"]).max())
        with ShardRows(str(root), shard, first, end) as rows:
            np.testing.assert_array_equal(rows.array, _arrow_rows(root / shard)[first:end])
        with ShardRows(str(root), shard, end, end) as rows:
            assert rows.array.shape == (0, 9)


def test_shard_rows_refuses_damage_and_foreign_paths(zoo):
    root, _ = zoo
    plan = open_store(root).segments("3x3", "model = ?", ["net0"])
    shard, n_rows = plan["shard"].iloc[0], int(plan["shard_rows"].iloc[0])
    with pytest.raises(ShardCorruptError, match=f"holds {n_rows} rows"):
        ShardRows(str(root), shard, 0, n_rows + 1)  # the catalog and the file disagree
    with pytest.raises(ShardCorruptError, match="not a shard path of a store"):
        ShardRows(str(root), "../../../etc/passwd", 0, 1)
    path = root / shard
    path.write_bytes(path.read_bytes()[:-100])  # truncated: the size check on open refuses it
    with pytest.raises(ShardCorruptError, match="model 'net0'"):
        ShardRows(str(root), shard, 0, 1)
    path.unlink()
    with pytest.raises(ShardCorruptError, match="shard missing"):
        ShardRows(str(root), shard, 0, 1)


def test_depth_deciles_are_one_sql_rule_equal_to_pandas_cut():
    # the one definition of the depth axis (store/_segments.py) against pandas.cut over the documented edges
    # (docs/analysis.md: [0, 0.1], (0.1, 0.2], ..., (0.9, 1.0], the edges written as decimals)
    import duckdb
    import numpy as np
    import pandas as pd

    from filterdb.selection import DEPTH_LABELS
    from filterdb.store._segments import depth_decile_sql

    values = np.r_[np.linspace(0, 1, 1001), [0.1, 0.2, 0.30000000000000004, 0.9, 1e-12, 0.1 + 1e-12]]
    frame = pd.DataFrame({"x": values})
    got = duckdb.sql(f"SELECT {depth_decile_sql('x')} AS d FROM frame").df()["d"].tolist()
    cut = pd.cut(values, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], include_lowest=True)
    expected = [DEPTH_LABELS[code] for code in cut.codes]
    assert got == expected
    # outside [0, 1]: the end deciles; no value: no decile
    ends = duckdb.sql(f"SELECT {depth_decile_sql('x')} AS d FROM (VALUES (-0.5), (1.5), (NULL)) t(x)").df()["d"]
    assert ends.tolist()[:2] == [DEPTH_LABELS[0], DEPTH_LABELS[-1]] and ends.isna().tolist()[2]
