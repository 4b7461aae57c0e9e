"""The demo zoo: the shipped corpus manifest, and the shipped digits family whose degenerations have known causes.

Remaking the family with torch (and comparing with the shipped files) is tests/test_digits_family.py."""

from __future__ import annotations

import json
import os
import sys

import pytest
from corpus import CORPUS
from digits_family import SHIPPED, assert_verdicts_as_designed

import filterdb
from filterdb.demo import DIGITS_MODELS, DIGITS_VERSION, MIN_ACCURACY, build_demo_zoo, corpus_rows
from filterdb.demo._zoo import DIGITS_FOLDER, TRAINED_FOLDER, _cached_digits
from filterdb.errors import MissingDependencyError
from filterdb.manifest import is_source_name, load_manifest

SPEC_TO_KEY = {entry.spec: key for key, entry in CORPUS.items()}


# ----------------------------------------------------------------------------------- the shipped corpus rows
def test_corpus_manifest_names_every_corpus_file_but_the_pickles():
    rows = corpus_rows()
    files = [row["file"] for row in rows]
    expected = [entry.spec for entry in CORPUS.values() if not entry.trust_pickle]
    assert sorted(files) == sorted(expected)  # the mtcnn pickles need --trust-pickle: not in the demo
    for row in rows:
        assert row["Name"] and row["Task"] and row["Visual Category"] and row["Training-Dataset"], row["file"]
        assert row["URL"].startswith("https://github.com/"), row["file"]  # the project's home, not a registry
        assert row["License"], row["file"]


def test_corpus_rows_follow_corpus_md_licences():
    licences = {row["file"].split("==")[0]: row["License"] for row in corpus_rows()}
    assert licences["pypi:nudenet"] == "AGPL-3.0"  # the wheel carries the AGPL, whatever its metadata says
    assert licences["pypi:lpips"] == "BSD-2-Clause"
    assert licences["pypi:rapidocr-onnxruntime"] == "Apache-2.0"


def test_corpus_only_build_parses_with_the_manifest_loader(tmp_path):
    zoo = build_demo_zoo(tmp_path, include_digits=False)
    sources, manifest_path = zoo  # unpacks as a pair
    manifest = load_manifest(manifest_path)
    assert [row.file for row in manifest.rows] == sources
    assert all(is_source_name(s) for s in sources)
    assert {"task", "visual_category", "architecture", "framework", "precision", "license"} <= set(manifest.columns)
    assert not (tmp_path / DIGITS_FOLDER).exists()


@pytest.mark.corpus
def test_every_corpus_source_resolves_and_reads(corpus_path):
    for row in corpus_rows():
        path = corpus_path(SPEC_TO_KEY[row["file"]])
        assert path.is_file() and path.stat().st_size > 0
    # spot check: the rows read through filterdb's own readers
    record = filterdb.read_model(corpus_path("pnet.pt"))
    assert len(record.layers) == CORPUS["pnet.pt"].n_conv


