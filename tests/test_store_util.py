"""Helpers for the store tests (no tests here): synthetic records and store snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from filterdb.readers import make_layer
from filterdb.types import ModelInfo, ModelRecord


def synthetic_record(seed: int, *, n_layers: int = 3, channels: int = 16, name: str | None = None,
                     kernel: int = 3, tiny: bool = False) -> ModelRecord:
    """A deterministic model: a 3-channel stem, then channels x channels layers, and one 1x1 layer."""
    rng = np.random.default_rng(seed)
    layers = [make_layer("stem", "Conv", rng.normal(0, 0.1, (channels, 3, kernel, kernel)))]
    for i in range(1, n_layers):
        scale = 1e-4 if tiny else 0.05
        layers.append(make_layer(f"conv{i}", "Conv", rng.normal(0, scale, (channels, channels, kernel, kernel))))
    layers.append(make_layer("head", "Conv", rng.normal(0, 0.1, (4, channels, 1, 1))))
    info = ModelInfo(source=name or f"synthetic-{seed}", format="synthetic")
    return ModelRecord(info=info, layers=tuple(layers))


def snapshot(root: Path) -> tuple[object, ...]:
    """What a store holds: its catalog rows and its shard files (for "nothing changed" assertions)."""
    from filterdb.store import open_store

    store = open_store(root)
    models = store.sql("SELECT model_id, model, sha256 FROM t_models ORDER BY model_id").to_dict("records")
    layers = store.sql("SELECT count(*) AS n, coalesce(sum(n_filters), 0) AS f FROM t_layers").to_dict("records")
    files = sorted(str(p.relative_to(root)) for p in (root / "shards").rglob("*") if p.is_file()) \
        if (root / "shards").exists() else []
    return (tuple(tuple(sorted(m.items())) for m in models), tuple(tuple(sorted(x.items())) for x in layers),
            tuple(files))


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows as CSV, YAML or JSON by the path's suffix."""
    import json

    if path.suffix == ".csv":
        import csv

        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump({"models": rows}, sort_keys=False))
    else:
        path.write_text(json.dumps(rows, indent=1))
    return path


SRC = str(Path(__file__).resolve().parents[1] / "src")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + str(Path(__file__).parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_synthetic_ingest(root: str, seeds: list[int], channels: int) -> None:
    """Subprocess body: ingest synthetic models one by one, printing a line after each commit."""
    import sys

    from filterdb.store import open_store

    store = open_store(root, mode="a")
    print("ready", flush=True)
    for seed in seeds:
        result = store.ingest(synthetic_record(seed, channels=channels, n_layers=4), {"name": f"m{seed}"},
                              metrics=None)  # metrics cost time and do not change atomicity
        print(f"committed {seed} {int(result.skipped)}", flush=True)
    sys.stdout.flush()


def run_reader(root: str, seconds: float) -> None:
    """Subprocess body: query and stream a store in a loop; print how many rounds worked."""
    import time

    from filterdb.store import open_store

    store = open_store(root)
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        layers = store.layers("kernel = ?", ["3x3"])
        n = 0
        for batch in store.iter_filters("3x3", batch_rows=1 << 16):
            n += len(batch)
        # a model can be committed between the two calls: never fewer filters than the catalog said
        assert n >= int(layers["n_filters"].sum()), (n, int(layers["n_filters"].sum()))
        rounds += 1
    print(f"rounds {rounds}", flush=True)
