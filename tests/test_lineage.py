"""Model lineage from weights: compare / similar / lineage.

References are independent of the code under test: weights built here with numpy (float16 and int8 rounding,
batch-norm folding, channel pruning done by hand), a small family trained with torch whose lineage is known by
construction (filterdb.testing), and real copies of one model shipped in two formats (the corpus).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from filterdb.lineage import (
    LineageError,
    ModelWeights,
    compare,
    fingerprint,
    lineage,
    similar,
    weights_of,
)
from filterdb.lineage._compare import pair_layers
from filterdb.lineage._weights import ConvWeight
from filterdb.store import model_data

ROOT = Path(__file__).resolve().parents[1]


def _model(name: str, shapes: list[tuple[int, ...]], seed: int, *, smooth: bool = True) -> ModelWeights:
    """A chain of random convolutions; `smooth` gives the filters a shared low-frequency bias, like trained ones."""
    rng = np.random.default_rng(seed)
    layers = []
    for k, shape in enumerate(shapes):
        w = rng.normal(size=shape).astype(np.float32)
        if smooth and len(shape) == 4 and shape[2:] == (3, 3):
            w += 0.8 * np.array([[0.5, 1, 0.5], [1, 2, 1], [0.5, 1, 0.5]], dtype=np.float32) * rng.normal(size=shape[:2] + (1, 1))
        layers.append(ConvWeight(f"conv{k}", (w / np.sqrt(np.prod(shape[1:]))).astype(np.float32)))
    return ModelWeights(name, tuple(layers))


SHAPES = [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (64, 64, 1, 1)]


def _map(model: ModelWeights, name: str, fn, dtype: str = "float32") -> ModelWeights:  # noqa: ANN001
    return ModelWeights(name, tuple(ConvWeight(la.name, fn(la.weight).astype(np.float32), dtype)
                                    for la in model.layers))


def _int8(w: np.ndarray, per_channel: bool) -> np.ndarray:
    axes = tuple(range(1, w.ndim))
    scale = (np.abs(w).max(axis=axes, keepdims=True) if per_channel else np.abs(w).max()) / 127.0
    return np.clip(np.round(w / scale), -127, 127) * scale


def _pruned(model: ModelWeights, share: float = 0.3) -> ModelWeights:
    """Remove the `share` of each layer's output channels with the smallest L1 norm, and the inputs they fed."""
    layers, previous = [], None
    for la in model.layers:
        w = la.weight if previous is None else la.weight[:, previous]
        norms = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        keep = np.sort(np.argsort(-norms)[: w.shape[0] - round(share * w.shape[0])])
        layers.append(ConvWeight(la.name, np.ascontiguousarray(w[keep])))
        previous = keep
    return ModelWeights(model.name + "-pruned", tuple(layers))


# ---- compare on weights built by hand -------------------------------------------------------------------------

def test_identical_copy():
    a = _model("a", SHAPES, 0)
    result = compare(a, _map(a, "b", np.copy))
    assert result.relation == "identical" and result.score == 1.0 and result.parent is None
    assert all(layer.exact for layer in result.layers)


@pytest.mark.parametrize("make,dtype", [
    (lambda w: w.astype(np.float16), "float16"),
    (lambda w: _int8(w, per_channel=True), "int8"),
    (lambda w: _int8(w, per_channel=False), "int8"),
    (lambda w: w * np.linspace(0.2, 3.0, w.shape[0], dtype=np.float32).reshape(-1, *[1] * (w.ndim - 1)), "float32"),
])
def test_same_weights_under_rounding_and_folding(make, dtype):
    a = _model("a", SHAPES, 1)
    b = _map(a, "b", make, dtype)
    result = compare(a, b)
    assert result.relation == "same-weights", result.evidence
    if dtype != "float32":  # the lower-precision copy is the child
        assert result.parent == "a"


def test_small_change_everywhere_is_derived_not_same_weights():
    a = _model("a", SHAPES, 2)
    rng = np.random.default_rng(3)
    b = _map(a, "b", lambda w: w * 1.05 + 0.05 * np.abs(w).max() * rng.normal(size=w.shape))
    result = compare(a, b)
    assert result.relation == "derived"
    # b's weights grew, but norms alone never decide (weight decay shrinks them): direction unknown
    assert result.parent is None
    assert [s.kind for s in result.signals] == ["norm"] and result.signals[0].child is None


def test_pruned_is_derived_and_the_child():
    a = _model("a", SHAPES, 4)
    result = compare(_pruned(a), a)
    assert result.relation == "derived"
    assert result.parent == "b" and result.parent_confidence >= 0.9
    assert all(abs(m.share - 0.7) < 0.05 for m in result.layers)


def test_independent_same_architecture_is_unrelated():
    for seed in range(5, 9):
        result = compare(_model("a", SHAPES, seed), _model("b", SHAPES, seed + 100))
        assert result.relation == "unrelated", (seed, result.score)
        assert result.parent is None


