"""Whole-process cost of ``filterdb check``: wall time and peak memory of a fresh ``python -m filterdb check``.

What a CI gate pays: interpreter start, imports, reading the model, the metrics, the output. Each run is a
fresh child process; peak memory is the child's maximum resident set size (``ru_maxrss``), measured by a
small wrapper process so that runs do not share a maximum.

Run by hand: ``PYTHONPATH=src .venv/bin/python bench/bench_check_process.py [--repeat 5] [KEY ...]``
(KEYs from tests/corpus.py, default 320n.onnx and onet.pt). Prints a Markdown table.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", default=["320n.onnx", "onet.pt"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
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
