"""import-hdf5 cost per model, before and after, measured side by side in one run.

A CNN Filter DB layout file of N one-filter models (tests/fuzz_hdf5.py ``many_models``: about 1 MiB, almost
no data) is imported into a fresh store, then imported again (every model already there). Both the source
tree of a baseline revision (``git archive``, default 9a01bfb: pandas.read_hdf, every model prepared and
handed to the store) and this checkout's ``src`` run the same steps in child processes, one after the other.

    PYTHONPATH=src .venv/bin/python bench/bench_import_hdf5.py [--models 1000] [--baseline 9a01bfb] [--repeat 1]

Prints seconds and milliseconds per model for each, and the ratio baseline / current.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# Run in a child with PYTHONPATH = one source tree: a fresh import, then a re-import, timed separately.
_CHILD = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from filterdb.ingest import import_hdf5
from filterdb.store import init_store
path, root = Path(sys.argv[1]), Path(sys.argv[2])
store = init_store(root)
t = time.perf_counter(); first = import_hdf5(store, path); fresh = time.perf_counter() - t
t = time.perf_counter(); again = import_hdf5(store, path); known = time.perf_counter() - t
assert not any(r.skipped for r in first) and all(r.skipped for r in again)
print(json.dumps({"fresh_s": fresh, "known_s": known, "models": len(first)}))
"""


def source_tree(revision: str, into: Path) -> Path:
    """The ``src`` folder of ``revision`` (git archive), extracted under ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run(src: Path, path: Path, root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(root)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--baseline", default="9a01bfb")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each tree; the best is kept")
    args = parser.parse_args()
    from fuzz_hdf5 import many_models

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = many_models(work / "dataset.h5", args.models)
        trees = {f"baseline {args.baseline}": source_tree(args.baseline, work / "baseline"), "current": ROOT / "src"}
        best: dict[str, dict] = {}
        for i in range(args.repeat):
            for name, src in trees.items():
                result = run(src, path, work / f"store-{i}-{name.split()[0]}")
                for key in ("fresh_s", "known_s"):
                    best.setdefault(name, {})[key] = min(best.get(name, {}).get(key, float("inf")), result[key])
        print(f"{args.models} one-filter models, {path.stat().st_size / 2**20:.1f} MiB file, best of {args.repeat}, "
              f"{time.strftime('%Y-%m-%d %H:%M')}")
        for name, r in best.items():
            print(f"  {name:<20} fresh import {r['fresh_s']:7.1f} s ({1000 * r['fresh_s'] / args.models:6.1f} ms/model)"
                  f"   re-import {r['known_s']:7.2f} s ({1000 * r['known_s'] / args.models:6.2f} ms/model)")
        base, cur = best[f"baseline {args.baseline}"], best["current"]
        print(f"  ratio baseline/current: fresh import {base['fresh_s'] / cur['fresh_s']:.1f}x, "
              f"re-import {base['known_s'] / cur['known_s']:.1f}x")


if __name__ == "__main__":
    main()
