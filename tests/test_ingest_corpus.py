"""The whole real corpus (docs/corpus.md) ingested with a manifest; the store's counts equal the files' counts."""

from __future__ import annotations

import pytest
from corpus import CORPUS

from filterdb import read_model
from filterdb.ingest import ingest
from filterdb.store import open_store
from filterdb.testing import write_manifest

TAXONOMY = {  # key prefix -> (Task, Visual Category, Training-Dataset)
    "pnet": ("Face Detection", "faces", "WIDER FACE"), "rnet": ("Face Detection", "faces", "WIDER FACE"),
    "onet": ("Face Landmarks", "faces", "CelebA"), "emotion": ("Emotion Recognition", "faces", "FER2013"),
    "face_": ("Face Detection", "faces", "unknown"), "iris": ("Landmarks", "faces", "unknown"),
    "ch_": ("OCR", "text", "unknown"), "320n": ("Object Detection", "natural", "unknown"),
    "nmp": ("Pitch Detection", "audio", "unknown"), "silero": ("Voice Activity Detection", "audio", "unknown"),
    "alex": ("Perceptual Similarity", "natural", "BAPPS"), "vgg": ("Perceptual Similarity", "natural", "BAPPS"),
    "squeeze": ("Perceptual Similarity", "natural", "BAPPS"),
}


def _taxonomy(key):
    return next(v for prefix, v in TAXONOMY.items() if key.startswith(prefix))


@pytest.mark.slow
@pytest.mark.corpus
def test_whole_corpus_with_manifest(tmp_path, corpus_path):
    for key in CORPUS:
        corpus_path(key)  # fetch (or skip when the package index cannot be reached)
    rows = []
    for key, entry in CORPUS.items():
        task, category, data = _taxonomy(key)
        rows.append({"file": entry.spec, "Name": f"{entry.format}/{key}", "Task": task, "Visual Category": category,
                     "Training-Dataset": data, "Framework": entry.format, "License": "see docs/corpus.md"})
    manifest = write_manifest(tmp_path / "corpus.yaml", rows)
    report = ingest(tmp_path / "zoo", manifest=manifest, trust_pickle=True, create=True, jobs=2)
    assert len(report.ingested) == len(CORPUS) and not report.failed
    store = open_store(tmp_path / "zoo")
    counts = store.sql("SELECT model, kernel, n_layers, n_filters FROM filter_counts")
    for key, entry in CORPUS.items():
        name = f"{entry.format}/{key}"
        record = read_model(entry.spec, trust_pickle=entry.trust_pickle)
        mine = counts[counts["model"] == name]
        expected: dict[str, int] = {}
        for layer in record.layers:
            k = "x".join(map(str, layer.kernel))
            expected[k] = expected.get(k, 0) + layer.n_filters
        assert dict(zip(mine["kernel"], mine["n_filters"])) == expected, name
        assert expected.get("3x3", 0) == entry.n_3x3, name
        if entry.n_conv is not None:
            n_2d = store.sql("SELECT count(*) AS n FROM layers WHERE model = ? AND spatial_ndim = 2", [name])
            assert n_2d["n"].item() == entry.n_conv, name
    # the paper's questions, in SQL over the views
    per_task = store.sql("SELECT task, sum(n_filters)::BIGINT AS n FROM layers WHERE kernel = ? GROUP BY task "
                         "ORDER BY n DESC", ["3x3"])
    assert per_task["n"].sum() == sum(e.n_3x3 for e in CORPUS.values())
    assert per_task.iloc[0]["task"] == "Object Detection"  # nudenet's YOLOv8n dominates
    per_category = store.sql("SELECT visual_category, count(*) AS n FROM models GROUP BY 1 ORDER BY 1")
    assert dict(zip(per_category["visual_category"], per_category["n"])) == {
        "audio": 4, "faces": 12, "natural": 4, "text": 3}
    sparse = store.sql(
        "SELECT model, avg(CASE WHEN list_contains(verdicts, 'sparse') THEN 1.0 ELSE 0.0 END) AS sparse_share, "
        "count(*) AS n_layers FROM layers WHERE spatial_ndim = 2 GROUP BY model ORDER BY model")
    assert len(sparse) == len(CORPUS) - 2  # the silero files hold no 2-D conv
    assert sparse["sparse_share"].between(0, 1).all()
    filled = store.sql("SELECT count(*) AS n FROM layers WHERE spatial_ndim = 2 AND sparsity IS NULL")
    assert filled["n"].item() == 0  # metrics were computed at ingest for every 2-D layer
