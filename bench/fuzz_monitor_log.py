"""A fuzzing campaign against `filterdb monitor LOG`: the crafted records of issue 17 and seeded mutants of
valid monitor logs.

Run by hand (CI runs a bounded slice of the same cases in tests/test_fuzz_monitor_log.py):

    PYTHONPATH=src .venv/bin/python bench/fuzz_monitor_log.py [--mutants 2000] [--seed 0] [--html-every 50]

Each log is read as ``filterdb monitor LOG --json --html PAGE`` reads it (read_log, the summary, the JSON of
the alerts; the HTML page with its figures for every crafted case and every --html-every-th mutant), in this
process. Prints the counts: inputs tried, held (read or refused with one FilterDBError line) and failed
(any other exception, or a heap peak over --blowup-mib), with the failing logs kept under --keep.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_monitor_log import CRAFTED, html_available, mutants, run_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--html-every", type=int, default=50, help="draw the HTML page for every N-th mutant")
    parser.add_argument("--blowup-mib", type=float, default=256, help="heap peak counted as a blow-up")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures-monitor-log"))
    args = parser.parse_args()
    html = html_available()
    if not html:
        print("matplotlib missing: the HTML pages are not drawn (pip install 'filterdb[plot]')")
    cases = [(f"crafted: {name}", make(), html) for name, make in CRAFTED.items()]
    cases += [(name, data, html and i % args.html_every == 0)
              for i, (name, data) in enumerate(mutants(args.seed, args.mutants))]
    counts: Counter[str] = Counter()
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, data, draw) in enumerate(cases, start=1):
            result = run_case(name, data, Path(tmp), html=draw)
            blew_up = result.peak_mib > args.blowup_mib
            counts["failed" if result.outcome == "failed" or blew_up else result.outcome] += 1
            if result.outcome == "failed" or blew_up:
                failures.append((result, data))
            if i % 200 == 0:
                print(f"  {i} / {len(cases)} tried ({time.perf_counter() - start:.0f} s)", flush=True)
    held = counts["ok"] + counts["refused"]
    print(f"monitor logs: {len(cases)} tried ({len(CRAFTED)} crafted, {args.mutants} mutants, seed {args.seed}): "
          f"{held} held ({counts['ok']} read, {counts['refused']} refused in one line), {counts['failed']} failed "
          f"in {time.perf_counter() - start:.0f} s")
    if failures:
        args.keep.mkdir(parents=True, exist_ok=True)
        for result, data in failures:
            kept = args.keep / (result.name.replace("/", "_").replace(" ", "_").replace(":", "") + ".jsonl")
            kept.write_bytes(data)
            print(f"  FAILED {result.name}: {result.detail} (peak {result.peak_mib:.0f} MiB) -> {kept}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
