"""Benchmark of model lineage (filterdb compare / similar / lineage) against a family with known lineage.

Run by hand (minutes: it trains the family first, or reuses it):

    PYTHONPATH=src python bench/bench_lineage.py --family /tmp/lineage-family --parents 6 --epochs 3

Measures, on every labelled pair of the family (filterdb.testing.family_pairs) plus real pairs of the corpus:
related-vs-unrelated F1, four-way accuracy, unrelated pairs called identical/same-weights, parent direction
on parent → child pairs, for `compare` (full weights) and for the fingerprints `similar` uses. Then the costs:
fingerprint size and time (against reading the model: a proxy for ingest), `similar` over 10,000 fingerprints
(a synthetic zoo made from the family's), and `filterdb compare` of two 250k-filter models, whole process.
Results go to bench/results/lineage.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from filterdb.lineage import compare_weights, fingerprint, weights_of  # noqa: E402
from filterdb.lineage._fingerprint import FingerprintStack, score_stack  # noqa: E402
from filterdb.lineage._store import FP_DERIVED, FP_SAME, similar_in  # noqa: E402
from filterdb.testing import family_pairs, load_family, make_family  # noqa: E402

CORPUS_PAIRS = [  # (a, b, relation): real copies shipped by two packages / in two formats, and unrelated models
    ("pnet.pt", "pnet.lz4", "identical"), ("rnet.pt", "rnet.lz4", "identical"), ("onet.pt", "onet.lz4", "identical"),
    ("emotion_model.hdf5", "emotion_model_quantized.tflite", "same-weights"),
    ("nmp.onnx", "nmp.tflite", "identical"),
    ("pnet.pt", "rnet.pt", "unrelated"), ("pnet.pt", "emotion_model.hdf5", "unrelated"),
    ("onet.pt", "emotion_model.hdf5", "unrelated"), ("nmp.onnx", "emotion_model.hdf5", "unrelated"),
    ("rnet.pt", "nmp.onnx", "unrelated"),
]


def _scores(confusion: collections.Counter) -> dict[str, float]:
    total = sum(confusion.values())
    right = sum(v for (t, p), v in confusion.items() if t == p)
    tp = sum(v for (t, p), v in confusion.items() if t != "unrelated" and p != "unrelated")
    fp = sum(v for (t, p), v in confusion.items() if t == "unrelated" and p != "unrelated")
    fn = sum(v for (t, p), v in confusion.items() if t != "unrelated" and p == "unrelated")
    bad = sum(v for (t, p), v in confusion.items() if t == "unrelated" and p in ("identical", "same-weights"))
    return {"pairs": total, "accuracy": right / total, "f1_related": 2 * tp / max(1, 2 * tp + fp + fn),
            "unrelated_called_same": bad}


def _fingerprint_relation(scores, j: int) -> str:  # noqa: ANN001
    if scores.identical[j]:
        return "identical"
    if scores.same_shapes[j] and scores.closeness[j] >= FP_SAME:
        return "same-weights"
    return "derived" if scores.score[j] >= FP_DERIVED else "unrelated"


def family_accuracy(members: list, corpus: dict[str, object]) -> dict[str, object]:
    weights = {m.name: weights_of(m.path, name=m.name) for m in members}
    weights.update(corpus)
    prints = {name: fingerprint(w) for name, w in weights.items()}
    names = list(prints)
    stack = FingerprintStack.of([prints[n] for n in names])
    index = {n: k for k, n in enumerate(names)}
    pairs = [(p.a, p.b, p.relation, p.parent, p.hard_negative) for p in family_pairs(members)]
    pairs += [(a, b, rel, None, False) for a, b, rel in CORPUS_PAIRS if a in corpus and b in corpus]
    full, fp_conf = collections.Counter(), collections.Counter()
    direction, fp_direction, seconds = [], [], []
    mistakes = []
    for a, b, relation, parent, _hard in pairs:
        start = time.perf_counter()
        result = compare_weights(weights[a], weights[b])
        seconds.append(time.perf_counter() - start)
        full[(relation, result.relation)] += 1
        if result.relation != relation:
            mistakes.append((a, b, relation, result.relation, result.score))
        scores = score_stack(prints[a], stack)
        j = index[b]
        fp_conf[(relation, _fingerprint_relation(scores, j))] += 1
        if parent is not None:
            direction.append(result.parent == parent)
            fp_direction.append((scores.parent[j] > 0) == (parent == "a") and scores.parent[j] != 0)
    kinds = collections.Counter(rel for _, _, rel, _, _ in pairs)
    return {
        "pairs": dict(kinds), "hard_negatives": sum(h for *_, h in pairs),
        "compare": {**_scores(full), "direction": float(np.mean(direction)), "direction_pairs": len(direction),
                    "confusion": {f"{t} -> {p}": v for (t, p), v in sorted(full.items())},
                    "median_seconds_per_pair": float(np.median(seconds)), "mistakes": mistakes},
        "fingerprints": {**_scores(fp_conf), "direction": float(np.mean(fp_direction)),
                         "confusion": {f"{t} -> {p}": v for (t, p), v in sorted(fp_conf.items())}},
    }


def fingerprint_cost(members: list) -> dict[str, float]:
    """Fingerprint size, and its time against a real ingest of the same files (read, metrics, store write)."""
    from filterdb.ingest import ingest

    sizes, fp_time = [], []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ingest(Path(tmp) / "zoo.fdb", [m.path for m in members], create=True)
        ingest_seconds = time.perf_counter() - start
        for m in members:
            w = weights_of(m.path)
            start = time.perf_counter()
            fp = fingerprint(w)
            fp_time.append(time.perf_counter() - start)
            path = Path(tmp) / "fp.npz"
            start = time.perf_counter()
            fp.save(path)
            fp_time[-1] += time.perf_counter() - start
            sizes.append(path.stat().st_size)
    return {"max_bytes": max(sizes), "fingerprint_seconds": float(np.sum(fp_time)),
            "ingest_seconds": ingest_seconds, "share_of_ingest": float(np.sum(fp_time) / ingest_seconds)}


def similar_at_scale(members: list, n: int = 10_000) -> dict[str, float]:
    """`similar` over n fingerprints: the family's, and perturbed / re-architected copies of them."""
    base = [fingerprint(weights_of(m.path, name=m.name)) for m in members]
    rng = np.random.default_rng(0)
    zoo = []
    for k in range(n):
        fp = base[k % len(base)]
        channels = fp.channels.astype(np.float32) + rng.normal(scale=0.5, size=fp.channels.shape)
        zoo.append(type(fp)(f"synthetic-{k}", f"{k:064x}", fp.shapes, fp.hashes + np.uint64(k + 1), fp.norms,
                            fp.bits, (channels / np.linalg.norm(channels, axis=-1, keepdims=True)).astype(np.float16),
                            fp.means))
    start = time.perf_counter()
    stack = FingerprintStack.of(zoo)
    build = time.perf_counter() - start
    times, cpu = [], []
    for query in base[:3]:
        start, start_cpu = time.perf_counter(), time.process_time()
        similar_in(query, stack, top=10)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"models": n, "query_layers": int(base[0].n_layers), "stack_seconds": build,
            "query_seconds": float(np.median(times)), "query_cpu_seconds": float(np.median(cpu))}


