"""The store commands: exit codes and output."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import run_cli as run, snapshot

from filterdb.testing import write_manifest


@pytest.fixture()
def zoo(tmp_path, corpus_path):
    root = tmp_path / "models"
    root.mkdir()
    for key in ("pnet.pt", "rnet.pt"):
        shutil.copy(corpus_path(key), root / key)
    write_manifest(tmp_path / "zoo.csv", [
        {"file": "models/pnet.pt", "Name": "P", "Task": "Face Detection", "Visual Category": "faces",
         "Training-Dataset": "WIDER FACE"},
        {"file": "models/rnet.pt", "Name": "R", "Task": "Face Detection", "Visual Category": "faces",
         "Training-Dataset": "WIDER FACE"},
    ])
    return root


def test_store_commands(tmp_path, zoo, capsys):
    db = tmp_path / "db"
    assert run(capsys, "init", db)[0] == 0
    code, out, err = run(capsys, "ingest", db, zoo, "--manifest", tmp_path / "zoo.csv", "-j", "1", "--no-progress")
    assert code == 0, err
    assert "ingested 2 model(s), 5,394 filters" in out
    code, out, _ = run(capsys, "ingest", db, zoo, "--manifest", tmp_path / "zoo.csv", "-j", "1")
    assert "ingested 0 model(s)" in out and "2 already in the store" in out
    code, out, _ = run(capsys, "models", db, "--format", "json")
    assert code == 0 and [m["model"] for m in json.loads(out)] == ["P", "R"]
    code, out, _ = run(capsys, "layers", db, "--where", "kernel = ? AND model = ?", "-p", "3x3", "-p", "R",
                       "--columns", "model,layer,n_filters", "--format", "csv")
    assert out.splitlines() == ["model,layer,n_filters", "R,conv1,84", "R,conv2,1344"]
    code, out, _ = run(capsys, "sql", db, "SELECT task, sum(n_filters)::BIGINT AS n FROM layers WHERE kernel = ? "
                       "GROUP BY task", "-p", "3x3", "--format", "csv")
    assert out.splitlines() == ["task,n", "Face Detection,2130"]
    code, out, _ = run(capsys, "stats", db)
    assert code == 0 and "models 2" in out and "bytes/filter" in out and "3x3" in out
    code, out, _ = run(capsys, "export", db, tmp_path / "out.h5")
    assert code == 0 and "exported 2,130 3x3 filters" in out
    code, out, _ = run(capsys, "export", db, tmp_path / "pq")
    assert code == 0 and (tmp_path / "pq" / "filters.parquet").is_file()
    code, out, _ = run(capsys, "import-hdf5", tmp_path / "imported", tmp_path / "out.h5", "--init")
    assert code == 0 and "imported 2 model(s), 2,130 filters" in out
    code, out, _ = run(capsys, "rm", db, "P")
    assert code == 0 and "removed 1 model(s)" in out
    code, out, _ = run(capsys, "models", db, "--format", "csv")
    assert "P," not in out and "R," in out


def test_user_errors_are_one_line(tmp_path, zoo, capsys):
    db = tmp_path / "db"
    run(capsys, "init", db)
    run(capsys, "ingest", db, zoo / "pnet.pt", "-j", "1")
    before = snapshot(db)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,Name\nmodels/rnet.pt,R\n")
    code, out, err = run(capsys, "ingest", db, zoo / "rnet.pt", "--manifest", bad)
    assert code == 1 and "missing required column(s): task, visual_category, training_dataset" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "ingest", db, tmp_path / "missing.onnx")
    assert code == 1 and "no such file or directory" in err
    code, _, err = run(capsys, "sql", db, "SELECT nope FROM models")
    assert code == 2 and "unknown column 'nope'" in err  # a usage error (tests/test_store_cli_errors.py)
    code, _, err = run(capsys, "rm", db, "ghost")
    assert code == 1 and "no model 'ghost'" in err
    code, _, err = run(capsys, "models", tmp_path / "nowhere")
    assert code == 1 and "no such store" in err
    assert snapshot(db) == before
    code, out, err = run(capsys, "ingest", db, zoo / "rnet.pt", "--manifest", bad, "--require", "name")
    assert code == 0 and "ingested 1 model(s)" in out
