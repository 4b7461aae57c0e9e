"""Whole-process cost of ``filterdb check``: wall time and peak memory of a fresh ``python -m filterdb check``.

What a CI gate pays: interpreter start, imports, reading the model, the metrics, the output. Each run is a
fresh child process; peak memory is the child's maximum resident set size (``ru_maxrss``), measured by a
small wrapper process so that runs do not share a maximum.

Run by hand: ``PYTHONPATH=src .venv/bin/python bench/bench_check_process.py [--repeat 5] [KEY ...]``
(KEYs from tests/corpus.py, default 320n.onnx and onet.pt). Prints a Markdown table.

``--baseline OTHER/src`` compares with another checkout (e.g. ``git worktree add /tmp/base main``): the two
are run alternately, run for run, so that both see the same machine load, and the table gives each one's
best and median and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from corpus import CORPUS  # noqa: E402
from filterdb.sources import resolve_source  # noqa: E402

_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)\n"
)


_READ_ONLY = "import sys; from filterdb import read_model; read_model(sys.argv[1])"


def measure(path: Path, repeat: int, read_only: bool = False) -> tuple[float, float]:
    """(best wall seconds, peak RSS MiB) of ``python -m filterdb check --json PATH`` over ``repeat`` runs
    (with ``read_only``: of a process that imports filterdb and reads the model, no metrics)."""
    best, peak = float("inf"), 0.0
    command = ["-c", _READ_ONLY, str(path)] if read_only else ["-m", "filterdb", "check", "--json", str(path)]
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, *command],
                             capture_output=True, text=True, env=os.environ, check=True).stdout.split()
        seconds, rss_kib, rc = float(out[0]), int(out[1]), int(out[2])
        if rc not in (0, 3):
            raise SystemExit(f"check of {path} exited with {rc}")
        best, peak = min(best, seconds), max(peak, rss_kib / 1024)
    return best, peak


def _one_run(command: list[str], pythonpath: str) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, *command],
                         capture_output=True, text=True, env=env, check=True).stdout.split()
    if int(out[2]) not in (0, 3):
        raise SystemExit(f"{command} exited with {out[2]}")
    return float(out[0])


def compare(path: Path, repeat: int, baseline: str) -> None:
    """Alternate runs of this checkout and ``baseline`` (a src folder); print best, median and ratio."""
    import statistics

    command = ["-m", "filterdb", "check", "--json", str(path)]
    ours = str(ROOT / "src")
    times: dict[str, list[float]] = {baseline: [], ours: []}
    for _ in range(repeat):
        for src in (baseline, ours):
            times[src].append(_one_run(command, src))
    base, new = times[baseline], times[ours]
    print(f"| {path.name} | {min(base):.2f} / {statistics.median(base):.2f} | {min(new):.2f} / "
          f"{statistics.median(new):.2f} | {statistics.median(new) / statistics.median(base):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", default=["320n.onnx", "onet.pt"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="src folder of another checkout to compare with, run alternately")
    args = parser.parse_args()
    if args.baseline:
        print(f"Python {sys.version.split()[0]}, {args.repeat} alternating runs each, load {os.getloadavg()[0]:.1f}\n")
        print("| model | baseline best / median (s) | this tree best / median (s) | median ratio |\n|---|---|---|---|")
        for key in args.keys:
            compare(resolve_source(CORPUS[key].spec).path, args.repeat, args.baseline)
        print(f"\nload at the end {os.getloadavg()[0]:.1f}")
        return
    print(f"Python {sys.version.split()[0]}, best of {args.repeat}\n")
    print("| model | size (KiB) | check, whole process (s) | peak RSS (MiB) | read only, whole process (s) | "
          "peak RSS (MiB) |\n|---|---|---|---|---|---|")
    for key in args.keys:
        path = resolve_source(CORPUS[key].spec).path
        seconds, peak = measure(path, args.repeat)
        read_seconds, read_peak = measure(path, args.repeat, read_only=True)
        print(f"| {key} | {path.stat().st_size / 1024:,.0f} | {seconds:.2f} | {peak:,.0f} | {read_seconds:.2f} | "
              f"{read_peak:,.0f} |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
