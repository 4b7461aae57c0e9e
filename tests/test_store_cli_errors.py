"""The store's command line: filterdb's own messages for a user's SQL mistakes (exit 2), numbers for
people, whole-word headers, and exported files with ordinary permissions."""

from __future__ import annotations

import os

import pytest
from helpers import run_cli as run

from filterdb import ingest_record
from filterdb.errors import UsageError
from filterdb.store import StoreQueryError, init_store, open_store
from filterdb.testing import synthetic_record


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two models whose filter counts the tests compute by hand (not the session zoo on purpose)."""
    root = tmp_path_factory.mktemp("cli") / "zoo"
    store = init_store(root)
    ingest_record(store, synthetic_record(1, channels=40, n_layers=4), {"Name": "wide", "Task": "Classification"})
    ingest_record(store, synthetic_record(2), {"Name": "narrow", "Task": "Detection"})
    store.close()
    return root


@pytest.mark.parametrize(("argv", "expected"), [
    (("layers", "{root}", "--where", "kernel = '3x3' AND"), "SQL syntax error in the where predicate "
                                                             "\"kernel = '3x3' AND\": near 'AND'"),
    (("layers", "{root}", "--where", "kernel = ? AND )"), "SQL syntax error in the where predicate 'kernel = ? AND )': near ')'"),
    (("layers", "{root}", "--where", "kernel = ?"), "has a '?' placeholder without a value: give one value per '?'"),
    (("layers", "{root}", "--where", "kernel = ?", "-p", "3x3", "-p", "x"), "more values than '?' placeholders"),
    (("layers", "{root}", "--where", "sparsty > 0.5"), "unknown column 'sparsty'; did you mean 'sparsity'?"),
    (("layers", "{root}", "--columns", "model,sparsty"), "--columns: unknown column 'sparsty'; did you mean 'sparsity'?"),
    (("sql", "{root}", "SELECT * FROM layer"), "unknown view 'layer'; did you mean 'layers'?"),
    (("sql", "{root}", "SELECT taks FROM models"), "unknown column 'taks'; did you mean 'task'?"),
    (("export", "{root}", "{out}", "--where", "kernel = ? AND"), "SQL syntax error in the where predicate"),
    (("sql", "{root}", "SELECT * FROM read_text('/etc/hostname')"), "reaches outside the store"),
    (("sql", "{root}", "COPY (SELECT * FROM models) TO '{out}'"), "reaches outside the store"),
    (("sql", "{root}", "SET enable_external_access = true"), "query failed"),
    (("layers", "{root}", "--where", "EXISTS (SELECT * FROM read_csv('/etc/hostname'))"), "reaches outside the store"),
])
def test_sql_mistakes_are_usage_errors(root, tmp_path, capsys, argv, expected):
    code, out, err = run(capsys, *(a.format(root=root, out=tmp_path / "o.h5") for a in argv))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in err, err
    for internal in ("Parser Error", "Binder Error", "Catalog Error", "pg_", "t_layers", "unexpected"):
        assert internal not in err, err
    assert not (tmp_path / "o.h5").exists()  # nothing was written (COPY TO is refused)


def test_query_errors_are_usage_errors_in_python(root):
    store = open_store(root)
    with pytest.raises(StoreQueryError) as info:
        list(store.iter_filters("3x3", "conv_depth_nrm > ?", [0.5]))
    assert isinstance(info.value, UsageError) and "did you mean 'conv_depth_norm'" in str(info.value)


def test_documented_where_examples_run(root, tmp_path, capsys):
    """docs/store.md's iter_filters example and `export --where "kernel = ?"` (were 'Ambiguous reference')."""
    store = open_store(root)
    deep = store.layers("conv_depth_norm > ? OR conv_depth_norm IS NULL", [0.9])
    n = sum(len(b) for b in store.iter_filters("3x3", "n_filters > ? AND kernel = ?", [100, "3x3"]))
    assert n == 120 + 3 * 40 * 40 + 2 * 16 * 16  # wide: stem 40x3, 3 layers 40x40; narrow: 2 layers 16x16
    assert len(deep) == 9
    for column in ("model_id", "layer_index", "notes", "scale", "n_filters", "kind", "model"):
        assert store.layers(f"{column} IS NOT NULL OR {column} IS NULL").shape[0] == 9, column
        list(store.iter_filters("3x3", f"{column} IS NOT NULL OR {column} IS NULL"))
    code, out, err = run(capsys, "export", root, tmp_path / "pq", "--where", "kernel = ?", "-p", "3x3")
    assert code == 0 and "exported 5,480 3x3 filters" in out, err  # 5,432 + narrow's stem 16x3


def test_numbers_for_people(root, capsys):
    code, out, _ = run(capsys, "sql", root, "SELECT 13150.0 AS x, sum(n_filters) AS n FROM layers")
    assert code == 0 and "13,150" in out and "e+04" not in out and "5,704" in out
    code, out, _ = run(capsys, "models", root)
    assert "5,080" in out  # wide: 120 + 3 x 1,600 + head 4 x 40 filters, with a separator
    code, out, _ = run(capsys, "stats", root)
    assert "filters 5,704" in out and "5,480" in out


def test_layers_table_says_ok_and_keeps_header_words_whole(root, capsys, monkeypatch):
    code, out, _ = run(capsys, "layers", root, "--where", "kernel = ?", "-p", "1x1")
    rows = [line for line in out.splitlines() if "head" in line]
    assert len(rows) == 2 and all(line.rstrip(" │").endswith("ok") for line in rows), out
    from filterdb.cli import _table

    monkeypatch.setattr(_table.console, "width", 110)  # narrower than the table's natural width
    code, out, _ = run(capsys, "layers", root)
    header = "\n".join(out.splitlines()[:6])
    for word in ("orthogonality", "sparsity", "verdicts", "kernel"):
        assert word in header, header
    assert "variance_" in header and "entropy_" in header


def test_export_files_have_ordinary_permissions(root, tmp_path, capsys):
    umask = os.umask(0o022)
    os.umask(umask)
    run(capsys, "export", root, tmp_path / "o.h5")
    run(capsys, "export", root, tmp_path / "pq")
    for path in (tmp_path / "o.h5", *sorted((tmp_path / "pq").iterdir())):
        assert (path.stat().st_mode & 0o777) == (0o666 & ~umask), path
