"""Benchmark of model lineage (filterdb compare / similar / lineage) on a labelled set of real derivations.

Run by hand (the first run builds the labelled set: a few minutes of CPU; later runs reuse it):

    PYTHONPATH=src python bench/bench_lineage.py [--cache DIR] [--set tuning|held-out] [--exhaustive] [--costs]

The labelled set is bench/lineage_pairs.py: real pretrained CNNs of the corpus (MTCNN, YOLOv8n, PP-OCR,
MediaPipe, FER) and real derivations of them (fine-tunes with and without weight decay, magnitude and channel
pruning, a truncated re-headed backbone, a torch → ONNX export with batch norm folded, bfloat16 / float16 /
int8 copies, chains, siblings, same-architecture nets trained from scratch, real independent pairs).
On it, for `compare` (files): relation F1 (related vs unrelated) and four-way accuracy; on pairs with a true
parent: the direction right / wrong / unknown, wrong parents at confidence >= 0.9, a calibration table
(parents named at confidence >= c: share right) and each direction signal's own record; a table per
derivation class. Then every file goes into one store and `similar` / `lineage` are measured on it: recall of
related pairs (in one family; listed by `similar`), false families (unrelated pairs in one family), and
whether they give the relation and parent `compare` gives. ``--costs`` adds fingerprint size and time and a
`filterdb compare` of two 262k-filter models. Results: bench/results/lineage.json.
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from lineage_pairs import Pair, build  # noqa: E402

from filterdb.lineage import compare_weights, fingerprint, weights_of  # noqa: E402
from filterdb.lineage._fingerprint import FingerprintStack, score_stack  # noqa: E402
from filterdb.lineage._store import FP_DERIVED  # noqa: E402

LEVELS = (0.5, 0.75, 0.8, 0.9, 0.95, 0.99)


def _related(relation: str) -> bool:
    return relation != "unrelated"


def evaluate_compare(pairs: list[Pair], cache: Path) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """`compare` on every labelled pair (files read by filterdb's readers)."""
    weights: dict[str, Any] = {}

    def w(name: str) -> Any:
        if name not in weights:
            weights[name] = weights_of(str(cache / name), name=name, trust_pickle=True)
        return weights[name]

    confusion: collections.Counter[tuple[str, str]] = collections.Counter()
    per_class: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    named: list[tuple[float, bool]] = []  # (confidence, right) for every named parent, siblings included
    signal_record: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    rows, results = [], {}
    prints = {}
    for name in sorted({n for p in pairs for n in (p.a, p.b)}):
        prints[name] = fingerprint(w(name))
    stack = FingerprintStack.of(list(prints.values()))
    index = {name: k for k, name in enumerate(prints)}
    fp_scores = {name: score_stack(fp, stack) for name, fp in prints.items()}
    for p in pairs:
        r = compare_weights(w(p.a), w(p.b))
        results[(p.a, p.b)] = r
        confusion[(p.relation, r.relation)] += 1
        c = per_class[p.kind]
        c["pairs"] += 1
        c["relation right"] += r.relation == p.relation
        c["related right"] += _related(r.relation) == _related(p.relation)
        verdict = "-"
        if _related(p.relation) and p.relation != "identical":
            if r.parent is None:
                verdict = "unknown"
            else:
                verdict = "right" if r.parent == p.parent else "wrong"
                named.append((r.parent_confidence, verdict == "right"))
            c[f"direction {verdict}"] += 1
        if p.parent is not None:
            for s in r.signals:
                if s.child is not None:
                    signal_record[s.kind]["right" if s.child != p.parent else "wrong"] += 1
        rows.append({"kind": p.kind, "a": p.a, "b": p.b, "truth": p.relation, "parent": p.parent,
                     "relation": r.relation, "score": r.score, "named": r.parent,
                     "confidence": r.parent_confidence, "direction": verdict,
                     "fingerprint": round(float(fp_scores[p.a].score[index[p.b]]), 4),
                     "fingerprint_identical": bool(fp_scores[p.a].identical[index[p.b]]),
                     "signals": [f"{s.kind}:{s.child}" for s in r.signals]})
    tp = sum(v for (t, q), v in confusion.items() if _related(t) and _related(q))
    fp = sum(v for (t, q), v in confusion.items() if not _related(t) and _related(q))
    fn = sum(v for (t, q), v in confusion.items() if _related(t) and not _related(q))
    with_parent = [row for row in rows if row["parent"] is not None and row["truth"] != "identical"]
    right = sum(row["direction"] == "right" for row in with_parent)
    wrong = sum(row["direction"] == "wrong" for row in with_parent)
    unknown = sum(row["direction"] == "unknown" for row in with_parent)
    siblings_named = sum(row["direction"] == "wrong" for row in rows if row["kind"] == "siblings")
    out = {
        "pairs": len(pairs),
        "relation_accuracy": sum(v for (t, q), v in confusion.items() if t == q) / len(pairs),
        "f1_related": 2 * tp / max(1, 2 * tp + fp + fn),
        "confusion": {f"{t} -> {q}": v for (t, q), v in sorted(confusion.items())},
        "parent_pairs": len(with_parent),
        "direction_right_when_named": right / max(1, right + wrong),
        "direction_unknown_share": unknown / max(1, len(with_parent)),
        "direction": {"right": right, "wrong": wrong, "unknown": unknown},
        "siblings_given_a_parent": siblings_named,
        "wrong_parents_at_0.9": sum(1 for conf, ok in named if conf >= 0.9 and not ok),
        "calibration": [{"confidence_at_least": c, "named": sum(conf >= c for conf, _ in named),
                         "right": sum(conf >= c and ok for conf, ok in named),
                         "share_right": (sum(conf >= c and ok for conf, ok in named)
                                         / max(1, sum(conf >= c for conf, _ in named)))} for c in LEVELS],
        "signals": {k: dict(v) for k, v in sorted(signal_record.items())},
        "fingerprint": _fingerprint_margin(rows),
        "per_class": {k: dict(v) for k, v in sorted(per_class.items())},
        "rows": rows,
    }
    return out, results


def _fingerprint_margin(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fingerprint scores of the labelled pairs: lowest related, highest unrelated, and the misses at FP_DERIVED."""
    related = [r for r in rows if _related(r["truth"])]
    unrelated = [r for r in rows if not _related(r["truth"])]
    low = min(related, key=lambda r: 2.0 if r["fingerprint_identical"] else r["fingerprint"])
    high = max(unrelated, key=lambda r: r["fingerprint"])
    found = [r for r in related if r["fingerprint_identical"] or r["fingerprint"] >= FP_DERIVED]
    return {"threshold": FP_DERIVED, "lowest_related": [low["a"], low["b"], low["fingerprint"]],
            "highest_unrelated": [high["a"], high["b"], high["fingerprint"]],
            "margin": low["fingerprint"] - high["fingerprint"], "recall": len(found) / max(1, len(related)),
            "false_candidates": sum(r["fingerprint"] >= FP_DERIVED for r in unrelated),
            "missed": [[r["a"], r["b"], r["fingerprint"]] for r in related if r not in found]}


def evaluate_store(pairs: list[Pair], cache: Path, compared: dict[tuple[str, str], Any],
                   exhaustive: bool | None, families_only: bool = False) -> dict[str, Any]:
    """`similar`, `lineage` and the study's `lineage_of` (fingerprint candidates, each confirmed by the full
    comparison) on one store holding every file of the set."""
    from filterdb.ingest import ingest
    from filterdb.lineage import lineage, lineage_of, similar, stored_fingerprints
    from filterdb.store import open_store

    files = sorted({n for p in pairs for n in (p.a, p.b)})
    with tempfile.TemporaryDirectory() as tmp:
        ingest(Path(tmp) / "set.fdb", [str(cache / f) for f in files], create=True, trust_pickle=True)
        store = open_store(Path(tmp) / "set.fdb")
        models = store.sql("SELECT model, source, aliases FROM models")
        name_of = {}
        for model, source, aliases in zip(models["model"], models["source"], models["aliases"]):
            for f in files:
                if str(source).endswith(os.sep + f) or str(source) == f:
                    name_of[f] = str(model)
        start = time.perf_counter()
        study_forest = lineage_of(stored_fingerprints(store)[0], store)
        study = _families_record(study_forest, pairs, name_of, compared)
        study["seconds"] = time.perf_counter() - start
        study["edges_agreeing_with_relate_on_the_store"] = _edges_agree(study_forest, store)
        if families_only:
            return {"models": len(files), "lineage_of": study}
        start = time.perf_counter()
        forest = lineage(store, exhaustive=exhaustive)
        lineage_seconds = time.perf_counter() - start
        family = {m: k for k, fam in enumerate(forest.families) for m in fam}
        edges = {frozenset((e.parent, e.child)): e for e in forest.edges}
        related = [p for p in pairs if _related(p.relation)]
        together = sum(family.get(name_of.get(p.a)) == family.get(name_of.get(p.b)) for p in related)
        false_families = [(p.a, p.b) for p in pairs if not _related(p.relation)
                          and family.get(name_of.get(p.a)) == family.get(name_of.get(p.b))]
        listed, agree, disagree = 0, 0, []
        start = time.perf_counter()
        queries: dict[str, dict[str, Any]] = {}
        for p in related:
            if p.a not in queries:
                queries[p.a] = {m.model: m for m in similar(store, name_of[p.a], top=None,
                                                            exhaustive=exhaustive).matches}
            m = queries[p.a].get(name_of[p.b])
            listed += m is not None
            r = compared[(p.a, p.b)]
            parent_name = None if r.parent is None else name_of[p.a if r.parent == "a" else p.b]
            if m is not None and m.relation == r.relation and m.parent == parent_name:
                agree += 1
            else:
                disagree.append({"a": p.a, "b": p.b, "compare": [r.relation, r.score, parent_name],
                                 "similar": None if m is None else [m.relation, m.score, m.parent]})
        similar_seconds = (time.perf_counter() - start) / max(1, len(queries))
        edge_agree = 0
        for p in related:
            e = edges.get(frozenset((name_of[p.a], name_of[p.b])))
            if e is not None and e.relation == compared[(p.a, p.b)].relation:
                edge_agree += 1
    return {"models": len(files), "lineage_recall": together / max(1, len(related)),
            "false_families": len(false_families), "false_family_pairs": false_families,
            "similar_recall": listed / max(1, len(related)),
            "similar_agrees_with_compare": agree, "related_pairs": len(related), "disagreements": disagree,
            "families": [list(f) for f in forest.families if len(f) > 1],
            "edges": [e.__dict__ for e in forest.edges], "lineage_seconds": lineage_seconds,
            "similar_seconds_per_query": similar_seconds, "exhaustive": exhaustive, "lineage_of": study}


def _edges_agree(forest: Any, store: Any) -> list[int]:
    """[edges, those whose relation, score and parent are what relate() gives on the store's weights]."""
    from filterdb.lineage import relate, weights_from_store

    agree = 0
    for e in forest.edges:
        if e.relation == "identical" and not e.directed and e.score == 1.0:
            agree += 1  # an alias: the same bytes
            continue
        r = relate(weights_from_store(store, e.parent), weights_from_store(store, e.child))
        parent_ok = r.parent_name == e.parent if e.directed else r.parent is None
        agree += e.relation in (r.relation, "siblings") and abs(e.score - r.score) < 1e-4 and parent_ok
    return [len(forest.edges), agree]


def _families_record(forest: Any, pairs: list[Pair], name_of: dict[str, str],
                     compared: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Recall, false families and agreement with `compare` of one forest (the study's families)."""
    family = {m: k for k, fam in enumerate(forest.families) for m in fam}
    edges = {frozenset((e.parent, e.child)): e for e in forest.edges}
    related = [p for p in pairs if _related(p.relation)]
    together = sum(family.get(name_of.get(p.a)) == family.get(name_of.get(p.b)) for p in related)
    false = [(p.a, p.b) for p in pairs if not _related(p.relation)
             and family.get(name_of.get(p.a)) == family.get(name_of.get(p.b))]
    agree, on_edges = 0, 0
    for p in related:
        e = edges.get(frozenset((name_of[p.a], name_of[p.b])))
        if e is None:
            continue
        on_edges += 1
        r = compared[(p.a, p.b)]
        parent = None if r.parent is None else name_of[p.a if r.parent == "a" else p.b]
        same_parent = (e.parent == parent) if e.directed else parent is None
        agree += e.relation in (r.relation, "siblings") and abs(e.score - r.score) < 0.02 and same_parent
    return {"recall": together / max(1, len(related)), "false_families": len(false), "false_family_pairs": false,
            "labelled_pairs_on_edges": on_edges, "edges_agreeing_with_compare": agree}


def report(result: dict[str, Any]) -> str:
    """The tables of docs/lineage.md (markdown)."""
    c = result["compare"]
    lines = ["| class | pairs | relation right | direction right | wrong | unknown |", "|---|---|---|---|---|---|"]
    for kind, v in c["per_class"].items():
        lines.append(f"| {kind} | {v.get('pairs', 0)} | {v.get('relation right', 0)} | {v.get('direction right', 0)} "
                     f"| {v.get('direction wrong', 0)} | {v.get('direction unknown', 0)} |")
    lines += ["", "| class | fingerprint score (lowest – highest) |", "|---|---|"]
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for row in c["rows"]:
        by_kind[row["kind"]].append(1.0 if row["fingerprint_identical"] else row["fingerprint"])
    for kind, values in sorted(by_kind.items()):
        lines.append(f"| {kind} | {min(values):.3f} – {max(values):.3f} |")
    lines += ["", "| confidence ≥ | parents named | right | share right |", "|---|---|---|---|"]
    for row in c["calibration"]:
        lines.append(f"| {row['confidence_at_least']} | {row['named']} | {row['right']} | {row['share_right']:.3f} |")
    return "\n".join(lines)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "filterdb" / "lineage-pairs")
    parser.add_argument("--set", choices=("tuning", "held-out"), default="tuning",
                        help="the labelled set: the one thresholds and strengths were set on, or the held-out one "
                             "(other seeds, MediaPipe's iris net; never tuned on)")
    parser.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=None,
                        help="similar/lineage compare every same-architecture pair (default: automatic by store size)")
    parser.add_argument("--families-only", action="store_true",
                        help="compare, fingerprints and the study's families (lineage_of) only: no similar/lineage")
    parser.add_argument("--costs", action="store_true", help="also measure fingerprint and compare costs")
    parser.add_argument("--out", default=None, help="default: bench/results/lineage[-heldout].json")
    args = parser.parse_args()
    stem = ("lineage-heldout" if args.set == "held-out" else "lineage") + ("-families" if args.families_only else "")
    args.out = args.out or str(ROOT / "bench" / "results" / f"{stem}.json")
    start = time.perf_counter()
    pairs = build(args.cache, log=lambda m: print(m, file=sys.stderr), held_out=args.set == "held-out")
    results: dict[str, Any] = {"set": {"pairs": len(pairs), "files": len({n for p in pairs for n in (p.a, p.b)}),
                                       "build_seconds": time.perf_counter() - start}}
    results["compare"], compared = evaluate_compare(pairs, args.cache)
    results["store"] = evaluate_store(pairs, args.cache, compared, args.exhaustive, args.families_only)
    results["load"] = os.getloadavg()
    if args.costs:
        from filterdb.testing import load_family, make_family

        family = Path(tempfile.gettempdir()) / "filterdb-lineage-family"
        members = load_family(family) or make_family(family, n_parents=6, epochs=3.0)
        results["fingerprint"] = fingerprint_cost(members)
        with tempfile.TemporaryDirectory() as tmp:
            results["compare_250k"] = compare_big(Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    summary = {k: v for k, v in results["compare"].items() if k not in ("rows", "per_class", "calibration")}
    print(json.dumps({"set": args.set, "load": results["load"], "compare": summary,
                      "store": {k: v for k, v in results["store"].items() if k not in ("edges", "families")}},
                     indent=1, default=str))
    print(report(results))


if __name__ == "__main__":
    main()
