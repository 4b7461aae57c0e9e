"""Fingerprints (version 3): sketches of each layer's largest kernels, matched by content across layers.

Checked against a brute-force reference of the documented definition (plain loops), and on real weights of
the corpus (docs/corpus.md): a model and its layer-permuted copy, YOLOv8n's ONNX graph and its own weights
saved in name order (another layer order), MTCNN's nets with 60 % of their channels pruned, and independently
trained real nets. A fingerprint stored by an older version is rebuilt.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from filterdb.lineage import Fingerprint, fingerprint, weights_of
from filterdb.lineage._fingerprint import (COARSE_KERNELS, COARSE_SCORE, FINGERPRINT_VERSION, KERNELS, TAPS,
                                           FingerprintStack, _null_order, score_stack)
from filterdb.lineage._store import FP_DERIVED
from filterdb.lineage._weights import ConvWeight, ModelWeights


def _score(a: Fingerprint, b: Fingerprint) -> float:
    return float(score_stack(a, FingerprintStack.of([b])).score[0])


def _permuted(w: ModelWeights, order: list[int]) -> ModelWeights:
    return ModelWeights(w.name + "-permuted", tuple(w.layers[i] for i in order), "f" * 64)


def _channel_pruned(w: ModelWeights, share: float) -> ModelWeights:
    """``share`` of every convolution's output channels removed (smallest L1, as L1 channel pruning does) and
    the same inputs removed from the next convolution that reads them (equal counts); the last one keeps its
    outputs (a head)."""
    layers, kept, outputs = [], None, -1
    for k, layer in enumerate(w.layers):
        x = layer.weight
        if kept is not None and x.shape[1] == outputs:
            x = x[:, kept]
        if k < len(w.layers) - 1 and x.shape[2:] != (1, 1):
            l1 = np.abs(x).reshape(x.shape[0], -1).sum(axis=1)
            kept = np.sort(np.argsort(-l1, kind="stable")[: max(1, round((1 - share) * x.shape[0]))])
            outputs = x.shape[0]
            x = x[kept]
        else:
            kept = None
        layers.append(ConvWeight(layer.name, np.ascontiguousarray(x), layer.storage_dtype))
    return ModelWeights(w.name + "-chan", tuple(layers), "e" * 64)


# ---- the definition, by brute force ----------------------------------------------------------------------------

def _reference(a: Fingerprint, b: Fingerprint, kernels: int = KERNELS) -> float:
    """The documented score with plain loops: for each sketched layer of one model, its best excess over chance
    among the other's layers of the same kernel size and channel counts within 4x; the mean over its layers;
    the mean of the two directions."""

    def mean_best(x: np.ndarray, y: np.ndarray) -> float:
        live_x = [v for v in x if np.any(v)]
        live_y = [v for v in y if np.any(v)]
        return float(np.mean([max(abs(float(np.dot(u, v))) for v in live_y) for u in live_x]))

    def direction(p: Fingerprint, q: Fingerprint, query_side: bool) -> float:
        sketched = [i for i in range(p.n_layers) if np.any(p.kernels[i])]
        total = 0.0
        for i in sketched:
            best = 0.0
            for j in range(q.n_layers):
                if not np.any(q.kernels[j]) or tuple(p.shapes[i, 2:]) != tuple(q.shapes[j, 2:]):
                    continue
                if any(min(p.shapes[i, d], q.shapes[j, d]) * 4 < max(p.shapes[i, d], q.shapes[j, d]) for d in (0, 1)):
                    continue
                x, y = p.kernels[i, :kernels].astype(np.float64), q.kernels[j, :kernels].astype(np.float64)
                order = _null_order(int(p.shapes[i, 2]), int(p.shapes[i, 3]))
                # the chance level: the same matching with the query's kernels turned a quarter (P⁻¹ q), i.e. the
                # stored kernels turned (P s) seen from the query, or the stored kernels turned seen from them
                sim = mean_best(x, y)
                null = mean_best(x, y[:, order]) if query_side else mean_best(x[:, order], y)
                best = max(best, min(1.0, max(0.0, (sim - null) / max(1e-6, 1 - null))))
            total += best
        return total / max(1, len(sketched))

    return 0.5 * (direction(a, b, True) + direction(b, a, False))


def _random_model(rng: np.random.Generator, name: str, shapes: list[tuple[int, ...]]) -> ModelWeights:
    scales = [rng.uniform(0.2, 2.0, size=(s[0], 1, 1, 1)) for s in shapes]  # channels of unequal size, as trained
    layers = tuple(ConvWeight(f"c{k}", (rng.normal(size=s) * scale).astype(np.float32))
                   for k, (s, scale) in enumerate(zip(shapes, scales)))
    return ModelWeights(name, layers, f"{rng.integers(1 << 60):064x}")


def test_vectorised_scores_equal_the_brute_force_definition():
    rng = np.random.default_rng(3)
    shapes = [(8, 3, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (12, 16, 2, 2), (10, 16, 1, 1), (6, 4, 1, 5)]
    models = [_random_model(rng, f"m{k}", [shapes[i] for i in rng.permutation(len(shapes))[:4]]) for k in range(5)]
    # a derived one: the first model with noise, so scores span the range
    first = models[0]
    models.append(ModelWeights("near", tuple(ConvWeight(l.name, l.weight + 0.3 * rng.normal(size=l.weight.shape)
                                                        .astype(np.float32)) for l in first.layers), "1" * 64))
    prints = [fingerprint(m) for m in models]
    stack = FingerprintStack.of(prints)
    seen = set()
    for q in prints:
        got = score_stack(q, stack).score
        for k, other in enumerate(prints):
            coarse = _reference(q, other, COARSE_KERNELS)
            if coarse >= COARSE_SCORE + 2e-3:  # passes the coarse pass: scored in full
                assert got[k] == pytest.approx(_reference(q, other), abs=2e-3), (q.name, other.name)
            elif coarse < COARSE_SCORE - 2e-3:  # keeps its coarse score
                assert got[k] == pytest.approx(coarse, abs=2e-3), (q.name, other.name)
            seen.add(coarse >= COARSE_SCORE)
    assert seen == {True, False}  # both paths taken


def test_a_model_and_its_layer_permuted_copy_score_as_identical(corpus_path):
    w = weights_of(corpus_path("onet.pt"), trust_pickle=True)
    order = list(range(len(w.layers)))[::-1]
    a, b = fingerprint(w), fingerprint(_permuted(w, order))
    result = score_stack(a, FingerprintStack.of([b]))
    assert result.identical[0]  # the same layer bytes, in another order
    assert result.score[0] == pytest.approx(1.0, abs=1e-3)  # float16 sketches


def test_yolo_and_its_own_weights_in_name_order(corpus_path, tmp_path):
    """nudenet's YOLOv8n ONNX graph and its conv weights saved as safetensors in name order: C2f blocks are listed
    in another order (slot-by-slot fingerprints scored this 0.298)."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    path = corpus_path("320n.onnx")
    tensors = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items()) if v.ndim == 4},
              str(tmp_path / "320n.safetensors"))
    a, b = weights_of(path), weights_of(tmp_path / "320n.safetensors")
    assert [layer.weight.shape for layer in a.layers] != [layer.weight.shape for layer in b.layers]  # another order
    assert _score(fingerprint(a), fingerprint(b)) == pytest.approx(1.0, abs=1e-3)  # float16 sketches
    assert score_stack(fingerprint(a), FingerprintStack.of([fingerprint(b)])).identical[0]


