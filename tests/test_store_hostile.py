"""Tampered stores: links in place of the store's folders and lock, catalog values used as paths, per-model data
files of the wrong kind, layer rows that disagree, SQL that runs out of memory. Each hostile store is built here."""

from __future__ import annotations

import dataclasses
import os

import shutil

import numpy as np
import pytest
from helpers import snapshot

from filterdb import ingest_record
from filterdb.errors import UsageError
from filterdb.store import (LayerMetrics, ModelDataError, StoreError, StoreResourceError, init_store, open_store,
                            prepare_model)
from filterdb.testing import synthetic_record
from filterdb.store import gc_store, model_data, put_model_data, remove_models, verify_store


@pytest.fixture()
def store(tmp_path):
    s = init_store(tmp_path / "zoo")
    ingest_record(s, synthetic_record(1))
    return s


@pytest.fixture()
def victim(tmp_path):
    """A folder outside the store with a file that must survive every store operation."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    # names a careless clean-up would take for the store's own
    (folder / ("ab" * 16 + ".arrow")).write_text("keep me too")
    (folder / ("cd" * 16 + ".arrow.part")).write_text("and me")
    return folder


def _intact(folder):
    return sorted((p.name, p.read_text()) for p in folder.iterdir())


@pytest.mark.parametrize("link", ["tmp", "shards/3x3", "shards"])
def test_linked_folder_is_refused_and_nothing_outside_is_touched(store, victim, link):
    before = _intact(victim)
    target = store.root / link
    if target.exists():
        os.rename(target, store.root / (link.replace("/", "_") + ".moved"))
    target.symlink_to(victim, target_is_directory=True)
    writer = open_store(store.root, "a")
    with pytest.raises(StoreError, match=f"'{link}' inside the store .* is a symbolic link"):
        ingest_record(writer, synthetic_record(2))
    with pytest.raises(StoreError, match="symbolic link"):
        gc_store(writer)
    assert _intact(victim) == before


def test_linked_lock_file_is_refused_and_its_target_kept(store, victim):
    before = _intact(victim)
    (store.root / "write.lock").unlink(missing_ok=True)
    (store.root / "write.lock").symlink_to(victim / "precious.txt")
    with pytest.raises(StoreError, match="lock file is a symbolic link"):
        ingest_record(open_store(store.root, "a"), synthetic_record(2))
    (store.root / "read.lock").unlink(missing_ok=True)
    (store.root / "read.lock").symlink_to(victim / "precious.txt")
    with pytest.raises(StoreError, match="lock file is a symbolic link"):
        open_store(store.root).segments("3x3")
    assert _intact(victim) == before


def test_clean_up_removes_only_the_stores_own_files(store):
    foreign = [store.root / "tmp" / "notes.txt", store.root / "shards" / "3x3" / "README", store.root / "data.csv"]
    (store.root / "tmp").mkdir(exist_ok=True)
    for path in foreign:
        path.write_text("mine")
    own_partial = store.root / "tmp" / ("0f" * 16 + ".arrow.part")
    own_orphan = store.root / "shards" / "3x3" / ("1e" * 16 + ".arrow")
    own_partial.write_bytes(b"x")
    own_orphan.write_bytes(b"x")
    link = store.root / "shards" / "3x3" / ("2d" * 16 + ".arrow")
    link.symlink_to(foreign[2])
    removed = gc_store(open_store(store.root, "a"))
    assert sorted(removed) == sorted([f"tmp/{own_partial.name}", f"shards/3x3/{own_orphan.name}"])
    assert all(p.read_text() == "mine" for p in foreign) and link.is_symlink()


@pytest.mark.parametrize("bad", ["../../x", "/tmp/x", "AB" * 32, "a" * 63, "0" * 64 + "/.."])
def test_catalog_sha256_is_never_a_path(store, bad, tmp_path):
    import duckdb

    good = store.models()["sha256"][0]
    with duckdb.connect(str(store.root / "catalog.duckdb")) as con:
        con.execute("UPDATE t_models SET sha256 = ? WHERE sha256 = ?", [bad, good])
    with pytest.raises(StoreError, match="not 64 hex digits"):
        put_model_data(store, bad, "fingerprint", {"a": np.zeros(3)})
    with pytest.raises(StoreError, match="not 64 hex digits"):
        model_data(store, bad, "fingerprint")
    with pytest.raises(StoreError, match="not 64 hex digits"):
        remove_models(open_store(store.root, "a"), int(store.models()["model_id"][0]))
    from filterdb.lineage import similar

    with pytest.raises(StoreError, match="not 64 hex digits"):
        similar(open_store(store.root), synthetic_record(1))
    assert not (tmp_path / "x.npz").exists() and not (tmp_path.parent / "x.npz").exists()
    report = verify_store(open_store(store.root))
    assert not report.ok and "not 64 hex digits" in report.damage[-1].what


def test_model_data_round_trip_verify_rm_and_gc(store):
    sha = store.models()["sha256"][0]
    arrays = {"hashes": np.arange(12, dtype=np.uint64).reshape(3, 4), "name": np.str_("m1"), "norm": np.float32(2.5)}
    put_model_data(store, sha, "fingerprint", arrays)
    got = model_data(store, sha, "fingerprint")
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    assert got["hashes"].dtype == np.uint64
    assert model_data(store, sha, "other") is None
    assert verify_store(open_store(store.root)).ok
    path = store.root / "data" / "fingerprint" / f"{sha}.npz"
    blob = bytearray(path.read_bytes())
    blob[-30] ^= 0xFF  # one flipped byte in the zip's directory: damaged
    path.write_bytes(bytes(blob))
    report = verify_store(open_store(store.root))
    assert [d.model for d in report.damage] == ["synthetic-1"]
    assert not ingest_record(store, synthetic_record(9)).skipped  # other writes go on
    remove_models(open_store(store.root, "a"), sha[:12])
    assert not path.exists()
    with pytest.raises(StoreError, match="no model with sha256"):
        put_model_data(store, sha, "fingerprint", arrays)
    assert not path.exists()


def test_model_data_refuses_what_it_cannot_load_safely(store, tmp_path):
    sha = store.models()["sha256"][0]
    with pytest.raises(UsageError, match="dtype object"):
        put_model_data(store, sha, "fingerprint", {"x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(UsageError, match="kind"):
        put_model_data(store, sha, "../x", {"x": np.zeros(1)})
    folder = store.root / "data" / "fingerprint"
    shutil.rmtree(folder, ignore_errors=True)  # the fingerprint ingest stored: this test writes its own files
    folder.mkdir(parents=True)
    # a pickled object array: np.load would run its code with allow_pickle=True
    np.savez(folder / f"{sha}.npz", x=np.array([print], dtype=object))
    with pytest.raises(ModelDataError, match="damaged per-model data"):
        model_data(store, sha, "fingerprint")
    # a member that claims to unpack to a huge size: refused before reading
    import zipfile

    path = folder / f"{sha}.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", b"\0" * (70 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ModelDataError, match="unpacks to"):
        model_data(store, sha, "fingerprint")
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.npz")
    with pytest.raises(ModelDataError, match="not a regular file"):
        model_data(store, sha, "fingerprint")


def test_legacy_fingerprint_folder_is_read_and_removed_with_the_model(store):
    sha = store.models()["sha256"][0]
    shutil.rmtree(store.root / "data" / "fingerprint")  # a store written before fingerprints were per-model data
    legacy = store.root / "lineage" / f"{sha}.npz"
    legacy.parent.mkdir(exist_ok=True)
    np.savez(legacy, version=np.int32(1), means=np.zeros((2, 9), np.float32))
    assert model_data(store, sha, "fingerprint")["means"].shape == (2, 9)
    orphan = store.root / "lineage" / ("9" * 64 + ".npz")
    np.savez(orphan, x=np.zeros(1))
    assert "lineage/" + orphan.name in gc_store(open_store(store.root, "a"))
    remove_models(open_store(store.root, "a"), "synthetic-1")
    assert not legacy.exists()


def _prepared(store, **layer_change):
    record = synthetic_record(5)
    prepared = prepare_model(record, {"name": "bad"}, dtype=store.dtype, metrics=None)
    prepared.layer_rows[1] = dict(prepared.layer_rows[1], **layer_change)
    return prepared


@pytest.mark.parametrize("change, message", [
    ({"n_filters": 7}, "n_filters 7 is not out x in"),
    ({"shape": [16, 16, 3]}, "kernel"),
    ({"groups": 0}, "groups 0 does not divide"),
    ({"groups": 5}, "groups 5 does not divide"),
    ({"shape": [16, -16, 3, 3]}, "positive sizes"),
])
def test_layer_rows_that_disagree_are_refused(store, change, message):
    before = snapshot(store.root)
    with pytest.raises(StoreError, match=f"model 'bad', layer .*{message}"):
        store.ingest_prepared(_prepared(store, **change))
    assert snapshot(store.root) == before


def test_filter_arrays_must_match_the_rows(store):
    prepared = _prepared(store)
    key = next(iter(prepared.filters))
    short = dataclasses.replace(prepared, filters={key: prepared.filters[key][:-1]})
    with pytest.raises(StoreError, match="the layer rows need"):
        store.ingest_prepared(short)


def test_layer_metrics_from_numpy_columns(store):
    from filterdb.check import check_model

    record = synthetic_record(6)
    report = check_model(record)
    typed = LayerMetrics.from_columns(report.columns)
    assert typed.names == tuple(layer.name for layer in record.layers)
    store.ingest(record, {"name": "typed"}, metrics=typed)
    record7 = dataclasses.replace(record, info=dataclasses.replace(record.info, sha256="7" * 64))
    store.ingest(record7, {"name": "frame"}, metrics=report.layers)
    layers = store.layers("model IN ('typed', 'frame')")
    typed_rows = layers[layers["model"] == "typed"].reset_index(drop=True)
    frame_rows = layers[layers["model"] == "frame"].reset_index(drop=True)
    for col in ("sparsity", "variance_entropy_norm", "orthogonality", "n_nonfinite"):
        np.testing.assert_array_equal(typed_rows[col].to_numpy(float), frame_rows[col].to_numpy(float))
        np.testing.assert_allclose(typed_rows[col].to_numpy(float), np.asarray(report.columns[col], float))
    assert [list(v) for v in typed_rows["verdicts"]] == [list(v) for v in frame_rows["verdicts"]]


def test_out_of_memory_query_is_not_a_damaged_catalog(store, monkeypatch):
    monkeypatch.setenv("FILTERDB_SQL_MEMORY", "20MB")
    monkeypatch.setenv("FILTERDB_SQL_TEMP", "1MB")
    query = "SELECT count(*) FROM (SELECT random()::VARCHAR || range AS b FROM range(3000000) ORDER BY b)"
    with pytest.raises(StoreResourceError, match="more memory than the reader's limit.*the store is fine") as info:
        store.sql(query)
    assert "damaged" not in str(info.value) and "re-create" not in str(info.value)
    monkeypatch.delenv("FILTERDB_SQL_MEMORY")
    assert store.sql("SELECT count(*) AS n FROM models")["n"][0] == 1  # the store is fine indeed


def test_out_of_memory_on_the_command_line(store, monkeypatch, capsys):
    from helpers import run_cli

    monkeypatch.setenv("FILTERDB_SQL_MEMORY", "20MB")
    monkeypatch.setenv("FILTERDB_SQL_TEMP", "1MB")
    query = "SELECT count(*) FROM (SELECT random()::VARCHAR || range AS b FROM range(3000000) ORDER BY b)"
    code, out, err = run_cli(capsys, "sql", store.root, query)
    assert code == 1 and "more memory than the reader's limit" in err and "damaged" not in err
