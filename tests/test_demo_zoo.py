"""The demo zoo: the shipped corpus manifest, and the digits family whose degenerations have known causes."""

from __future__ import annotations

import json
import os
import sys

import pytest
from corpus import CORPUS

import filterdb
from filterdb.demo import DIGITS_MODELS, MIN_ACCURACY, build_demo_zoo, corpus_rows
from filterdb.demo._zoo import DIGITS_FOLDER, _cached_digits
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


def test_without_torch_the_digits_are_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    lines: list[str] = []
    zoo = build_demo_zoo(tmp_path, progress=lines.append)
    assert not zoo.trained and zoo.digits == []
    assert len(zoo.notes) == 1 and "pip install 'filterdb[torch]'" in zoo.notes[0]
    assert len(load_manifest(zoo.manifest_path).rows) == len(corpus_rows())
    assert any("skipped" in line for line in lines)


# -------------------------------------------------------------------------------------------- the digits family
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    work = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    built = build_demo_zoo(work, progress=lines.append)
    return built, lines


@pytest.fixture(scope="module")
def reports(zoo):
    built, _ = zoo
    base = built.manifest_path.parent
    return {row["Name"]: filterdb.check_model(filterdb.read_model(base / row["file"])) for row in built.digits}


@pytest.mark.torch
def test_build_trains_and_writes_a_loadable_manifest(zoo):
    built, lines = zoo
    assert built.trained and built.notes == []
    manifest = load_manifest(built.manifest_path)
    assert len(manifest.rows) == len(corpus_rows()) + len(built.digits)
    assert {"degeneration_cause", "expected_verdict", "expected_layers", "test_accuracy"} <= set(
        manifest.extra_columns)
    local = [s for s in built.sources if not is_source_name(s)]
    assert len(local) == len(built.digits) and all(os.path.isfile(s) for s in local)
    by_key = {row.key: row for row in manifest.rows}
    assert all(s in by_key for s in built.sources)  # every source has its row
    assert sum("test accuracy" in line for line in lines) == len(DIGITS_MODELS)


@pytest.mark.torch
def test_trained_models_reach_the_documented_accuracy(zoo):
    built, _ = zoo
    for row in built.digits:
        accuracy = float(row["Test Accuracy"])
        if row["Training-Dataset"] == "none (untrained)":
            assert accuracy < 0.3, row["Name"]  # chance is 0.1
        else:
            assert accuracy >= MIN_ACCURACY, row["Name"]


@pytest.mark.torch
@pytest.mark.parametrize("spec", DIGITS_MODELS, ids=[m.name for m in DIGITS_MODELS])
def test_each_verdict_on_its_layers_and_nowhere_else(reports, spec):
    layers = reports[spec.name].layers
    found = {name: list(kinds) for name, kinds in zip(layers["name"], layers["verdicts"]) if kinds}
    expected = {name: [spec.verdict] for name in spec.layers}
    assert found == expected
    values = layers.set_index("name")
    # with margin, not at the edge of a threshold
    for name in spec.layers:
        if spec.verdict == "sparse":
            assert values.loc[name, "sparsity"] >= 0.7
        elif spec.verdict == "low-diversity":
            assert values.loc[name, "variance_entropy_norm"] < 0.4
            assert values.loc[name, "sparsity"] == 0  # collapsed, not zeroed
    judged = values[(values["n_filters"] >= 32) & ~values.index.isin(spec.layers)]
    assert (judged["variance_entropy_norm"] < 0.99).all() and (judged["variance_entropy_norm"] > 0.6).all()
    assert (judged["sparsity"] < 0.2).all()


@pytest.mark.torch
def test_the_onnx_copy_reads_like_the_state_dict(reports):
    pt, onnx = reports["digits-cnn-w2"].layers, reports["digits-cnn-w2 (ONNX)"].layers
    assert list(onnx["name"]) == [f"/{name}/Conv" for name in pt["name"]]
    assert onnx["variance_entropy_norm"].round(6).tolist() == pt["variance_entropy_norm"].round(6).tolist()
    assert all(not kinds for kinds in onnx["verdicts"])


@pytest.mark.torch
def test_a_second_build_reuses_the_cached_files(zoo):
    built, _ = zoo
    work = built.manifest_path.parent
    files = [work / row["file"] for row in built.digits]
    before = {f: f.stat().st_mtime_ns for f in files}
    manifest_before = built.manifest_path.read_text()
    lines: list[str] = []
    again = build_demo_zoo(work, progress=lines.append)
    assert not again.trained
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert again.digits == built.digits and again.sources == built.sources
    assert again.manifest_path.read_text() == manifest_before
    assert any("reusing" in line for line in lines) and not any("test accuracy" in line for line in lines)


@pytest.mark.torch
def test_the_cache_is_refused_on_another_version_or_a_missing_file(zoo, tmp_path):
    built, _ = zoo
    folder = built.manifest_path.parent / DIGITS_FOLDER
    assert _cached_digits(folder) == built.digits
    cache = json.loads((folder / "digits.json").read_text())
    copy = tmp_path / DIGITS_FOLDER
    copy.mkdir()
    (copy / "digits.json").write_text(json.dumps(cache))
    assert _cached_digits(copy) is None  # the files are not there
    for row in built.digits:
        (tmp_path / row["file"]).write_bytes((folder.parent / row["file"]).read_bytes())
    assert _cached_digits(copy) == built.digits
    (copy / "digits.json").write_text(json.dumps({**cache, "version": "0"}))
    assert _cached_digits(copy) is None