@pytest.mark.parametrize("name", ["pnet.pt", "rnet.pt", "onet.pt"])
def test_a_60_percent_channel_pruned_copy_stays_a_candidate(corpus_path, name):
    w = weights_of(corpus_path(name), trust_pickle=True)
    pruned = _channel_pruned(w, 0.6)
    assert any(p.weight.shape[0] < q.weight.shape[0] for p, q in zip(pruned.layers, w.layers))
    assert _score(fingerprint(w), fingerprint(pruned)) >= FP_DERIVED + 0.05  # measured 0.48-0.59
    # either way round: close (the chance level turns the query's kernels, so the two orders differ slightly)
    assert _score(fingerprint(pruned), fingerprint(w)) >= FP_DERIVED


def test_independent_real_nets_stay_below_the_threshold(corpus_path):
    names = ["pnet.pt", "rnet.pt", "onet.pt", "face_detection_short_range.tflite", "face_landmark.tflite",
             "ch_ppocr_mobile_v2.0_cls_infer.onnx"]
    prints = {n: fingerprint(weights_of(corpus_path(n), trust_pickle=True)) for n in names}
    for a, b in itertools.combinations(names, 2):
        assert _score(prints[a], prints[b]) < FP_DERIVED - 0.05, (a, b)  # measured at most 0.19


def test_fingerprint_fits_64_kb_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    big = ModelWeights("big", tuple(ConvWeight(f"c{k}", rng.normal(size=(64, 32, 5, 5)).astype(np.float32))
                                    for k in range(200)), "0" * 64)
    fp = fingerprint(big)
    fp.save(tmp_path / "fp.npz")
    assert (tmp_path / "fp.npz").stat().st_size <= 64 * 1024
    back = Fingerprint.load(tmp_path / "fp.npz")
    assert back is not None and np.array_equal(back.kernels, fp.kernels) and back.kernels.shape[1:] == (KERNELS, TAPS)


def test_a_fingerprint_of_an_older_version_is_rebuilt(tmp_path):
    from safetensors.numpy import save_file

    from filterdb import open_store
    from filterdb.ingest import ingest
    from filterdb.lineage import store_fingerprints
    from filterdb.store import model_data, put_model_data

    rng = np.random.default_rng(1)
    save_file({"c1.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
               "c2.weight": rng.normal(size=(16, 8, 3, 3)).astype(np.float32)}, str(tmp_path / "m.safetensors"))
    root = tmp_path / "zoo.fdb"
    ingest(root, [str(tmp_path / "m.safetensors")], create=True)
    store = open_store(root)
    sha = str(store.models()["sha256"].iloc[0])
    current = model_data(store, sha, "fingerprint")
    assert current is not None and int(current["version"]) == FINGERPRINT_VERSION
    # what version 2 stored: slot-by-slot channel vectors, no kernel sketches
    put_model_data(store, sha, "fingerprint", {"version": np.array(2, dtype=np.int32), "name": np.array("m"),
                                              "sha256": np.array(sha), "shapes": np.zeros((2, 3), np.int32),
                                              "hashes": np.zeros(2, np.uint64), "norms": np.ones(2, np.float32),
                                              "bits": np.full(2, 32, np.uint8),
                                              "channels": np.zeros((2, 8, 36), np.float16),
                                              "means": np.zeros((2, 8, 9), np.float16)})
    assert Fingerprint.from_arrays(model_data(store, sha, "fingerprint") or {}) is None  # not read as version 3
    prints = store_fingerprints(store)
    assert len(prints) == 1 and prints[0].kernels[:, 0].any()
    stored = model_data(store, sha, "fingerprint") or {}
    assert int(stored["version"]) == FINGERPRINT_VERSION  # rewritten in place
    assert Fingerprint.from_arrays(stored) is not None
