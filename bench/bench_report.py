"""Benchmark of the zoo report (``filterdb report``, the demo's report step): wall and CPU time of the whole
build — the study (``filterdb.study``) and the page that lays it out —, for this checkout and, in the same run,
for a baseline commit (before / after under the same load). A baseline from before the study existed builds
its report from the store directly (its own analyses): the same work, the same page's worth of numbers.

Run by hand (not by the tests)::

    python bench/bench_report.py STORE [--baseline REF] [--repeat 3] [--out bench/results/report.md]

STORE is a filter store, e.g. the demo's (``filterdb demo --workdir /tmp/fdemo`` builds
``/tmp/fdemo/store.fdb``). Each build runs in a fresh process (imports included, as a user runs it); runs of
the versions alternate so that all see the same machine load. The baseline's ``src`` is extracted with
``git archive`` into a temporary folder. Reports wall seconds (median and best) and the CPU seconds of the
process and its children (median): on a shared machine the CPU time is the steadier number. This checkout
runs twice per round: with an empty figure cache (every figure drawn, a first report), then with the cache
that run filled (the per-model figures read back: a second report of an unchanged store).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = """
import sys, time
from filterdb.report import write_zoo_report
try:
    from filterdb.analysis import study  # the report lays out a Study
except ImportError:  # a baseline whose report ran its own analyses on the store
    study = None
t = time.perf_counter()
write_zoo_report(sys.argv[1], study(sys.argv[2]) if study is not None else sys.argv[2])
print(time.perf_counter() - t)
"""


def extract(ref: str, folder: Path) -> Path:
    """The ``src`` folder of git ``ref`` under ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    path = folder / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def one_run(src: Path, store: str, out: Path, cache: Path) -> tuple[float, float, float]:
    """(wall seconds of the process, seconds inside the build, CPU seconds of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", BUILD, str(out), store], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(src), "FILTERDB_CACHE_DIR": str(cache)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, float(done.stdout.strip().splitlines()[-1]), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--baseline", default=None, help="git ref to compare with (e.g. HEAD~3)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        versions = {"this checkout, figures drawn": ROOT / "src",
                    "this checkout, figures cached": ROOT / "src"}
        if args.baseline:
            versions[f"baseline {args.baseline}"] = extract(args.baseline, Path(tmp))
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in versions}
        for i in range(args.repeat):
            for name, src in versions.items():
                # this checkout draws into cache-i, then reads it back; the baseline has no figure cache
                cache = Path(tmp) / (f"cache-{i}" if src == ROOT / "src" else f"cache-{i}-baseline")
                runs[name].append(one_run(src, args.store, Path(tmp) / f"report-{i}.html", cache))
                print(f"{name}: run {i + 1}: wall {runs[name][-1][0]:.1f} s, build {runs[name][-1][1]:.1f} s, "
                      f"CPU {runs[name][-1][2]:.1f} s", file=sys.stderr)
    load = os.getloadavg()
    lines = [f"# filterdb report: {args.store}", "",
             f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; {args.repeat} runs each, alternating.", "",
             "| version | build s (median) | build s (best) | process s (median) | CPU s (median) |",
             "|---|---|---|---|---|"]
    for name, rows in runs.items():
        wall, build, cpu = zip(*rows)
        lines.append(f"| {name} | {statistics.median(build):.1f} | {min(build):.1f} | {statistics.median(wall):.1f} "
                     f"| {statistics.median(cpu):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
