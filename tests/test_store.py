"""The store: format, content addressing, round trip, selection and streaming, removal, garbage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from filterdb import ingest_record
from filterdb.errors import FilterDBError
from filterdb.store import (
    StoreError,
    StoreFormatError,
    StoreNotFoundError,
    init_store,
    open_store,
)
from filterdb.testing import synthetic_record
from filterdb.store import remove_models


@pytest.fixture()
def store(tmp_path):
    return init_store(tmp_path / "zoo")


def test_init_and_open(tmp_path):
    root = tmp_path / "zoo"
    store = init_store(root)
    assert store.dtype == "float16" and store.format_version == 1
    assert open_store(root).models().empty
    with pytest.raises(StoreError, match="already a filter store"):
        init_store(root)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(StoreError, match="not an empty directory"):
        init_store(tmp_path / "busy")


def test_open_errors(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no such store"):
        open_store(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreNotFoundError, match="not a filter store"):
        open_store(tmp_path / "plain")
    root = tmp_path / "zoo"
    init_store(root)
    fmt = json.loads((root / "filterdb-store.json").read_text())
    (root / "filterdb-store.json").write_text(json.dumps(dict(fmt, version=99)))
    with pytest.raises(StoreFormatError, match="format version 99, this filterdb reads version 1; upgrade"):
        open_store(root)
    assert issubclass(StoreFormatError, FilterDBError)


def test_ingest_round_trip_float16(store):
    record = synthetic_record(1, tiny=True)
    result = ingest_record(store, record, {"Name": "net", "Task": "Classification", "Visual Category": "natural"})
    assert not result.skipped and result.n_layers == 4
    layers = store.layers()
    assert list(layers["layer"]) == ["stem", "conv1", "conv2", "head"]
    assert list(layers["kernel"]) == ["3x3", "3x3", "3x3", "1x1"]
    raw = np.concatenate(list(store.iter_filters("3x3", scaled=False, batch_rows=100)))
    expected = np.concatenate([layer.filters() for layer in record.layers[:3]])
    assert raw.shape == expected.shape == (16 * 3 + 2 * 16 * 16, 9)
    offset = 0
    for layer in record.layers[:3]:  # error bound: 2**-11 of the layer's max |w|
        flat = layer.filters()
        bound = 2.0**-11 * np.abs(flat).max()
        assert np.abs(raw[offset : offset + len(flat)] - flat).max() <= bound
        offset += len(flat)
    ones = store.layers("layer = ?", ["head"])
    assert ones["n_filters"].item() == 64


def test_float32_store_is_exact(tmp_path):
    store = init_store(tmp_path / "exact", dtype="float32")
    record = synthetic_record(2)
    ingest_record(store, record)
    raw = np.concatenate(list(store.iter_filters("3x3", scaled=False)))
    assert np.array_equal(raw, np.concatenate([layer.filters() for layer in record.layers[:3]]))


def test_scaled_filters(store):
    record = synthetic_record(3)
    ingest_record(store, record)
    scaled = np.concatenate(list(store.iter_filters("3x3")))
    assert np.allclose(np.abs(scaled).max(axis=1), 1.0)
    direct = np.concatenate([layer.filters() for layer in record.layers[:3]])
    direct = direct / np.abs(direct).max(axis=1, keepdims=True)
    assert np.abs(scaled - direct).max() < 2e-3


def test_content_addressed(store):
    record = synthetic_record(4)
    first = ingest_record(store, record, {"name": "a"})
    again = ingest_record(store, record, {"name": "a"})
    assert again.skipped and again.model_id == first.model_id
    changed = ingest_record(store, synthetic_record(5), {"name": "a"})
    assert not changed.skipped
    models = store.models()
    assert list(models["version"]) == [1, 2] and list(models["model"]) == ["a", "a"]


def test_metadata_columns_and_bound_predicates(store):
    ingest_record(store, synthetic_record(6), {"Name": "x", "Task": "Detection", "My Extra": "yes"})
    ingest_record(store, synthetic_record(7), {"Name": "y", "Task": "Classification"})
    models = store.models()
    assert "my_extra" in models.columns and list(models["my_extra"].fillna("-")) == ["yes", "-"]
    hostile = "Detection' OR '1'='1"
    assert store.layers("task = ?", [hostile]).empty
    assert set(store.layers("task = ?", ["Detection"])["model"]) == {"x"}
    n = sum(len(b) for b in store.iter_filters("3x3", "task = ?", ["Detection"]))
    assert n == 16 * 3 + 2 * 256
    counts = store.sql("SELECT model, n_filters FROM filter_counts WHERE kernel = ? ORDER BY model", ["3x3"])
    assert list(counts["n_filters"]) == [560, 560]
    with pytest.raises(StoreError, match="unknown column 'nope'"):
        store.sql("SELECT nope FROM models")
    with pytest.raises(StoreError, match="read-only"):  # the catalog is opened read-only for queries
        store.sql("DELETE FROM t_models")


def test_iter_filters_batches_and_layer_ids(store):
    ingest_record(store, synthetic_record(8))
    batches = list(store.iter_filters("3x3", batch_rows=100, with_layer_ids=True))
    assert [len(f) for f, _ in batches][:-1] == [100] * (len(batches) - 1)
    ids = np.concatenate([i for _, i in batches])
    layers = store.layers("kernel = ?", ["3x3"])
    assert np.array_equal(np.bincount(ids)[layers["layer_id"]], layers["n_filters"])
    assert list(store.iter_filters("7x7")) == []
    with pytest.raises(ValueError, match="batch_rows"):
        next(store.iter_filters(batch_rows=0))


def test_remove_and_stats(store):
    ingest_record(store, synthetic_record(9), {"name": "a"})
    ingest_record(store, synthetic_record(10), {"name": "b"})
    stats = store.stats()
    assert (stats.n_models, stats.n_layers, stats.n_filters) == (2, 8, 2 * (560 + 64))
    assert set(stats.shapes["kernel"]) == {"3x3", "1x1"}
    assert stats.shard_bytes > 2 * 560 * 18
    assert remove_models(store, "a") == [1]
    assert list(store.models()["model"]) == ["b"]
    assert len(list((store.root / "shards").rglob("*.arrow"))) == 2  # b's 3x3 and 1x1 shards
    with pytest.raises(StoreError, match="no model 'a'"):
        remove_models(store, "a")


def test_read_only_store_refuses_writes(tmp_path):
    init_store(tmp_path / "zoo")
    store = open_store(tmp_path / "zoo")
    with pytest.raises(StoreError, match="read-only"):
        ingest_record(store, synthetic_record(11))


def test_garbage_is_collected_by_the_next_writer(store):
    ingest_record(store, synthetic_record(12))
    orphan = store.root / "shards" / "3x3" / ("de" * 16 + ".arrow")  # the names a killed writer leaves
    orphan.write_bytes(b"partial")
    (store.root / "tmp").mkdir(exist_ok=True)
    (store.root / "tmp" / ("ab" * 16 + ".arrow.part")).write_bytes(b"partial")
    assert sum(len(b) for b in open_store(store.root).iter_filters()) == 560  # invisible to readers
    writer = open_store(store.root, mode="a")
    ingest_record(writer, synthetic_record(13))
    assert not orphan.exists() and not any((store.root / "tmp").iterdir())


def test_metrics_stored_with_layers(store):
    pytest.importorskip("filterdb.metrics")
    ingest_record(store, synthetic_record(14))
    layers = store.layers()
    assert layers["sparsity"].notna().all()
    assert layers["variance_entropy"].notna().all()


def test_public_store_helpers(tmp_path):
    from filterdb.store import as_store

    root = tmp_path / "zoo"
    store = init_store(root)
    first = ingest_record(store, synthetic_record(1), {"Name": "a"})
    assert store.catalog.hashes() == {first.sha256}
    again = store.existing(first.sha256)
    assert again.skipped and (again.model_id, again.model, again.n_filters) == (first.model_id, "a", first.n_filters)
    with pytest.raises(StoreError, match="no model with sha256"):
        store.existing("0" * 64)
    assert as_store(store, "a") is store
    reader = as_store(root)
    assert reader.read_only and reader.catalog.hashes() == {first.sha256}
    with pytest.raises(StoreError, match="opened read-only"):
        as_store(reader, "a")


# -- the store takes metrics from its callers; it never runs the health check itself ------------------------

def test_store_ingest_requires_metrics_by_keyword(store):
    with pytest.raises(TypeError, match="metrics"):
        store.ingest(synthetic_record(20))  # a loud error beats silently losing the verdicts
    assert store.models().empty


def test_store_ingest_stores_the_metrics_it_is_given(store):
    """Hand-written rows, values no health check would compute: the store keeps exactly what it is given."""
    record = synthetic_record(21)
    names = [layer.name for layer in record.layers]
    rows = [{"name": name, "sparsity": 0.125 * i, "n_nonfinite": i, "verdicts": ["hand-made"] if i else []}
            for i, name in enumerate(names)]
    store.ingest(record, {"Name": "given"}, metrics=rows)
    layers = store.layers().sort_values("layer_index")
    assert list(layers["sparsity"]) == [0.125 * i for i in range(len(names))]
    assert list(layers["n_nonfinite"]) == list(range(len(names)))
    assert [list(v) for v in layers["verdicts"]] == [[]] + [["hand-made"]] * (len(names) - 1)
    assert layers["variance_entropy"].isna().all()  # not given: NULL, not computed


def test_store_ingest_without_metrics_stores_null(store):
    store.ingest(synthetic_record(22), metrics=None)
    layers = store.layers()
    assert layers["sparsity"].isna().all() and layers["verdicts"].isna().all()


def test_store_refuses_metrics_of_another_model_and_computing_them(store):
    from filterdb.check import check_model
    from filterdb.errors import UsageError
    from filterdb.store import prepare_model

    other = check_model(synthetic_record(23, n_layers=2)).layers
    with pytest.raises(UsageError, match="the metrics table has layers"):
        store.ingest(synthetic_record(24), metrics=other)
    with pytest.raises(UsageError, match="does not compute metrics"):
        prepare_model(synthetic_record(24), metrics=True)
    assert store.models().empty


def test_ingest_record_computes_the_checks_metrics_and_fingerprint(store):
    from filterdb.check import check_model
    from filterdb.lineage import Fingerprint

    record = synthetic_record(25)
    result = ingest_record(store, record, {"Name": "checked"})
    expected = check_model(record).layers.set_index("name")
    stored = store.layers().set_index("layer")
    for column in ("sparsity", "variance_entropy", "orthogonality", "norm_l2"):
        np.testing.assert_allclose(stored.loc[expected.index, column], expected[column], rtol=1e-12)
    assert [list(v) for v in stored.loc[expected.index, "verdicts"]] == [list(v) for v in expected["verdicts"]]
    # the lineage cache `filterdb similar` reads, beside the pruning headroom the report reads (data/prune)
    files = list(store.root.rglob(f"{result.sha256}.npz"))
    fingerprints = [f for f in files if f.parent.name != "prune"]
    assert len(fingerprints) == 1 and Fingerprint.load(fingerprints[0]) is not None
    assert [f.parent.name for f in files if f not in fingerprints] == ["prune"]
    assert ingest_record(store.root, record).skipped  # known bytes: a no-op, by path too


def test_store_package_never_imports_the_health_check():
    """The store keeps metrics; the ingest layer computes them (filterdb.check imports nothing of the store)."""
    import ast
    from pathlib import Path

    import filterdb.store

    offenders = []
    for path in sorted(Path(filterdb.store.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names = [module + ("." if node.module else "") + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n in ("..check", "filterdb.check") or n.startswith(("..check.", "filterdb.check.")) for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