def test_the_shipped_digits_need_no_framework(tmp_path, monkeypatch):
    for name in ("torch", "sklearn", "keras", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` now raises ImportError
    lines: list[str] = []
    zoo = build_demo_zoo(tmp_path, progress=lines.append)
    assert not zoo.trained and zoo.notes == []
    assert len(zoo.digits) == sum(1 + (m.name == "digits-cnn-w2") for m in DIGITS_MODELS)  # + the ONNX copy
    assert len(load_manifest(zoo.manifest_path).rows) == len(corpus_rows()) + len(zoo.digits)
    assert any("shipped" in line for line in lines)
    for row in zoo.digits:  # the same bytes as the package's files, and they read without torch
        copy = tmp_path / row["file"]
        assert copy.read_bytes() == (SHIPPED / copy.name).read_bytes()
        assert filterdb.read_model(copy).layers


def test_training_without_torch_is_a_missing_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'filterdb\[torch\]'"):
        build_demo_zoo(tmp_path, train=True)


def test_the_shipped_files_are_small_and_in_the_index():
    index = json.loads((SHIPPED / "digits.json").read_text())
    assert index["version"] == DIGITS_VERSION
    files = sorted(p.name for p in SHIPPED.iterdir() if p.name != "digits.json")
    assert sorted(row["file"] for row in index["rows"]) == files
    assert sum((SHIPPED / f).stat().st_size for f in files) < 1_000_000  # package data, not a download


# -------------------------------------------------------------------------------------------- the digits family
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    built = build_demo_zoo(work, progress=lines.append)
    return built, lines


@pytest.fixture(scope="module")
def reports(zoo):
    built, _ = zoo
    base = built.manifest_path.parent
    return {row["Name"]: filterdb.check_model(filterdb.read_model(base / row["file"])) for row in built.digits}


def test_build_writes_a_loadable_manifest(zoo):
    built, _ = zoo
    manifest = load_manifest(built.manifest_path)
    assert len(manifest.rows) == len(corpus_rows()) + len(built.digits)
    assert {"degeneration_cause", "expected_verdict", "expected_layers", "test_accuracy"} <= set(
        manifest.extra_columns)
    local = [s for s in built.sources if not is_source_name(s)]
    assert len(local) == len(built.digits) and all(os.path.isfile(s) for s in local)
    by_key = {row.key: row for row in manifest.rows}
    assert all(s in by_key for s in built.sources)  # every source has its row


def test_trained_models_reach_the_documented_accuracy(zoo):
    built, _ = zoo
    for row in built.digits:
        accuracy = float(row["Test Accuracy"])
        if row["Training-Dataset"] == "none (untrained)":
            assert accuracy < 0.3, row["Name"]  # chance is 0.1
        else:
            assert accuracy >= MIN_ACCURACY, row["Name"]


@pytest.mark.parametrize("spec", DIGITS_MODELS, ids=[m.name for m in DIGITS_MODELS])
def test_each_verdict_on_its_layers_and_nowhere_else(reports, spec):
    assert_verdicts_as_designed(reports[spec.name].layers, spec)


def test_the_onnx_copy_reads_like_the_safetensors_file(reports):
    st, onnx = reports["digits-cnn-w2"].layers, reports["digits-cnn-w2 (ONNX)"].layers
    assert list(onnx["name"]) == [f"/{name}/Conv" for name in st["name"]]
    assert onnx["variance_entropy_norm"].tolist() == st["variance_entropy_norm"].tolist()  # the very same filters
    assert all(not kinds for kinds in onnx["verdicts"])


def test_a_second_build_rewrites_nothing(zoo):
    built, _ = zoo
    work = built.manifest_path.parent
    files = [work / row["file"] for row in built.digits]
    before = {f: f.stat().st_mtime_ns for f in files}
    manifest_before = built.manifest_path.read_text()
    again = build_demo_zoo(work)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert again.digits == built.digits and again.sources == built.sources
    assert again.manifest_path.read_text() == manifest_before


def test_a_damaged_copy_in_the_work_folder_is_replaced(zoo):
    built, _ = zoo
    work = built.manifest_path.parent
    copy = work / built.digits[0]["file"]
    copy.write_bytes(b"damaged")
    build_demo_zoo(work)
    assert copy.read_bytes() == (SHIPPED / copy.name).read_bytes()


def test_the_trained_cache_is_refused_on_another_version_or_a_missing_file(tmp_path):
    index = json.loads((SHIPPED / "digits.json").read_text())
    folder = tmp_path / TRAINED_FOLDER
    folder.mkdir()
    (folder / "digits.json").write_text(json.dumps(index))
    assert _cached_digits(folder) is None  # the files are not there
    for row in index["rows"]:
        (folder / row["file"]).write_bytes((SHIPPED / row["file"]).read_bytes())
    assert _cached_digits(folder) == index["rows"]
    (folder / "digits.json").write_text(json.dumps({**index, "version": "0"}))
    assert _cached_digits(folder) is None


def test_demo_train_without_torch_is_one_error_line(tmp_path):
    import subprocess

    blocked = "import sys; sys.modules['torch'] = None; from filterdb.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", blocked, "demo", "--train", "--workdir", str(tmp_path),
                           "--models", "digits-vgg*", "-o", str(tmp_path / "r.html")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 1
    assert "pip install 'filterdb[torch]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.html").exists()