def test_no_layer_in_common():
    a = _model("a", [(8, 1, 5, 5)], 0)
    b = _model("b", [(8, 1, 3, 3)], 0)
    result = compare(a, b)
    assert result.relation == "unrelated" and result.layers == ()
    assert "no convolution of A has a counterpart" in result.evidence[0]


def test_model_without_conv_layers(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "dense.safetensors"
    save_file({"fc.weight": np.ones((4, 4), dtype=np.float32)}, str(path))
    with pytest.raises(LineageError, match="no convolution layers"):
        compare(path, path)


def test_pairing_skips_inserted_and_pruned_layers():
    a = [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3)]
    b = [(11, 3, 3, 3), (8, 8, 1, 1), (22, 11, 3, 3), (45, 22, 3, 3), (10, 45, 1, 1)]
    assert pair_layers(a, b) == [(0, 0), (1, 2), (2, 3)]


def test_result_json_and_frame():
    a = _model("a", SHAPES, 0)
    result = compare(a, _pruned(a))
    data = json.loads(result.to_json())
    assert {"relation", "score", "parent", "parent_confidence", "layers"} <= set(data)
    assert len(result.to_frame()) == len(data["layers"]) == len(SHAPES)


# ---- fingerprints ---------------------------------------------------------------------------------------------

def test_fingerprint_fits_64_kb_for_a_large_model(tmp_path):
    # the size depends on the number of layers (at most 80 kept) and on 8 channels x 4 inputs each: a model
    # past all three limits has the largest fingerprint there is
    rng = np.random.default_rng(0)
    model = ModelWeights("big", tuple(ConvWeight(f"c{k}", rng.normal(size=(16, 8, 5, 5)).astype(np.float32))
                                      for k in range(120)), sha256="0" * 64)
    fp = fingerprint(model)
    fp.save(tmp_path / "fp.npz")
    assert (tmp_path / "fp.npz").stat().st_size <= 64 * 1024


# ---- a trained family: compare, similar, lineage --------------------------------------------------------------

