"""The published CNN Filter DB HDF5 layout: import, export, round trip; Parquet export for DuckDB and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from filterdb.store import init_store
from filterdb.ingest import import_hdf5
from filterdb.store._exchange import export_hdf5, export_parquet

pytest.importorskip("tables")
h5py = pytest.importorskip("h5py")

MODELS = [  # model_id, Name, Task, Visual Category, Training-Dataset, layers as (conv_depth, n_filters)
    (0, "resnet18_imagenet", "Classification", "natural", "ImageNet1k", [(0, 192), (1, 4096), (2, 8192)]),
    (1, "unet_brain", "Segmentation", "medical mri", "BraTS", [(0, 32), (1, 1024)]),
    (7, "dcgan_disc", "GAN-Discriminator", "faces", "CelebA", [(0, 96), (1, 3072), (2, 64)]),
]


def write_published_layout(path, filter_key="filters"):
    """A file in the exact layout of the published dataset.h5, written with pandas and h5py."""
    rng = np.random.default_rng(0)
    rows, chunks, start, layer_id = [], [], 0, 0
    for model_id, name, task, category, data, layers in MODELS:
        depth = max(d for d, _ in layers)
        total = sum(n for _, n in layers)
        for conv_depth, n in layers:
            chunks.append(rng.normal(0, 0.05, (n, 9)).astype(np.float32))
            rows.append({
                "model_id": model_id, "conv_depth": conv_depth, "conv_depth_norm": conv_depth / depth,
                "layer_id": layer_id, "filter_ids": f"{start}:{start + n - 1}", "model": f"{name}.onnx",
                "producer": "pytorch", "op_set": 11, "depth": depth, "Name": name, "Paper": "https://arxiv.org/x",
                "Pretraining-Dataset": "", "Training-Dataset": data, "Visual Category": category, "Task": task,
                "Accessible": "yes", "Dataset URL": "https://data.example/" + data, "total_filters": total,
                "3x3_filter_share": 1.0, "(3, 3) filters": total, "Conv": len(layers),
            })
            start += n
            layer_id += 1
    meta = pd.DataFrame(rows).set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"])
    meta.to_hdf(path, key="meta", mode="w")
    filters = np.concatenate(chunks)
    with h5py.File(path, "a") as h5:
        h5.create_dataset(filter_key, data=filters)
    return meta, filters


@pytest.mark.parametrize("filter_key", ["filters", "filter"])
def test_import_published_layout(tmp_path, filter_key):
    _, filters = write_published_layout(tmp_path / "dataset.h5", filter_key)
    store = init_store(tmp_path / "zoo")
    results = import_hdf5(store, tmp_path / "dataset.h5")
    assert [r.model for r in results] == [m[1] for m in MODELS]
    models = store.models().set_index("model")
    assert models.loc["unet_brain", "task"] == "Segmentation"
    assert models.loc["unet_brain", "visual_category"] == "medical mri"
    assert models.loc["dcgan_disc", "dataset_url"] == "https://data.example/CelebA"
    assert models.loc["dcgan_disc", "accessible"] == "yes"
    layers = store.layers()
    assert list(layers["n_filters"]) == [n for m in MODELS for _, n in m[5]]
    assert list(layers["conv_depth"]) == [d for m in MODELS for d, _ in m[5]]
    raw = np.concatenate(list(store.iter_filters("3x3", scaled=False)))
    scale = store.layers()["scale"].repeat(layers["n_filters"]).to_numpy()[:, None]
    assert np.all(np.abs(raw - filters) <= 2.0**-11 * scale)
    assert all(r.skipped for r in import_hdf5(store, tmp_path / "dataset.h5"))  # content-addressed


def test_export_round_trip(tmp_path):
    meta, filters = write_published_layout(tmp_path / "dataset.h5")
    store = init_store(tmp_path / "zoo", dtype="float32")
    import_hdf5(store, tmp_path / "dataset.h5")
    n = export_hdf5(store, tmp_path / "out.h5")
    assert n == len(filters)
    out_meta = pd.read_hdf(tmp_path / "out.h5", "meta")
    assert list(out_meta.index.names) == ["model_id", "conv_depth", "conv_depth_norm", "layer_id"]
    with h5py.File(tmp_path / "out.h5", "r") as h5:
        exported = h5["filters"][:]
    assert exported.dtype == np.float32 and np.array_equal(exported, filters)  # float32 store: exact
    for (_, row), (_, orig) in zip(out_meta.reset_index().iterrows(), meta.reset_index().iterrows()):
        start, end = (int(x) for x in row["filter_ids"].split(":"))
        o_start, o_end = (int(x) for x in orig["filter_ids"].split(":"))
        assert end - start == o_end - o_start
        assert np.array_equal(exported[start : end + 1], filters[o_start : o_end + 1])
        for column in ("Name", "Task", "Visual Category", "Training-Dataset", "Paper"):
            assert row[column] == orig[column]
        assert row["conv_depth"] == orig["conv_depth"]
    again = init_store(tmp_path / "again", dtype="float32")
    import_hdf5(again, tmp_path / "out.h5")
    cols = ["model", "task", "visual_category", "training_dataset", "n_filters"]
    assert again.models()[cols].equals(store.models()[cols])


def test_export_selection(tmp_path):
    write_published_layout(tmp_path / "dataset.h5")
    store = init_store(tmp_path / "zoo")
    import_hdf5(store, tmp_path / "dataset.h5")
    n = export_hdf5(store, tmp_path / "seg.h5", where="task = ?", params=["Segmentation"])
    assert n == 32 + 1024
    assert set(pd.read_hdf(tmp_path / "seg.h5", "meta")["Name"]) == {"unet_brain"}


def test_parquet_export_for_duckdb_and_pandas(tmp_path):
    import duckdb

    _, filters = write_published_layout(tmp_path / "dataset.h5")
    store = init_store(tmp_path / "zoo")
    import_hdf5(store, tmp_path / "dataset.h5")
    out = tmp_path / "parquet"
    assert export_parquet(store, out) == len(filters)
    frame = pd.read_parquet(out / "filters.parquet")
    assert list(frame.columns) == ["layer_id"] + [f"f{i}" for i in range(9)]
    assert all(frame[f"f{i}"].dtype == np.float16 for i in range(9))
    assert np.allclose(frame[[f"f{i}" for i in range(9)]].to_numpy(np.float32), filters, atol=1e-3)
    con = duckdb.connect()
    per_task = con.execute(
        f"SELECT m.task, count(*) AS n FROM '{out}/filters.parquet' f JOIN '{out}/layers.parquet' l USING (layer_id) "
        f"JOIN '{out}/models.parquet' m ON m.model_id = l.model_id GROUP BY m.task ORDER BY m.task").fetchall()
    assert per_task == [("Classification", 12480), ("GAN-Discriminator", 3232), ("Segmentation", 1056)]
    mean = con.execute(f"SELECT avg(f4) FROM '{out}/filters.parquet'").fetchall()[0][0]
    assert mean == pytest.approx(float(filters[:, 4].mean()), abs=1e-4)
