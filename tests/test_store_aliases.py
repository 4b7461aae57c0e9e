"""Aliases: one content hash keeps every name and source it was ingested under."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from helpers import run_cli

from filterdb import ingest_record
from filterdb.store import init_store, open_store
from filterdb.testing import synthetic_record
from filterdb.store import verify_store


@pytest.fixture()
def files(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    first = tmp_path / "pkg-a" / "net.safetensors"
    first.parent.mkdir()
    save_file({"conv.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32)}, str(first))
    copy = tmp_path / "pkg-b" / "detector.safetensors"  # the same bytes shipped by another package
    copy.parent.mkdir()
    shutil.copy(first, copy)
    return first, copy


def test_the_same_file_under_another_name_is_an_alias(tmp_path, files, capsys):
    first, copy = files
    root = tmp_path / "db"
    assert run_cli(capsys, "ingest", root, first, "--init")[0] == 0
    code, out, _ = run_cli(capsys, "ingest", root, copy)
    assert code == 0
    assert "detector.safetensors: already in the store as net.safetensors" in out
    assert "ingested 0 model(s)" in out and "1 already in the store" in out
    store = open_store(root)
    models = store.models()
    assert list(models["model"]) == ["net.safetensors"]
    assert list(models["aliases"][0]) == ["detector.safetensors"]
    names = store.sql("SELECT name, source FROM model_names ORDER BY added_at")
    assert list(names["name"]) == ["net.safetensors", "detector.safetensors"]
    assert list(names["source"]) == [str(first), str(copy)]
    code, out, _ = run_cli(capsys, "models", root)
    assert code == 0 and "detector.safetensors" in out
    # the same name and source again: said again, recorded once
    code, out, _ = run_cli(capsys, "ingest", root, copy)
    assert "already in the store as net.safetensors" in out
    assert store.sql("SELECT count(*) AS n FROM model_names")["n"][0] == 2
    # rm takes the model with all its names
    assert run_cli(capsys, "rm", root, "net.safetensors")[0] == 0
    assert store.sql("SELECT count(*) AS n FROM model_names")["n"][0] == 0


def test_ingest_record_of_known_weights_records_the_name(tmp_path):
    store = init_store(tmp_path / "db")
    record = synthetic_record(4)
    ingest_record(store, record, {"Name": "first"})
    again = dataclasses.replace(record, info=dataclasses.replace(record.info, source="elsewhere"))
    result = ingest_record(store, again, {"Name": "second"})
    assert result.skipped and result.model == "first" and result.alias == "second"
    assert list(store.models()["aliases"][0]) == ["second"]
    assert store.sql("SELECT source FROM model_names WHERE name = 'second'")["source"][0] == "elsewhere"


def test_store_written_before_aliases_gets_them_on_its_first_write(tmp_path):
    import duckdb

    store = init_store(tmp_path / "db")
    ingest_record(store, synthetic_record(1), {"Name": "old"})
    with duckdb.connect(str(store.root / "catalog.duckdb")) as con:  # the catalog of an older filterdb
        con.execute("DROP VIEW model_names")
        con.execute("CREATE OR REPLACE VIEW models AS SELECT * EXCLUDE (path) FROM t_models")
        con.execute("DROP TABLE t_names")
        con.execute("DROP TABLE t_model_data")
    old = open_store(store.root)
    assert "aliases" not in old.models().columns and verify_store(old).ok  # read as it is
    writer = open_store(store.root, "a")
    ingest_record(writer, synthetic_record(1), {"Name": "renamed"})
    assert list(open_store(store.root).models()["aliases"][0]) == ["renamed"]
    assert sorted(open_store(store.root).sql("SELECT name FROM model_names")["name"]) == ["old", "renamed"]


def test_the_same_bytes_twice_in_one_run(tmp_path, files, capsys):
    first, copy = files
    root = tmp_path / "db"
    assert run_cli(capsys, "ingest", root, first, copy, "--init")[0] == 0
    models = open_store(root).models()
    assert list(models["model"]) == ["net.safetensors"] and list(models["aliases"][0]) == ["detector.safetensors"]