def compare_big(tmp: Path) -> dict[str, float]:
    """`filterdb compare` (whole process) of two models of ~250k 3x3 filters: a model and a fine-tuned copy."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    shapes = [(64, 3, 3, 3)] + [(128, 128, 3, 3)] * 8 + [(256, 256, 3, 3)] * 2  # 262,336 filters
    a = {f"layer{k}.conv.weight": rng.normal(size=s).astype(np.float32) for k, s in enumerate(shapes)}
    b = {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32) for k, v in a.items()}
    save_file(a, str(tmp / "a.safetensors"))
    save_file(b, str(tmp / "b.safetensors"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "filterdb", "compare", str(tmp / "a.safetensors"),
                          str(tmp / "b.safetensors"), "--json"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"filters": int(sum(s[0] * s[1] for s in shapes)), "seconds": seconds, "cpu_seconds": cpu,
            "relation": json.loads(run.stdout)["relation"] if run.returncode == 0 else run.stderr[-200:]}


def corpus_weights() -> dict[str, object]:
    try:
        from corpus import CORPUS

        from filterdb.sources import resolve_source
    except ImportError:
        return {}
    out = {}
    for key in sorted({k for a, b, _ in CORPUS_PAIRS for k in (a, b)}):
        try:
            out[key] = weights_of(resolve_source(CORPUS[key].spec).path, name=key, trust_pickle=True)
        except Exception as e:  # noqa: BLE001 - an unavailable corpus file only drops its pairs
            print(f"corpus file {key} not available: {e}", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default=str(Path(tempfile.gettempdir()) / "filterdb-lineage-family"))
    parser.add_argument("--parents", type=int, default=6)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lineage.json"))
    args = parser.parse_args()
    members = load_family(args.family)
    if members is None:
        start = time.perf_counter()
        members = make_family(args.family, n_parents=args.parents, epochs=args.epochs)
        print(f"trained the family in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    results = {"family": {"members": len(members), "parents": len({m.root for m in members})}}
    results["accuracy"] = family_accuracy(members, corpus_weights())
    results["fingerprint"] = fingerprint_cost(members)
    results["similar"] = similar_at_scale(members)
    with tempfile.TemporaryDirectory() as tmp:
        results["compare_250k"] = compare_big(Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
