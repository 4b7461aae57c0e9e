"""Each small rule has one owner (issue 21, seam 3): ManifestError in manifest.py, cache_dir in a neutral helper,
the monitor on the readers' public dispatch, check on metrics' public names. Read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import filterdb
import filterdb.manifest
import filterdb.store
from filterdb import readers

SRC = Path(filterdb.__file__).resolve().parent


def imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from module import name` of a file, relative modules resolved."""
    package = ".".join(("filterdb", *path.relative_to(SRC).parent.parts)).rstrip(".")
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            out += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
    return out


def test_manifest_error_belongs_to_the_manifest():
    assert filterdb.manifest.ManifestError.__module__ == "filterdb.manifest"
    assert not hasattr(filterdb.store, "ManifestError")
    assert "ManifestError" not in (SRC / "store" / "_errors.py").read_text()
    with pytest.raises(filterdb.manifest.ManifestError, match="no such manifest file"):
        filterdb.manifest.load_manifest("no-such-manifest.csv")


def test_cache_dir_comes_from_the_neutral_helper(monkeypatch, tmp_path):
    from filterdb import _cache, sources

    assert sources.cache_dir is _cache.cache_dir  # the sources re-export the one function
    monkeypatch.setenv("FILTERDB_CACHE_DIR", str(tmp_path))
    assert _cache.cache_dir() == tmp_path
    for user in ("report/_zoo_report.py", "demo/_run.py"):
        found = [(m, n) for m, n in imports(SRC / user) if n == "cache_dir"]
        assert found == [("filterdb._cache", "cache_dir")], user


def test_the_monitor_reads_live_models_through_the_readers_public_api():
    private = [(m, n) for m, n in imports(SRC / "monitor" / "_live.py")
               if m.startswith("filterdb.readers.") or m.startswith("filterdb._read")]
    assert private == []


def test_check_uses_only_public_names_of_metrics():
    used = [n for m, n in imports(SRC / "check.py") if m == "filterdb.metrics"]
    assert used and not any(n.startswith("_") for n in used)


def test_object_reader_for_names_the_framework():
    torch = pytest.importorskip("torch")
    assert readers.object_reader_for(torch.nn.Conv2d(1, 2, 3)).format == "pytorch"
    assert readers.object_reader_for(object()) is None
    assert readers.read_object(object()) is None
