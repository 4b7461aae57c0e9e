"""What keeping the pruning headroom costs `filterdb ingest`: this version beside one without it, side by side.

Each run is one child process that ingests a set of model files into a new store (``ingest(..., jobs=1)``); the
two versions (``--src``, this one, and ``--base-src``, e.g. main's ``src`` from before the headroom) alternate
run by run, so that both see the same load, and the ratio of their times is the cost. Wall time and CPU time (user
+ sys, from the children's rusage) per run, the median of ``--repeat``, the load (``uptime``) before and after.
Then, in this process and for this version only, the time of each step per set: reading the files, the layer
metrics and fingerprint (``check_model`` + ``lineage.fingerprint``) and the headroom (``prune.headroom``), and
the bytes the headroom adds to the store.

Sets: ``resnet50`` (torchvision's ResNet-50, random init, seed 0, as safetensors: written once by
bench_prune_speed.py's ``write_models``), ``trained`` (the three nets bench_prune.py trains, when its cache holds
them) and ``corpus`` (the real corpus files of docs/corpus.md, from the source cache).

    PYTHONPATH=src nice -n 10 .venv/bin/python bench/bench_ingest_headroom.py --base-src ../main/src \\
        [--repeat 3] [--out bench/results/ingest_headroom]

Results: OUT.json and OUT.md (docs/prune.md, "Headroom in a store").
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import median, save, summary, timed_child, uptime  # bench/_results.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

_CHILD = ("import sys; from filterdb.ingest import ingest; "
          "r = ingest(sys.argv[1], sys.argv[2:], create=True, jobs=1, trust_pickle=True); "
          "assert not r.failed, r.failed")


def model_sets() -> dict[str, list[Path]]:
    from bench_prune_speed import CACHE, write_models
    from corpus import CORPUS

    from filterdb.sources import resolve_source

    sets = {"resnet50": [write_models(CACHE)["safetensors"]]}
    trained = sorted(p for p in CACHE.glob("*.pt"))
    if trained:
        sets["trained"] = trained
    sets["corpus"] = [resolve_source(entry.spec).path for entry in CORPUS.values()]
    return sets


def run(files: list[Path], src: str) -> dict[str, float]:
    """One child process that ingests ``files`` into a new store: wall and CPU seconds."""
    folder = Path(tempfile.mkdtemp(prefix="fdb-headroom-"))
    try:
        return timed_child([sys.executable, "-c", _CHILD, str(folder / "zoo.fdb"), *map(str, files)],
                           {**os.environ, "PYTHONPATH": src})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def steps(files: list[Path]) -> dict[str, float]:
    """This version, in this process: seconds of each step over the set, and the headroom's bytes in a store."""
    from filterdb.check import check_model
    from filterdb.ingest import ingest
    from filterdb.lineage import LineageError, fingerprint, weights_of
    from filterdb.prune import headroom
    from filterdb.readers import ReadOptions, read_path

    out = {"read": 0.0, "metrics_and_fingerprint": 0.0, "headroom": 0.0}
    for path in files:
        t = time.perf_counter()
        record = read_path(path, ReadOptions(trust_pickle=True))
        out["read"] += time.perf_counter() - t
        t = time.perf_counter()
        check_model(record)
        try:
            fingerprint(weights_of(record))
        except LineageError:
            pass
        out["metrics_and_fingerprint"] += time.perf_counter() - t
        t = time.perf_counter()
        headroom(record)
        out["headroom"] += time.perf_counter() - t
    folder = Path(tempfile.mkdtemp(prefix="fdb-headroom-"))
    try:
        ingest(folder / "zoo.fdb", [str(p) for p in files], create=True, jobs=1, trust_pickle=True)
        data = folder / "zoo.fdb" / "data" / "prune"
        out["headroom_bytes"] = float(sum(p.stat().st_size for p in data.glob("*.npz")))
        out["store_bytes"] = float(sum(p.stat().st_size for p in (folder / "zoo.fdb").rglob("*") if p.is_file()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", default="src", help="the version measured (PYTHONPATH)")
    parser.add_argument("--base-src", required=True, help="a version without the headroom (its src folder)")
    parser.add_argument("--out", default="bench/results/ingest_headroom")
    args = parser.parse_args()
    sets = model_sets()
    versions = {"base": str(Path(args.base_src).resolve()), "this": str(Path(args.src).resolve())}
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "sets": {name: {"files": len(files), "mb": round(sum(p.stat().st_size for p in files) / 1e6, 1)}
                 for name, files in sets.items()},
        "versions": versions, "load_before": uptime()}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {v: {s: [] for s in sets} for v in versions}
    for _ in range(args.repeat):  # interleaved: both versions see the same load
        for name, files in sets.items():
            for version, src in versions.items():
                samples[version][name].append(run(files, src))
    result["load_after_runs"] = uptime()
    result["steps_this"] = {name: {k: round(v, 3) for k, v in steps(files).items()} for name, files in sets.items()}
    result["load_after"] = uptime()
    result["median"] = summary(samples, median)
    result["samples"] = samples
    save(result, Path(args.out), markdown(result, args.repeat))


def markdown(result: dict[str, Any], repeat: int) -> str:
    med = result["median"]
    lines = ["# `filterdb ingest` with and without the pruning headroom", "",
             f"machine: {result['machine']}; commit {result['commit']}; median of {repeat} interleaved runs, one "
             f"child process per ingest (jobs=1); versions: {result['versions']}", "",
             f"load before: `{result['load_before']}`", "", f"load after the runs: `{result['load_after_runs']}`", "",
             "| set | files | MB | base wall s | this wall s | wall ratio | base CPU s | this CPU s | CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, info in result["sets"].items():
        b, t = med["base"][name], med["this"][name]
        lines.append(f"| {name} | {info['files']} | {info['mb']} | {b['wall']:.2f} | {t['wall']:.2f} | "
                     f"{t['wall'] / b['wall']:.2f} | {b['cpu']:.2f} | {t['cpu']:.2f} | {t['cpu'] / b['cpu']:.2f} |")
    lines += ["", "Steps of this version, in one process (seconds over the set), and the bytes the headroom adds:", "",
              "| set | read | metrics + fingerprint | headroom | headroom / (metrics + fingerprint) | headroom bytes | "
              "store bytes |", "|---|---|---|---|---|---|---|"]
    for name, s in result["steps_this"].items():
        lines.append(f"| {name} | {s['read']:.2f} | {s['metrics_and_fingerprint']:.2f} | {s['headroom']:.2f} | "
                     f"{s['headroom'] / s['metrics_and_fingerprint']:.2f} | {int(s['headroom_bytes']):,} | "
                     f"{int(s['store_bytes']):,} |")
    lines += ["", f"load after: `{result['load_after']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
