"""Ingest of real model files with manifests: matching, metadata, errors that leave the store unchanged."""

from __future__ import annotations

import shutil

import pytest
from helpers import snapshot

from filterdb.errors import FilterDBError, ModelNotFoundError
from filterdb.ingest import IngestError, expand_sources, ingest
from filterdb.manifest import ManifestError, load_manifest
from filterdb.store import init_store, open_store
from filterdb.testing import write_manifest

FACENET = {"pnet.pt": 702, "rnet.pt": 1428, "onet.pt": 6240}  # 3x3 filters (docs/corpus.md)


@pytest.fixture()
def zoo(tmp_path, corpus_path):
    """A directory of real model files: facenet's three nets, one of them in a sub-directory."""
    root = tmp_path / "models"
    (root / "sub").mkdir(parents=True)
    shutil.copy(corpus_path("pnet.pt"), root / "pnet.pt")
    shutil.copy(corpus_path("rnet.pt"), root / "rnet.pt")
    shutil.copy(corpus_path("onet.pt"), root / "sub" / "onet.pt")
    (root / "README.txt").write_text("not a model")
    return root


def rows(zoo):
    return [
        {"file": "models/pnet.pt", "Name": "P-Net", "Task": "Face Detection", "Visual Category": "faces",
         "Training-Dataset": "WIDER FACE", "Framework": "PyTorch", "Stage": "1"},
        {"file": "models/rnet.pt", "Name": "R-Net", "Task": "Face Detection", "Visual Category": "faces",
         "Training-Dataset": "WIDER FACE", "Framework": "PyTorch", "Stage": "2"},
        {"file": "models/sub/onet.pt", "Name": "O-Net", "Task": "Face Landmarks", "Visual Category": "faces",
         "Training-Dataset": "CelebA", "Framework": "PyTorch", "Stage": "3"},
    ]


@pytest.mark.parametrize("suffix", [".csv", ".yaml", ".json"])
def test_ingest_directory_with_manifest(tmp_path, zoo, suffix):
    manifest = write_manifest(tmp_path / f"zoo{suffix}", rows(zoo))
    report = ingest(tmp_path / "db", [zoo], manifest=manifest, create=True, jobs=1)
    assert len(report.ingested) == 3 and report.match is not None and report.match.ok
    store = open_store(tmp_path / "db")
    models = store.models().set_index("model")
    assert models.loc["O-Net", "task"] == "Face Landmarks" and models.loc["P-Net", "stage"] == "1"
    assert models.loc["R-Net", "format"] == "pytorch" and len(models.loc["R-Net", "sha256"]) == 64
    counts = store.sql("SELECT model, n_filters FROM filter_counts WHERE kernel = '3x3'")
    got = dict(zip(counts["model"], counts["n_filters"]))
    assert got == {"P-Net": 702, "R-Net": 1428, "O-Net": 6240}
    again = ingest(tmp_path / "db", [zoo], manifest=manifest, jobs=1)
    assert len(again.skipped) == 3 and not again.ingested


def test_manifest_alone_names_the_files(tmp_path, zoo):
    manifest = write_manifest(tmp_path / "zoo.csv", rows(zoo))
    report = ingest(tmp_path / "db", manifest=manifest, create=True, jobs=1)
    assert sorted(r.model for r in report.ingested) == ["O-Net", "P-Net", "R-Net"]


def test_parallel_reading_gives_the_same_store(tmp_path, zoo):
    manifest = write_manifest(tmp_path / "zoo.csv", rows(zoo))
    ingest(tmp_path / "one", [zoo], manifest=manifest, create=True, jobs=1)
    ingest(tmp_path / "two", [zoo], manifest=manifest, create=True, jobs=2)
    query = "SELECT model, layer, kernel, n_filters, scale FROM layers ORDER BY model, layer_index"
    assert open_store(tmp_path / "one").sql(query).equals(open_store(tmp_path / "two").sql(query))


def test_without_manifest_names_come_from_files(tmp_path, zoo):
    report = ingest(tmp_path / "db", [zoo / "pnet.pt", zoo / "sub"], create=True, jobs=1)
    assert sorted(r.model for r in report.ingested) == ["onet.pt", "pnet.pt"]


def test_changed_file_is_a_new_version(tmp_path, zoo):
    ingest(tmp_path / "db", [zoo / "pnet.pt"], create=True, jobs=1)
    shutil.copy(zoo / "rnet.pt", zoo / "pnet.pt")  # same path, new bytes
    report = ingest(tmp_path / "db", [zoo / "pnet.pt"], jobs=1)
    assert len(report.ingested) == 1
    assert list(open_store(tmp_path / "db").models()["version"]) == [1, 2]


def _store_with_one_model(tmp_path, zoo):
    root = tmp_path / "db"
    ingest(root, [zoo / "pnet.pt"], create=True, jobs=1)
    return root, snapshot(root)


