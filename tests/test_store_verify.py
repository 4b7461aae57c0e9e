"""Shard checksums, `filterdb verify`, the size/structure check on every shard open, and a damaged catalog.

Every damage is made by the test on a real store: bytes flipped inside a shard's values, a shard
truncated, replaced by a larger valid Arrow file, deleted; a catalog truncated; a store made before
checksums existed (the column dropped).
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from helpers import run_cli as run

from filterdb import ingest_record
from filterdb.store import ShardCorruptError, ShardRows, StoreError, init_store, open_store
from filterdb.testing import synthetic_record
from filterdb.store import verify_store


@pytest.fixture()
def root(tmp_path):
    """Three models in a store of this test's own (the tests damage its shards and catalog)."""
    store = init_store(tmp_path / "zoo")
    for seed in range(3):
        ingest_record(store, synthetic_record(seed), {"Name": f"net{seed}", "Task": "Classification"})
    store.close()
    return tmp_path / "zoo"


def shard_of(root, model: str, kernel: str = "3x3") -> str:
    return open_store(root).sql(
        "SELECT s.shard FROM t_shards s JOIN t_models m USING (model_id) WHERE m.model = ? AND s.kernel = ?",
        [model, kernel])["shard"][0]


def flip_values(path, n: int = 64) -> None:
    """Overwrite n bytes inside the shard's value buffer (located by its content), leaving its structure intact."""
    data = bytearray(path.read_bytes())
    with pa.memory_map(str(path)) as source:
        values = pa.ipc.open_file(source).get_batch(0).column(0).values.to_numpy(zero_copy_only=False)
    start = bytes(data).find(values.tobytes()[:64])
    assert start > 0
    data[start : start + n] = bytes((b ^ 0x5A) for b in data[start : start + n])
    path.write_bytes(bytes(data))


def test_checksums_are_the_shard_files_sha256(root):
    rows = open_store(root).sql("SELECT shard, bytes, sha256 FROM t_shards")
    assert len(rows) == 6  # 3 models x (3x3, 1x1)
    for shard, n_bytes, digest in rows.itertuples(index=False):
        data = (root / shard).read_bytes()
        assert len(data) == n_bytes and hashlib.sha256(data).hexdigest() == digest


def test_verify_intact_store(root, capsys):
    report = verify_store(open_store(root))
    assert report.ok and report.n_models == 3 and report.n_shards == 6 and not report.without_checksum
    code, out, err = run(capsys, "verify", root)
    assert code == 0 and "3 model(s), 6 shard(s)" in out and out.rstrip().endswith(": ok"), err


def test_flipped_values_are_found_by_verify_with_the_model_to_reingest(root, capsys):
    shard = shard_of(root, "net1")
    before = np.concatenate(list(open_store(root).iter_filters("3x3", "model = ?", ["net1"], scaled=False)))
    flip_values(root / shard)
    # the cheap check on open cannot see changed values (same size, same structure) ...
    after = np.concatenate(list(open_store(root).iter_filters("3x3", "model = ?", ["net1"], scaled=False)))
    assert not np.array_equal(before, after)
    # ... the full check does, and names the model
    report = verify_store(open_store(root))
    assert not report.ok and [(mid, name) for mid, name, _ in report.models_to_reingest()] == [(2, "net1")]
    code, out, err = run(capsys, "verify", root)
    assert code == 1
    assert f"{shard}: checksum mismatch" in err and "(model 'net1', id 2)" in err
    assert f"filterdb rm {root} 2 && filterdb ingest {root} synthetic-1" in err
    code, out, _ = run(capsys, "verify", root, "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"] and result["reingest"] == [
        {"model_id": 2, "model": "net1", "source": "synthetic-1"}]


@pytest.mark.parametrize("damage", ["truncated", "larger", "appended", "missing", "other-width"])
def test_damaged_shard_is_refused_on_open(root, damage, capsys):
    shard = shard_of(root, "net0")
    path = root / shard
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "appended":
        path.write_bytes(path.read_bytes() + b"\0" * 64)
    elif damage == "missing":
        path.unlink()
    else:  # a valid Arrow file of another model's size or another width
        rows, width = (4096, 9) if damage == "larger" else (48, 4)
        values = pa.array(np.ones(rows * width, dtype=np.float16), type=pa.float16())
        column = pa.FixedSizeListArray.from_arrays(values, width)
        with pa.OSFile(str(path), "wb") as fh, pa.ipc.new_file(fh, pa.schema([("filter", column.type)])) as w:
            w.write_batch(pa.record_batch([column], names=["filter"]))
    store = open_store(root)
    with pytest.raises(ShardCorruptError, match="verify" ) as info:
        list(store.iter_filters("3x3"))
    assert "model 'net0' (id 1)" in str(info.value)
    # the reader of row ranges (the analyses), given a shard by path alone, gets the same check from the catalog
    with pytest.raises(ShardCorruptError, match="net0"):
        ShardRows(str(root), shard, 0, 1)
    code, _, err = run(capsys, "export", root, root.parent / "out-pq")
    assert code == 1 and "net0" in err and "filterdb verify" in err
    code, _, err = run(capsys, "verify", root)
    assert code == 1 and shard in err and "(model 'net0', id 1)" in err