@pytest.fixture(scope="session")
def family(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from filterdb.testing import load_family, make_family

    cache = Path(os.environ.get("FILTERDB_LINEAGE_FAMILY", tmp_path_factory.mktemp("family")))
    members = load_family(cache)
    if members is None or len({m.root for m in members}) < 2:
        members = make_family(cache, n_parents=2, epochs=1.5, children=("ft-long", "pruned", "ft-long-ft"))
    return members


def test_family_pairs_all_classified(family):
    from filterdb.testing import family_pairs

    weights = {m.name: weights_of(m.path, name=m.name) for m in family}
    wrong, directions = [], []
    for pair in family_pairs(family):
        result = compare(weights[pair.a], weights[pair.b])
        if result.relation != pair.relation:
            wrong.append((pair.a, pair.b, pair.relation, result.relation, result.score))
        if pair.parent is not None and result.parent is not None:
            directions.append(result.parent == pair.parent)
    assert not wrong
    # a parent named is right; plain fine-tunes (norms only) are "unknown", the pruned children and copies not
    assert all(directions) and len(directions) >= 2


@pytest.fixture(scope="session")
def family_store(family, tmp_path_factory):
    from filterdb.ingest import ingest

    root = tmp_path_factory.mktemp("store") / "zoo.fdb"
    ingest(root, [m.path for m in family], create=True)
    return root


def test_similar_and_lineage_on_a_store(family, family_store):
    from filterdb import open_store

    store = open_store(family_store)
    calls = []
    query = next(m.path for m in family if m.name == "p0-ft-long")
    result = similar(store, query, top=None, progress=lambda done, total, name: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]  # fingerprints computed once, with progress
    assert all(model_data(store, sha, "fingerprint") is not None for sha in store.models()["sha256"])
    family_of = {Path(m.path).name: m.root for m in family}
    assert {family_of[m.model] for m in result.matches} == {0}  # all of p0's family, nothing from p1's
    assert len(result.matches) == sum(r == 0 for r in family_of.values())
    assert result.matches[0].relation == "identical"
    again: list = []
    similar(store, next(m.path for m in family if m.name == "p1"), progress=lambda *a: again.append(a))
    assert len(again) == len(calls)  # cached: progress still counts the models, nothing is recomputed

    import filterdb

    forest = filterdb.lineage(store)  # the package, imported above, is callable as the function
    assert filterdb.compare is compare and filterdb.similar is similar
    roots = {}
    for k, fam in enumerate(forest.families):
        for model in fam:
            roots[model] = k
    by_file = {Path(m.path).name: m.root for m in family}
    assert len({roots[f] for f, r in by_file.items() if r == 0}) == 1
    assert len({roots[f] for f, r in by_file.items() if r == 1}) == 1
    assert roots["p0.pt"] != roots["p1.pt"]
    assert roots["p0-ft-long.pt"] == roots["p0-ft-long-ft.pt"]  # the chain (no direction evidence) in one family
    data = json.loads(forest.to_json())
    assert set(data) == {"families", "edges"} and {"parent", "child", "relation", "score"} <= set(data["edges"][0])


def test_ingest_writes_fingerprints_that_agree_with_the_stored_filters(family, tmp_path):
    """Fingerprints made at ingest from the read weights rank a query like those rebuilt from the float16 shards."""
    import shutil

    from filterdb import open_store
    from filterdb.ingest import ingest

    members = [m for m in family if m.root == 0][:4] + [m for m in family if m.root == 1][:2]
    root = tmp_path / "zoo.fdb"
    ingest(root, [m.path for m in members], create=True)
    store = open_store(root)
    assert all(model_data(store, sha, "fingerprint") is not None for sha in store.models()["sha256"])  # at ingest
    query = members[1].path
    at_ingest = similar(store, query, top=None)
    shutil.rmtree(root / "data" / "fingerprint")  # lost fingerprints: rebuilt from the shards
    computed: list = []
    from_shards = similar(open_store(root), query, top=None, progress=lambda *a: computed.append(a))
    assert len(computed) == len(members)
    # every relation is decided by the full comparison on the stored weights: the same with either fingerprints
    assert at_ingest == from_shards
    assert "identical" in {m.relation for m in at_ingest.matches}


def test_name_not_in_store(family_store):
    from filterdb import open_store

    with pytest.raises(LineageError, match="neither a model file nor a model of the store.*no model 'nope'"):
        similar(open_store(family_store), "nope")


def test_unrelated_real_models_near_the_fingerprint_threshold_stay_apart(corpus_path, tmp_path):
    """MediaPipe's face landmarks and BlazeFace, PP-OCR's recogniser and BlazeFace, PP-OCR's detector and its
    orientation classifier: independently trained, yet their fingerprints score 0.21-0.26 against the 0.2
    threshold. The full channel matching, run on the weights rebuilt from the store, keeps them apart."""
    from filterdb import open_store
    from filterdb.ingest import ingest

    keys = ["face_landmark.tflite", "face_detection_short_range.tflite", "ch_PP-OCRv4_rec_infer.onnx",
            "ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx"]
    root = tmp_path / "real.fdb"
    ingest(root, [str(corpus_path(k)) for k in keys], create=True)
    store = open_store(root)
    forest = lineage(store)
    assert all(len(f) == 1 for f in forest.families) and not forest.edges
    assert similar(store, str(corpus_path("face_landmark.tflite")), top=None).matches[0].relation == "identical"
    assert [m.relation for m in similar(store, str(corpus_path("face_landmark.tflite")), top=None).matches] == \
        ["identical"]


# ---- real copies from the corpus ------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,relation", [
    ("pnet.pt", "pnet.lz4", "identical"),  # facenet-pytorch's .pt and mtcnn's pickle: the same MTCNN weights
    ("emotion_model.hdf5", "emotion_model_quantized.tflite", "same-weights"),  # FER, Keras vs int8 TFLite
    ("nmp.onnx", "nmp.tflite", "identical"),  # Basic Pitch in two formats, layers listed in other orders
    ("pnet.pt", "emotion_model.hdf5", "unrelated"),
])
def test_corpus_pairs(corpus_path, corpus_entry, a, b, relation):
    result = compare(corpus_path(a), corpus_path(b), trust_pickle=True)
    assert result.relation == relation, result.evidence


# ---- the command line -----------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "filterdb", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli(family, family_store, tmp_path):
    paths = {m.name: m.path for m in family}
    run = _cli("compare", paths["p0"], paths["p0-pruned"], "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["relation"] == "derived" and data["parent"] == "a"
    run = _cli("compare", paths["p0-st"], paths["p1-st"])  # safetensors: no torch to import
    assert run.returncode == 0 and run.stdout.startswith("unrelated")
    run = _cli("similar", str(family_store), paths["p1-st"], "--json", "--top", "3")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data) == {"query", "matches"} and len(data["matches"]) == 3
    assert {"model", "relation", "score", "parent"} <= set(data["matches"][0])
    page = tmp_path / "lineage.html"
    run = _cli("lineage", str(family_store), "--json", "--html", str(page))
    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout)) == {"families", "edges"}
    assert "<img" in page.read_text()
    run = _cli("similar", str(family_store), "nope")
    assert run.returncode == 1 and "no model 'nope'" in run.stderr and "Traceback" not in run.stderr
    run = _cli("compare", "--store", str(family_store), "p0.pt", "p0-pruned.pt", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["relation"] == "derived"


def test_empty_store(tmp_path):
    from filterdb import init_store

    store = init_store(tmp_path / "empty.fdb")
    with pytest.raises(LineageError, match="holds no models"):
        lineage(store)
