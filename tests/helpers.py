"""Helpers shared by several test files that are neither fixtures nor tests: store snapshots, the environment
and bodies of child processes, and an HTML anchor parser (synthetic models and zoos: filterdb.testing)."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from filterdb.cli import main
from filterdb.testing import synthetic_record


SRC = str(Path(__file__).resolve().parents[1] / "src")


def subprocess_env() -> dict[str, str]:
    """The environment of a child Python that imports filterdb from this checkout and these helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + str(Path(__file__).parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


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


class Anchors(HTMLParser):
    """The ids, link targets and images of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a)


def parse(text: str) -> Anchors:
    parser = Anchors()
    parser.feed(text)
    return parser


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run the `filterdb` command in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def planted_prune_weights() -> dict[str, Any]:
    """A three-conv chain with known prune headroom: conv1 16 channels of 3x3x3, 4 of them all zero; conv2 32
    channels of 16x3x3, 8 exact copies of 8 others; conv3 8 channels of 32x3x3 reads conv2 (the model output)."""
    import numpy as np

    rng = np.random.default_rng(5)
    w1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    w1[[1, 6, 9, 14]] = 0.0
    w2 = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    w2[24:] = w2[:8]
    w3 = rng.standard_normal((8, 32, 3, 3)).astype(np.float32)
    return {"conv1.weight": w1, "conv2.weight": w2, "conv3.weight": w3}