def test_shard_of_another_store_or_model_is_checked_by_rows(root):
    """Two shards of the same size swapped: the sizes agree, the checksums do not."""
    a, b = shard_of(root, "net1"), shard_of(root, "net2")
    data_a, data_b = (root / a).read_bytes(), (root / b).read_bytes()
    assert len(data_a) == len(data_b)
    (root / a).write_bytes(data_b)
    (root / b).write_bytes(data_a)
    report = verify_store(open_store(root))
    assert sorted(name for _, name, _ in report.models_to_reingest()) == ["net1", "net2"]


def test_store_without_checksums_is_verified_by_structure_then_recorded(root, capsys):
    with duckdb.connect(str(root / "catalog.duckdb")) as con:  # a store made before checksums existed
        con.execute("ALTER TABLE t_shards DROP COLUMN sha256")
    code, out, err = run(capsys, "verify", root)
    assert code == 0 and "6 shard(s) have no recorded checksum" in err and "--record-checksums" in err
    store = open_store(root, "a")  # writing into it upgrades the catalog: new shards get checksums
    ingest_record(store, synthetic_record(7), {"Name": "net7"})
    store.close()
    rows = open_store(root).sql("SELECT shard, sha256 FROM t_shards ORDER BY shard")
    assert rows["sha256"].notna().sum() == 2
    code, out, err = run(capsys, "verify", root, "--record-checksums")
    assert code == 0 and "recorded the checksums of 6 shard(s)" in out
    assert open_store(root).sql("SELECT count(*) AS n FROM t_shards WHERE sha256 IS NULL")["n"][0] == 0
    flip_values(root / shard_of(root, "net2"))
    code, _, err = run(capsys, "verify", root)
    assert code == 1 and "net2" in err


@pytest.mark.parametrize("keep", [0.05, 0.5])
def test_truncated_catalog_gives_one_clear_error_everywhere(root, keep, capsys, tmp_path):
    catalog = root / "catalog.duckdb"
    catalog.write_bytes(catalog.read_bytes()[: int(catalog.stat().st_size * keep)])
    for argv in (("stats", root), ("models", root), ("layers", root), ("sql", root, "SELECT count(*) FROM layers"),
                 ("export", root, tmp_path / "o.h5"), ("verify", root)):
        code, out, err = run(capsys, *argv)
        assert code == 1, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "the catalog cannot be read" in err, (argv, err)
        assert "it is damaged" in err and "unexpected" not in err, (argv, err)
    store = open_store(root, "a")
    with pytest.raises(StoreError, match="the catalog cannot be read"):
        ingest_record(store, synthetic_record(9))


def test_layer_pointing_past_its_shard(root, capsys):
    with duckdb.connect(str(root / "catalog.duckdb")) as con:
        con.execute("UPDATE t_layers SET row_offset = row_offset + 1000 WHERE layer = 'conv2' AND model_id = 3")  # 48 + 256 + 1000
    with pytest.raises(ShardCorruptError, match="the catalog is inconsistent"):
        list(open_store(root).iter_filters("3x3", "model = ?", ["net2"]))
    code, _, err = run(capsys, "verify", root)
    assert code == 1 and "layer 'conv2': its filters point to rows 1304..1560 of 560" in err and "net2" in err


@pytest.mark.parametrize("hostile", ["/etc/hostname", "../outside.arrow", "shards/3x3/../../../outside.arrow"])
def test_hostile_catalog_cannot_reach_files_outside_the_store(root, tmp_path, hostile, capsys):
    """A store from elsewhere whose catalog names other files: nothing outside is read or deleted."""
    victim = tmp_path / "outside.arrow"
    victim.write_bytes(b"precious")
    shard = shard_of(root, "net1")
    with duckdb.connect(str(root / "catalog.duckdb")) as con:
        for table in ("t_shards", "t_layers"):
            con.execute(f"UPDATE {table} SET shard = ? WHERE shard = ?", [hostile, shard])
    with pytest.raises(ShardCorruptError, match="not a shard path of a store"):
        list(open_store(root).iter_filters("3x3", "model = ?", ["net1"]))
    code, _, err = run(capsys, "verify", root)
    assert code == 1 and "not a shard path" in err and "net1" in err
    code, _, err = run(capsys, "rm", root, "net1")
    assert code == 1 and "refusing to touch it" in err
    assert victim.read_bytes() == b"precious"
    assert list(open_store(root).models()["model"]) == ["net0", "net1", "net2"]  # the rm changed nothing


@pytest.mark.parametrize("content", ["[" * 100_000, "x" * 100_000, '{"format": "filterdb-store", "version": 1}'])
def test_hostile_format_file(root, content):
    (root / "filterdb-store.json").write_text(content)
    with pytest.raises(StoreError, match="filterdb-store.json"):
        open_store(root)
