"""filterdb.testing: the synthetic zoos hold what their documentation says, and the session zoo is read-only."""

from __future__ import annotations

import numpy as np
import pytest

from filterdb import ingest_record
from filterdb.manifest import load_manifest
from filterdb.store import StoreError
from filterdb.testing import (FIGURE_TASKS, ZOO_MODELS, category_record, figure_record, synthetic_record,
                              write_manifest)


def test_session_zoo_holds_the_documented_models_and_refuses_writes(synthetic_zoo):
    models = synthetic_zoo.models().sort_values("model_id")
    assert list(models["model"]) == [f"m{seed}" for seed, _, _ in ZOO_MODELS]
    assert list(models["visual_category"]) == [category for _, category, _ in ZOO_MODELS]
    assert list(models["task"]) == [task for _, _, task in ZOO_MODELS]
    assert list(synthetic_zoo.layers("model = ?", ["m0"])["kernel"]) == ["3x3"] * 3 + ["1x1"]
    assert synthetic_zoo.layers()["verdicts"].notna().all()  # ingested with the check's metrics
    with pytest.raises(StoreError, match="opened read-only"):
        ingest_record(synthetic_zoo, synthetic_record(1))


def test_figure_zoo_has_its_sparse_layer_and_tasks(figure_zoo):
    models = figure_zoo.models()
    assert sorted(models["model"]) == sorted(f"{t.lower()}-{m}" for t in FIGURE_TASKS for m in range(2))
    layers = figure_zoo.layers("model = ?", ["edges-0"]).set_index("layer")
    assert layers.loc["conv2", "sparsity"] >= 48 / 64  # 48 of 64 output channels zero
    assert layers.drop("conv2")["sparsity"].max() < 0.1


def test_builders_are_deterministic():
    for a, b in ((synthetic_record(3), synthetic_record(3)), (category_record(4, "medical"),
                                                              category_record(4, "medical"))):
        assert all(np.array_equal(x.weight, y.weight) for x, y in zip(a.layers, b.layers))
    first = figure_record(np.random.default_rng(0), "Edges", 0)
    again = figure_record(np.random.default_rng(0), "Edges", 0)
    assert np.array_equal(first.layers[2].weight, again.layers[2].weight)
    assert np.count_nonzero(np.abs(first.layers[2].weight).reshape(64, -1).max(axis=1)) == 16
    assert not np.array_equal(category_record(4, "medical").layers[0].weight,
                              category_record(4, "plants").layers[0].weight)


@pytest.mark.parametrize("suffix", [".csv", ".yaml", ".json"])
def test_write_manifest_writes_what_load_manifest_reads(tmp_path, suffix):
    rows = [{"file": "a.onnx", "name": "a", "task": "Classification", "visual_category": "natural",
             "training_dataset": "ImageNet", "note": "x, y"}]
    loaded = load_manifest(write_manifest(tmp_path / f"zoo{suffix}", rows))
    assert [r.metadata["name"] for r in loaded.rows] == ["a"] and loaded.rows[0].metadata["note"] == "x, y"
