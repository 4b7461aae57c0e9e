"""Realistic synthetic model zoos for testing the analyses at any size, without the 47 GB download.

What is "realistic" here (and where the numbers come from):

- Filters are correlated Gaussian 3x3 filters whose covariance has the published spectrum of trained
  filters (docs/reference.md §4: cumulative explained variance 0.40, 0.56, 0.66, 0.76, 0.83, 0.89, 0.93, 0.965, 1.0)
  with smooth, image-like eigen-images (constant, horizontal and vertical gradients, ... : a 2-D DCT basis,
  which is what the paper's eigen-images look like), a per-filter log-normal magnitude, and 2 % all-zero
  (pruned) filters.
- Metadata axes with the published imbalance: visual categories dominated by "natural" (557 of 647 models)
  with small outlier categories (medical, plants with a single model, textures, fractals, ...), tasks
  dominated by classification, a handful of architectures.
- Distribution shift where the paper found it: each visual category and task perturbs the spectrum and
  the mean a little (outliers more: plants, medical, textures, GAN discriminators, face detection), and
  the last depth decile is flatter (more random-like) than the others.

Filters are cut from per-(style, depth decile) pools of pre-generated filters, so that writing a zoo runs
at disk speed (a 1.4-billion-filter zoo is about 25 GB and takes a few minutes). Models are written with
the store's public API (``Store.ingest_prepared``), one shard per model, no layer metrics.

Usage::

    python bench/synthetic_zoo.py /tmp/zoo --filters 100_000_000 --models 647
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

RATIOS = np.diff([0.0, 0.40, 0.56, 0.66, 0.76, 0.83, 0.89, 0.93, 0.965, 1.0])
# (label, models out of 647, shift strength); "natural" dominates, "plants" has one model (as published)
CATEGORIES = [("natural", 557, 0.0), ("medical MRI", 8, 0.9), ("medical x-ray", 10, 0.7), ("plants", 1, 1.2),
              ("textures", 6, 0.8), ("fractals", 5, 0.7), ("handwriting", 12, 0.5), ("faces", 20, 0.3),
              ("sketches", 14, 0.4), ("remote sensing", 14, 0.3)]
TASKS = [("Classification", 0.62, 0.0), ("Segmentation", 0.12, 0.15), ("Detection", 0.1, 0.2),
         ("GAN-Discriminator", 0.05, 0.8), ("Face Detection", 0.04, 0.6), ("Super Resolution", 0.07, 0.3)]
ARCHITECTURES = ["ResNet", "VGG", "MobileNet", "DenseNet", "EfficientNet", "UNet"]
POOL_ROWS = 1 << 18


def dct_basis() -> np.ndarray:
    """Orthonormal 3x3 2-D DCT-II basis, rows ordered low to high frequency."""
    c = np.array([[np.cos(np.pi * (2 * n + 1) * k / 6) for n in range(3)] for k in range(3)])
    c[0] /= np.sqrt(2)
    c *= np.sqrt(2 / 3)
    basis = np.array([np.outer(c[i], c[j]).ravel() for i in range(3) for j in range(3)])
    order = np.argsort([i + j + 0.1 * i for i in range(3) for j in range(3)], kind="stable")
    return basis[order]


class Pools:
    """Pre-generated float16 filters per (category, task, depth decile) style; values in [-1, 1]."""

    def __init__(self, seed: int = 0, rows: int = POOL_ROWS) -> None:
        self.seed, self.rows = seed, rows
        self.basis = dct_basis()
        self.cache: dict[tuple[int, int, int], np.ndarray] = {}

    def get(self, cat: int, task: int, decile: int) -> np.ndarray:
        # natural-image models differ by task; the outlier categories by category (at most ~150 pools)
        key = (cat, task if cat == 0 else 0, decile)
        if key not in self.cache:
            self.cache[key] = self._make(*key)
        return self.cache[key]

    def _make(self, cat: int, task: int, decile: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, cat, task, decile])
        shift = CATEGORIES[cat][2] + TASKS[task][2]
        style = np.random.default_rng([self.seed, 7, cat, task])
        spectrum = RATIOS * np.exp(shift * style.normal(0, 0.6, 9))
        if decile == 9:
            spectrum = 0.6 * spectrum + 0.4 * spectrum.mean()  # deepest layers are flatter (random-like)
        mean = 0.25 * shift * style.normal(0, 1, 9) @ self.basis
        z = rng.standard_normal((self.rows, 9), dtype=np.float32) * np.sqrt(spectrum).astype(np.float32)
        x = z @ self.basis.astype(np.float32) + mean.astype(np.float32)
        x *= rng.lognormal(0, 0.5, self.rows).astype(np.float32)[:, None]
        x[rng.random(self.rows) < 0.02] = 0
        x /= np.abs(x).max()
        return x.astype(np.float16)


def zoo_models(n_models: int, seed: int = 0) -> list[dict[str, object]]:
    """Model metadata with the published imbalance, scaled to ``n_models``."""
    rng = np.random.default_rng(seed)
    total = sum(n for _, n, _ in CATEGORIES)
    cats: list[int] = []
    for i, (_, n, _) in enumerate(CATEGORIES[1:], start=1):
        cats += [i] * max(1, round(n * n_models / total))
    cats = cats[: max(n_models - 1, 0)]
    cats = [0] * (n_models - len(cats)) + cats
    rng.shuffle(cats)
    task_p = np.array([p for _, p, _ in TASKS])
    models = []
    for i, cat in enumerate(cats):
        task = int(rng.choice(len(TASKS), p=task_p / task_p.sum()))
        models.append({"name": f"synthetic-{i:04d}", "visual_category": CATEGORIES[cat][0], "task": TASKS[task][0],
                       "architecture": ARCHITECTURES[int(rng.integers(len(ARCHITECTURES)))], "_cat": cat,
                       "_task": task, "_size": float(rng.lognormal(0, 0.8))})
    return models


def layer_sizes(n_filters: int, rng: np.random.Generator) -> list[int]:
    """Conv layers of a model: widths growing with depth, summing to about n_filters."""
    n_layers = int(rng.integers(8, 40))
    widths = [16 * 2 ** min(int(4 * i / n_layers), 5) for i in range(n_layers)]
    raw = np.array([w * w for w in widths], np.float64)
    sizes = np.maximum(1, np.round(raw / raw.sum() * n_filters)).astype(np.int64)
    sizes[-1] += n_filters - sizes.sum()
    if sizes[-1] < 1:
        sizes[-1] = 1
    return sizes.tolist()


def conv_shape(count: int) -> int:
    """Output channels of a layer of ``count`` 3x3 filters: the largest divisor of ``count`` not above its square
    root, so that out x in = count exactly (the shape a store row must agree with)."""
    for out in range(int(math.isqrt(count)), 0, -1):
        if count % out == 0:
            return out
    return 1


def write_zoo(root: str | Path, n_filters: int, n_models: int = 647, *, seed: int = 0, progress: bool = True) -> dict:
    """Create a store at ``root`` holding about ``n_filters`` synthetic 3x3 filters in ``n_models`` models."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from filterdb.store import PreparedModel, init_store

    store = init_store(root)
    models = zoo_models(n_models, seed)
    sizes = np.array([m["_size"] for m in models])
    per_model = np.maximum(64, np.round(sizes / sizes.sum() * n_filters)).astype(np.int64)
    pools = Pools(seed)
    rng = np.random.default_rng(seed + 1)
    t0 = time.perf_counter()
    written = 0
    for i, (meta, n) in enumerate(zip(models, per_model.tolist())):
        layers = layer_sizes(n, rng)
        L = len(layers)
        chunks, rows = [], []
        for li, count in enumerate(layers):
            depth = li / (L - 1) if L > 1 else 0.0
            decile = 0 if depth <= 0.1 else min(9, math.ceil(depth * 10 - 1e-9) - 1)
            pool = pools.get(meta["_cat"], meta["_task"], decile)  # type: ignore[arg-type]
            left = count
            while left > 0:
                take = min(left, len(pool))
                start = int(rng.integers(0, len(pool) - take + 1))
                chunks.append(pool[start : start + take])
                left -= take
            out_channels = conv_shape(count)
            rows.append({"layer_index": li, "layer": f"conv{li}", "op_type": "Conv", "kind": "conv",
                         "shape": [out_channels, count // out_channels, 3, 3], "kernel": "3x3", "spatial_ndim": 2,
                         "groups": 1, "stride": None, "dilation": None, "n_filters": count, "conv_depth": li,
                         "conv_depth_norm": depth, "depth_source": "graph", "storage_dtype": "float32",
                         "notes": None, "scale": float(0.05 * rng.lognormal(0, 0.3))})
        values = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        sha = hashlib.sha256(f"synthetic-zoo/{seed}/{i}/{n}".encode()).hexdigest()
        model_row = {"model": meta["name"], "sha256": sha, "source": "synthetic", "path": None, "format": "synthetic",
                     "producer": "bench/synthetic_zoo.py", "producer_version": None, "opset": None,
                     "n_parameters": int(n) * 9, "size_bytes": None, "n_layers": L, "n_filters": int(n),
                     "op_counts": None, "notes": None, "visual_category": meta["visual_category"],
                     "task": meta["task"], "architecture": meta["architecture"]}
        store.ingest_prepared(PreparedModel(sha, model_row, rows, {"3x3": values}, ["3x3"] * L))
        written += int(n)
        if progress and (i % 50 == 0 or i == n_models - 1):
            rate = written / (time.perf_counter() - t0) / 1e6
            print(f"  model {i + 1}/{n_models}: {written / 1e6:.0f} M filters, {rate:.0f} M/s", file=sys.stderr)
    store.close()
    return {"n_filters": written, "n_models": n_models, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--filters", type=float, default=10e6)
    ap.add_argument("--models", type=int, default=647)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    info = write_zoo(a.root, int(a.filters), a.models, seed=a.seed)
    print(f"wrote {info['n_filters']:,} filters in {info['n_models']} models to {a.root} in {info['seconds']:.1f} s")


if __name__ == "__main__":
    main()
