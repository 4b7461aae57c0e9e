"""Synthetic models and zoos with known filter distributions: deterministic (fixed seeds), no files needed.

- :func:`synthetic_record`: one small model (a stem, square layers, a 1x1 head), for store and ingest tests.
- :func:`category_record` / :data:`ZOO_MODELS` / :func:`build_synthetic_zoo`: seven models in three visual
  categories whose filter spectra and means differ by category (the groups that drift, PCA and degeneration
  compare).
- :func:`figure_record` / :func:`build_figure_zoo`: three tasks of visibly different filter families (smooth
  blobs, oriented edges, noise) with one known sparse layer, for figures and the zoo report.
- :func:`write_manifest`: manifest rows as CSV, YAML or JSON.

Models go into the store through :func:`filterdb.ingest_record`, like any in-memory model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..readers import make_layer
from ..types import ModelInfo, ModelRecord

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["CATEGORY_SHIFTS", "FIGURE_TASKS", "ZOO_MODELS", "build_figure_zoo", "build_synthetic_zoo",
           "category_record", "figure_record", "synthetic_record", "write_manifest"]

# visual category -> how far its filters' spectrum and mean move from the "natural" ones
CATEGORY_SHIFTS = {"natural": 0.0, "medical": 0.8, "plants": 1.5}

# (seed, visual category, task) of each model of build_synthetic_zoo, in ingest order (model "m<seed>")
ZOO_MODELS: tuple[tuple[int, str, str], ...] = (
    (0, "natural", "Classification"), (1, "natural", "Classification"), (2, "natural", "Detection"),
    (3, "natural", "Detection"), (4, "medical", "Classification"), (5, "medical", "Segmentation"),
    (6, "plants", "Classification"))

# task -> horizontal gradient added to a smooth blob (None: random noise), for build_figure_zoo
FIGURE_TASKS: dict[str, float | None] = {"Blobs": 0.0, "Edges": 1.5, "Noise": None}


def synthetic_record(seed: int, *, n_layers: int = 3, channels: int = 16, name: str | None = None,
                     kernel: int = 3, tiny: bool = False) -> ModelRecord:
    """A deterministic model: a 3-channel stem, then channels x channels layers, and one 1x1 layer ("head").

    ``tiny`` makes the square layers' weights ~1e-4 (float16 stores must scale them to keep precision).
    """
    rng = np.random.default_rng(seed)
    layers = [make_layer("stem", "Conv", rng.normal(0, 0.1, (channels, 3, kernel, kernel)))]
    for i in range(1, n_layers):
        scale = 1e-4 if tiny else 0.05
        layers.append(make_layer(f"conv{i}", "Conv", rng.normal(0, scale, (channels, channels, kernel, kernel))))
    layers.append(make_layer("head", "Conv", rng.normal(0, 0.1, (4, channels, 1, 1))))
    info = ModelInfo(source=name or f"synthetic-{seed}", format="synthetic")
    return ModelRecord(info=info, layers=tuple(layers))


def category_record(seed: int, category: str, n_layers: int = 3, channels: int = 24) -> ModelRecord:
    """Smooth (trained-looking) 3x3 filters whose spectrum and mean depend on ``category`` (a key of
    :data:`CATEGORY_SHIFTS`), ~5 % of output channels zero, depths set; then a 4-channel 1x1 "head"."""
    rng = np.random.default_rng(seed)
    shift = CATEGORY_SHIFTS[category]
    mix = np.eye(9) + 0.4 * np.random.default_rng(100 + int(10 * shift)).standard_normal((9, 9)) * (0.3 + shift)
    mean = shift * 0.3 * np.random.default_rng(200 + int(10 * shift)).standard_normal(9)
    layers = []
    for i in range(n_layers):
        cin = 3 if i == 0 else channels
        z = rng.standard_normal((channels * cin, 9)) @ mix + mean
        w = (z * rng.lognormal(0, 0.3, (channels * cin, 1)) * 0.05).reshape(channels, cin, 3, 3)
        w[rng.random(channels) < 0.05] = 0.0
        layer = make_layer(f"conv{i}", "Conv", w)
        layers.append(dataclasses.replace(layer, conv_depth=i, conv_depth_norm=i / (n_layers - 1)))
    layers.append(make_layer("head", "Conv", rng.standard_normal((4, channels, 1, 1))))
    return ModelRecord(ModelInfo(source=f"model-{seed}", format="synthetic"), tuple(layers))


def build_synthetic_zoo(path: str | os.PathLike[str], models: Sequence[tuple[int, str, str]] = ZOO_MODELS, *,
                        dtype: Literal["float16", "float32"] = "float16") -> Store:
    """A new store at ``path`` holding :func:`category_record` models (name "m<seed>", visual category, task),
    with metrics computed as ``filterdb ingest`` computes them; returned opened read-only."""
    from ..ingest import ingest_record
    from ..store import init_store, open_store

    with init_store(path, dtype=dtype) as store:
        for seed, category, task in models:
            ingest_record(store, category_record(seed, category),
                          {"Name": f"m{seed}", "Visual Category": category, "Task": task})
    return open_store(path)


def _figure_weights(rng: np.random.Generator, task: str, o: int = 64, i: int = 32) -> np.ndarray:
    shift = FIGURE_TASKS[task]
    if shift is None:
        return rng.standard_normal((o, i, 3, 3)).astype(np.float32)
    yy, xx = np.mgrid[-1:2, -1:2]
    base = np.exp(-(xx**2 + yy**2) / 2.0) + shift * xx
    return (rng.normal(size=(o, i, 1, 1)) * base + 0.3 * rng.standard_normal((o, i, 3, 3))).astype(np.float32)


def figure_record(rng: np.random.Generator, task: str, m: int, n_layers: int = 4) -> ModelRecord:
    """Model ``m`` of ``task`` (a key of :data:`FIGURE_TASKS`): n_layers layers of 64x32 3x3 filters drawn from
    ``rng``, depths set as a graph would; model 0 of "Edges" has a sparse conv2 (48 of 64 outputs zero)."""
    layers = []
    for k in range(n_layers):
        w = _figure_weights(rng, task)
        if task == "Edges" and m == 0 and k == 2:
            w[:48] = 0.0
        layer = make_layer(f"conv{k}", "Conv", w)
        layers.append(dataclasses.replace(layer, conv_depth=k, conv_depth_norm=k / (n_layers - 1),
                                          depth_source="graph"))
    return ModelRecord(ModelInfo(source=f"{task}-{m}.onnx", format="onnx"), tuple(layers))


def build_figure_zoo(path: str | os.PathLike[str], n_per_task: int = 2, n_layers: int = 4) -> Store:
    """A new store at ``path``: 3 tasks x ``n_per_task`` models of :func:`figure_record` ("blobs-0", ...,
    "noise-1"; training dataset "none" for the noise models, else "toy"); returned opened read-only."""
    from ..ingest import ingest_record
    from ..store import init_store, open_store

    rng = np.random.default_rng(0)
    with init_store(path) as store:
        for task in FIGURE_TASKS:
            for m in range(n_per_task):
                ingest_record(store, figure_record(rng, task, m, n_layers),
                              {"Name": f"{task.lower()}-{m}", "Task": task, "Visual Category": "synthetic",
                               "Training-Dataset": "none" if task == "Noise" else "toy"})
    return open_store(path)


def write_manifest(path: str | os.PathLike[str], rows: Sequence[Mapping[str, str]]) -> Path:
    """Write manifest rows as CSV, YAML (``{"models": rows}``) or JSON, by the path's suffix."""
    import json

    out = Path(os.fspath(path))
    if out.suffix == ".csv":
        import csv

        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            writer.writerows(rows)
    elif out.suffix in (".yaml", ".yml"):
        import yaml

        out.write_text(yaml.safe_dump({"models": [dict(r) for r in rows]}, sort_keys=False))
    else:
        out.write_text(json.dumps([dict(r) for r in rows], indent=1))
    return out
