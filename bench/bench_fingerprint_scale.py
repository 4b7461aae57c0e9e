"""Fingerprint ranking at scale: one query against 10,000 stored fingerprints (`similar`'s candidate step on a
large store, and one row of the study's `lineage_of`).

    PYTHONPATH=src python bench/bench_fingerprint_scale.py [--models 10000] [--baseline REV]

The stored fingerprints are perturbed copies of real ones (YOLOv8n's 64 convolutions, MTCNN's nets, PP-OCR's
classifier, MediaPipe's face detector: corpus files, docs/corpus.md): their kernels get Gaussian noise and
are renormalised, so no two are equal and every one has a real model's layer shapes. Two zoos: noise 0.5 (the
copies stay weakly related to their model: a sixth of the store near each query, the worst case for the
coarse pass) and 2.0 (unrelated copies: a diverse store). The query is YOLOv8n
(64 convolutions, the deep case) and P-Net (5). ``--baseline REV`` also times the fingerprint module of a
git revision (the slot-by-slot version 2 before this one) on its own fingerprints of the same models, in the
same run, so the two are compared under the same load. Results: bench/results/fingerprint_scale.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from filterdb.lineage import _fingerprint as current  # noqa: E402
from filterdb.lineage import weights_of  # noqa: E402

CORPUS_FILES = ("320n.onnx", "pnet.pt", "rnet.pt", "onet.pt", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "face_detection_short_range.tflite")


def _module_at(rev: str) -> ModuleType:
    """The fingerprint module as it was at a git revision, imported inside filterdb.lineage (its relative
    imports resolve there)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/filterdb/lineage/_fingerprint.py"],
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("filterdb.lineage._fingerprint_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "filterdb.lineage"
    sys.modules[spec.name] = module
    exec(compile(source, f"{rev}:_fingerprint.py", "exec"), module.__dict__)  # noqa: S102  # our own source
    return module


def _perturbed(fp: Any, k: int, rng: np.random.Generator, field: str, noise: float) -> Any:
    """A copy of a fingerprint with noise on its unit vectors (``field``: kernels in v3, channels in v2)."""
    values = getattr(fp, field).astype(np.float32)
    live = np.abs(values).sum(-1, keepdims=True) > 0  # absent rows stay absent
    noisy = values + rng.normal(scale=noise, size=values.shape).astype(np.float32) * live
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.nan_to_num(noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)).astype(np.float16)
    kwargs = {f: getattr(fp, f) for f in fp.__dataclass_fields__}
    kwargs.update(name=f"synthetic-{k}", sha256=f"{k:064x}", hashes=fp.hashes + np.uint64(k + 1), **{field: unit})
    return type(fp)(**kwargs)


def rank(module: ModuleType, field: str, weights: list[Any], n: int, noise: float) -> dict[str, Any]:
    base = [module.fingerprint(w) for w in weights]
    rng = np.random.default_rng(0)
    zoo = [_perturbed(base[k % len(base)], k, rng, field, noise) for k in range(n)]
    start = time.perf_counter()
    stack = module.FingerprintStack.of(zoo)
    stack_seconds = time.perf_counter() - start
    out: dict[str, Any] = {"models": n, "noise": noise, "stack_seconds": round(stack_seconds, 3), "queries": {}}
    for w, fp in zip(weights[:2], base[:2]):
        times, cpu = [], []
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            module.score_stack(fp, stack)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        out["queries"][w.name] = {"layers": len(w.layers), "seconds": round(float(np.median(times)), 3),
                                  "cpu_seconds": round(float(np.median(cpu)), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--baseline", default=None, help="a git revision whose fingerprint module to time too")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.5, 2.0],
                        help="noise on the stored copies' unit vectors: 0.5 leaves them weakly related to their "
                             "model (every sixth stored model near the query), 2.0 makes them unrelated (a diverse "
                             "store, where the coarse pass leaves little for the full one)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fingerprint_scale.json"))
    args = parser.parse_args()
    from corpus import CORPUS

    from filterdb.sources import resolve_source

    weights = [weights_of(str(resolve_source(CORPUS[name].spec).path), name=name, trust_pickle=True)
               for name in CORPUS_FILES]
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    old = _module_at(args.baseline) if args.baseline else None
    for noise in args.noise:
        result[f"v{current.FINGERPRINT_VERSION}, noise {noise}"] = rank(current, "kernels", weights, args.models, noise)
        if old is not None:
            result[f"v{old.FINGERPRINT_VERSION} ({args.baseline}), noise {noise}"] = rank(old, "channels", weights,
                                                                                       args.models, noise)
    result["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
