"""The store after issue 21's last seam: `Store` keeps opening, queries, read plans and ingest; maintenance is
done by functions of the store package; `Catalog` runs every SQL statement; a read plan reads the catalog on
one connection and says which of its columns hold depth deciles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import filterdb.store
from filterdb import ingest_record
from filterdb.selection import DEPTH_EDGES, DEPTH_LABELS, Selection
from filterdb.store import (StoreError, add_aliases, gc_store, init_store, model_data, open_store, put_model_data,
                            remove_models, resolve_models, verify_store)
from filterdb.testing import synthetic_record

SRC = Path(filterdb.store.__file__).resolve().parents[1]


@pytest.fixture()
def two_models(tmp_path):
    store = init_store(tmp_path / "zoo")
    a = ingest_record(store, synthetic_record(1, name="a.onnx"), {"Name": "a"})
    b = ingest_record(store, synthetic_record(2, name="b.onnx"), {"Name": "b"})
    return store, a, b


def _files(root: Path, under: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / under).rglob("*") if p.is_file()}


def test_remove_models_takes_the_rows_the_shards_and_the_data(two_models):
    store, a, b = two_models
    put_model_data(store, a.sha256, "notes", {"ranks": np.arange(3)})
    put_model_data(store, b.sha256, "notes", {"ranks": np.arange(4)})
    shards_before = _files(store.root, "shards")
    b_shards = {str(s) for s in store.segments("3x3", "model = ?", ["b"])["shard"]}  # the view hides shards
    b_shards |= {str(s) for s in store.segments("1x1", "model = ?", ["b"])["shard"]}
    store.close()  # the plans' reader lease: else the files stay for a later gc
    assert remove_models(store, "b") == [b.model_id]
    assert list(store.models()["model"]) == ["a"]
    assert _files(store.root, "shards") == shards_before - b_shards and b_shards
    assert model_data(store, b.sha256, "notes") is None
    assert list(model_data(store, a.sha256, "notes")["ranks"]) == [0, 1, 2]
    data = _files(store.root, "data")  # the notes, and the fingerprints ingest_record keeps
    assert data and not any(b.sha256 in f for f in data) and any(f == f"data/notes/{a.sha256}.npz" for f in data)
    assert verify_store(store).ok and verify_store(store).n_model_data == len(data)
    with pytest.raises(StoreError, match="no model 'b'"):
        remove_models(store, "b")


def test_gc_store_keeps_files_a_reader_holds(two_models):
    store, a, b = two_models
    reader = open_store(store.root)
    reader.segments("3x3")  # a plan: its lease keeps the files of models removed meanwhile
    writer = open_store(store.root, "a")
    remove_models(writer, "a")
    kept = verify_store(writer).unreferenced
    assert {f.split("/")[0] for f in kept} == {"shards", "data"}  # a's shards and its fingerprint
    assert all(a.sha256 in f for f in kept if f.startswith("data/"))
    assert gc_store(writer) == []  # the reader still holds its lease
    reader.close()
    assert sorted(gc_store(writer)) == sorted(kept)
    assert verify_store(writer).ok and not verify_store(writer).unreferenced


def test_resolve_and_aliases(two_models):
    store, a, b = two_models
    assert resolve_models(store, "a") == [a.model_id]
    assert resolve_models(store, str(b.model_id)) == [b.model_id]
    assert resolve_models(store, b.sha256[:10]) == [b.model_id]
    add_aliases(store, [(a.sha256, "a-copy", "elsewhere/a.onnx"), ("0" * 64, "ghost", None)])
    models = store.models().set_index("model")
    assert list(models.loc["a", "aliases"]) == ["a-copy"] and list(models.loc["b", "aliases"]) == []


def test_a_plan_flags_its_depth_columns(synthetic_zoo):
    frame = synthetic_zoo.segments(Selection("3x3", by="depth"), axes=["visual_category", "depth"])
    assert frame.attrs["depth"] == ("group_value", "axis_1")
    assert set(frame["group_value"].dropna()) <= set(DEPTH_LABELS)
    assert synthetic_zoo.segments(Selection("3x3", by="visual_category")).attrs["depth"] == ()
    layers = synthetic_zoo.catalog.selected_layers(Selection("3x3", by="depth"), columns=("layer_id",))
    assert layers.attrs["depth"] == ("group_value",) and list(layers["group_value"]) == list(frame["group_value"])
    # the decile rule of docs/analysis.md, [0, 0.1], (0.1, 0.2], ..., computed here with numpy
    norm = synthetic_zoo.layers("kernel = ?", ["3x3"])["conv_depth_norm"].to_numpy(float)
    expected = [DEPTH_LABELS[i] for i in np.searchsorted(DEPTH_EDGES, norm, side="left")]
    assert list(frame["group_value"]) == expected


def test_store_keeps_about_half_its_methods():
    tree = ast.parse((SRC / "store" / "_store.py").read_text())
    store = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Store")
    methods = {n.name for n in store.body if isinstance(n, ast.FunctionDef)}
    assert len(methods) <= 18, sorted(methods)  # 30 before issue 21
    assert not methods & {"remove", "gc", "verify", "put_model_data", "model_data", "resolve", "add_aliases"}


_SQL = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|ALTER|CREATE)\b[^\n]*\b(FROM|INTO|TABLE|SET|VIEW)\b")
# the selection -> SQL rule over the `layers` view (one writer), and the error explanation re-parsing the user's
# text; every other statement is the catalog's
_ALLOWED = {"_catalog.py", "_segments.py", "_query.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            out.add(id(first.value))
    return out


def test_every_sql_statement_of_the_store_is_the_catalogs():
    offenders = []
    for path in sorted((SRC / "store").glob("*.py")):
        if path.name in _ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)  # examples in docstrings are documentation, not statements
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and _SQL.search(node.value)):
                offenders.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    assert offenders == []
