"""Run one bench command in two checkouts, alternately, and compare their numbers run by run.

On a shared machine timings drift by tens of percent between minutes, so two versions are only comparable
when measured side by side: this runs the same command in checkout A and checkout B in turns (A B, B A,
A B, ...: neither always goes first), each with ``PYTHONPATH`` set to that checkout's ``src`` and the
checkout as working directory, and prints every run's numbers, the load average before it, the CPU seconds
of the whole command (``cpu_s``: user + system of all its processes, steadier than wall time when the
machine is crowded) and the ratio B / A of each round.

    python bench/bench_checkouts.py A B [-n 3] [--keys total_s,pca_s] [--json out.json] -- SCRIPT ARGS...

``SCRIPT`` is a path inside each checkout (``bench/bench_analysis.py``): each version runs its own copy.
The command's standard output is read as JSON (one document, or one per line); every number in it is
named by its path (``drift_depth_s``, ``1.filters_per_s.hist`` for the second line's entry). ``--keys``
picks the paths to show (default: all numbers; a key matches a path that ends with it).

Example (the numbers in bench/results/issue21_before_after.md)::

    nice -n 10 python bench/bench_checkouts.py /work/wt/base . -n 3 \\
        --keys total_s,pca_s,drift_visual_category_s,drift_depth_s,peak_rss_mb -- \\
        bench/bench_analysis.py full /tmp/z10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON document, by its dotted path (lists by index; booleans left out)."""
    out: dict[str, float] = {}
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[path] = float(value)
        else:
            out.update(numbers(value, path + "."))
    return out


def parse_output(text: str) -> Any:
    """The JSON a bench printed: one document, else one per non-empty line (a list of them)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        docs = []
        for line in text.splitlines():
            try:
                docs.append(json.loads(line))
            except ValueError:
                continue  # progress lines
        if not docs:
            raise SystemExit(f"no JSON in the command's output:\n{text[-2000:]}")
        return docs if len(docs) > 1 else docs[0]


def run_once(checkout: Path, command: list[str], python: str) -> tuple[dict[str, float], Any, float, float]:
    """(the numbers of one run, its whole output (texts such as checksums included), its wall seconds, the
    1-minute load average just before it)."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"))
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([python, *command], cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{checkout}: {' '.join(command)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    doc = parse_output(out.stdout)
    values = numbers(doc)

    # CPU seconds of the command and all its processes: on a crowded machine far steadier than wall time
    values["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return values, doc, wall, load


def pick(values: dict[str, float], keys: list[str]) -> dict[str, float]:
    if not keys:
        return values
    keys = [*keys, "cpu_s"]
    return {path: v for path, v in values.items() if any(path == k or path.endswith("." + k) for k in keys)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="the first checkout (the baseline)")
    ap.add_argument("b", type=Path, help="the second checkout (the version compared with it)")
    ap.add_argument("-n", "--rounds", type=int, default=3, help="rounds: each runs A and B once")
    ap.add_argument("--keys", default="", help="comma-separated number paths (or path endings) to show")
    ap.add_argument("--python", default=sys.executable, help="the interpreter both checkouts run under")
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    ap.add_argument("--warmup", action="store_true",
                    help="run each checkout once first, unrecorded (numba's cache, the page cache)")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        ap.error("give the bench command after --: ... -- SCRIPT ARGS...")
    cut = argv.index("--")
    args, command = ap.parse_args(argv[:cut]), argv[cut + 1:]
    checkouts = {"A": args.a.resolve(), "B": args.b.resolve()}
    keys = [k for k in args.keys.split(",") if k]
    print(f"A = {checkouts['A']}\nB = {checkouts['B']}\ncommand: {' '.join(command)}", flush=True)
    if args.warmup:
        for label in "AB":
            run_once(checkouts[label], command, args.python)
        print("warm-up: one unrecorded run each", flush=True)
    runs: list[dict[str, Any]] = []
    for rnd in range(1, args.rounds + 1):
        for label in ("AB" if rnd % 2 else "BA"):
            values, doc, wall, load = run_once(checkouts[label], command, args.python)
            shown = pick(values, keys)
            runs.append({"round": rnd, "version": label, "load": load, "wall_s": wall, "values": values,
                         "output": doc})
            print(f"round {rnd} {label}  load {load:4.2f}  wall {wall:6.1f} s  "
                  + "  ".join(f"{k}={v:.4g}" for k, v in shown.items()), flush=True)
    print("\nB / A per round (below 1: B smaller; for times, B faster; for rates, B slower):")
    paths = list(pick(runs[0]["values"], keys))
    for path in paths:
        ratios = []
        for rnd in range(1, args.rounds + 1):
            a, b = (next(r["values"].get(path) for r in runs if r["round"] == rnd and r["version"] == v)
                    for v in "AB")
            if a and b is not None:
                ratios.append(b / a)
        if ratios:
            print(f"  {path}: " + " ".join(f"{r:.3f}" for r in ratios)
                  + f"   median {statistics.median(ratios):.3f}  min {min(ratios):.3f}  max {max(ratios):.3f}")
    if args.json:
        args.json.write_text(json.dumps({"checkouts": {k: str(v) for k, v in checkouts.items()}, "command": command,
                                         "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