BAD_MANIFESTS = [
    ("missing-column.csv", "file,Name,Task\nmodels/rnet.pt,R,T\n", "missing required column\\(s\\): visual_category"),
    ("no-file-column.csv", "Name,Task,Visual Category,Training-Dataset\nR,T,V,D\n", "missing required column.*file"),
    ("ragged.csv", "file,Name,Task,Visual Category,Training-Dataset\nmodels/rnet.pt,R,T,V,D,extra\n",
     "malformed CSV: row 1 has 6 fields"),
    ("broken.yaml", "models:\n  - file: models/rnet.pt\n    Name: [unclosed\n", "malformed YAML"),
    ("broken.json", "[{\"file\": \"models/rnet.pt\",}]", "malformed JSON"),
    ("notalist.yaml", "file: models/rnet.pt\n", "a list of mappings"),
    ("dup.csv", ("file,Name,Task,Visual Category,Training-Dataset\nmodels/rnet.pt,R,T,V,D\n"
                 "models/onet.pt,R,T,V,D\n"), "duplicate name 'R' in rows 1 and 2"),
    ("unknown.csv", ("file,Name,Task,Visual Category,Training-Dataset\nmodels/rnet.pt,R,T,V,D\n"
                     "models/ghost.pt,G,T,V,D\n"), "1 manifest row\\(s\\) without a file: row 2 \\(models/ghost.pt\\)"),
    ("empty-field.csv", "file,Name,Task,Visual Category,Training-Dataset\nmodels/rnet.pt,R,,V,D\n",
     "missing required fields: row 1 \\(R\\): task"),
    ("manifest.txt", "file\n", "unknown manifest type"),
]


@pytest.mark.parametrize("name,text,message", BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_bad_manifest_changes_nothing(tmp_path, zoo, name, text, message):
    root, before = _store_with_one_model(tmp_path, zoo)
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        ingest(root, [zoo / "rnet.pt"], manifest=path, jobs=1)
    assert snapshot(root) == before


def test_file_without_manifest_row(tmp_path, zoo):
    root, before = _store_with_one_model(tmp_path, zoo)
    manifest = write_manifest(tmp_path / "zoo.csv", rows(zoo)[:1])
    with pytest.raises(ManifestError, match="2 file\\(s\\) without a manifest row"):
        ingest(root, [zoo], manifest=manifest, jobs=1)
    assert snapshot(root) == before
    report = ingest(root, [zoo], manifest=manifest, strict=False, jobs=1)  # lenient: ingest, and report
    assert len(report.ingested) == 2 and len(report.match.files_without_row) == 2


def test_required_fields_are_configurable(tmp_path, zoo):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,Name\nmodels/rnet.pt,R\n")
    with pytest.raises(ManifestError, match="task"):
        load_manifest(manifest)
    assert load_manifest(manifest, required=["Name"]).rows[0].name == "R"
    report = ingest(tmp_path / "db", [zoo / "rnet.pt"], manifest=manifest, required=["name"], create=True, jobs=1)
    assert report.ingested[0].model == "R"


@pytest.mark.parametrize("source,error,message", [
    ("nope.pt", ModelNotFoundError, "no such file or directory"),
    ("empty-dir", ModelNotFoundError, "holds no model file"),
    ("notes.txt", FilterDBError, "not a model file"),
    ("ftp2:whatever", ModelNotFoundError, "unknown source scheme"),
])
def test_bad_sources_change_nothing(tmp_path, zoo, source, error, message):
    root, before = _store_with_one_model(tmp_path, zoo)
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    bad = source if ":" in source else str(tmp_path / source)
    with pytest.raises(error, match=message):
        ingest(root, [zoo / "rnet.pt", bad], jobs=1)
    assert snapshot(root) == before


def test_corrupt_model_stops_and_rerun_continues(tmp_path, zoo):
    root = tmp_path / "db"
    init_store(root)
    broken = zoo / "zz-broken.pt"
    broken.write_bytes((zoo / "pnet.pt").read_bytes()[:500])
    with pytest.raises(IngestError, match="zz-broken.pt.*model\\(s\\) ingested before it stay"):
        ingest(root, [zoo], jobs=1)
    assert len(open_store(root).models()) == 2  # pnet and rnet come before it in the walk, onet after
    report = ingest(root, [zoo], jobs=1, keep_going=True)
    assert len(report.skipped) == 2 and [r.model for r in report.ingested] == ["onet.pt"]
    assert report.failed and report.failed[0][0].endswith("zz-broken.pt")


def test_expand_sources_walks_directories(zoo):
    items = expand_sources([zoo])
    assert [p.path.name for p in items] == ["pnet.pt", "rnet.pt", "onet.pt"]


def test_keep_going_skips_files_no_reader_recognises(tmp_path, zoo):
    root = tmp_path / "db"
    init_store(root)
    odd = tmp_path / "graph.pb"  # a model suffix, content no reader recognises
    odd.write_text("not a graph")
    with pytest.raises(FilterDBError, match="graph.pb"):
        ingest(root, [zoo / "rnet.pt", odd], jobs=1)
    assert open_store(root).models().empty
    report = ingest(root, [zoo / "rnet.pt", odd], jobs=1, keep_going=True)
    assert [r.model for r in report.ingested] == ["rnet.pt"]
    assert [spec for spec, _ in report.failed] == [str(odd)] and "not a model file" in report.failed[0][1]
