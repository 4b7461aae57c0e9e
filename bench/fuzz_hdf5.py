"""A fuzzing campaign against ``import-hdf5``: hostile files in the CNN Filter DB HDF5 layout (tests/fuzz_hdf5.py).

Run by hand (CI runs a bounded slice in tests/test_fuzz_hdf5.py):

    PYTHONPATH=src .venv/bin/python bench/fuzz_hdf5.py [--per-kind 30] [--seed 0]

Classes: pickled code (object cells, object index levels, PyTables attributes, foreign globals), abused numpy
globals and malformed pickles, lying ``/filters`` (shape, type, width 0, chunking), lying ``filter_ids``,
huge declared dimensions, byte-level mutants (anywhere, and in the first 16 KiB: HDF5's own structures) and
truncations. Each file is imported into a fresh store in a worker process. A case *holds* when it is
imported or refused with a FilterDBError, no payload ran, the worker neither crashed nor hung, and its peak
RSS stayed under --blowup-mib. Prints the counts per class.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_hdf5 import KINDS, cases, run_imports  # noqa: E402
from fuzzing import report_failures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--case-timeout", type=float, default=120.0)
    parser.add_argument("--blowup-mib", type=float, default=1536, help="peak RSS counted as a blow-up")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = cases(Path(tmp), args.seed, args.per_kind, args.kinds)
        kind_of = {str(path): kind for kind, path in built}
        start = time.perf_counter()
        results = run_imports([path for _, path in built], case_timeout=args.case_timeout)
        elapsed = time.perf_counter() - start
        per_kind: dict[str, Counter[str]] = defaultdict(Counter)
        failures = []
        for r in results:
            held = r.outcome in ("ok", "refused") and r.rss_mib <= args.blowup_mib
            per_kind[kind_of[r.path]]["tried"] += 1
            per_kind[kind_of[r.path]][r.outcome] += 1
            per_kind[kind_of[r.path]]["held" if held else "failed"] += 1
            if not held:
                failures.append(r)
        print(f"HDF5 import layouts: {len(results)} files ({len(args.kinds)} classes x {args.per_kind}, seed "
              f"{args.seed}) in {elapsed:.0f} s")
        print(f"{'class':<10} {'tried':>6} {'held':>6} {'failed':>6}   imported  refused")
        for kind in args.kinds:
            c = per_kind[kind]
            print(f"{kind:<10} {c['tried']:>6} {c['held']:>6} {c['failed']:>6}   {c['ok']:>8} {c['refused']:>8}")
        total = sum(per_kind.values(), Counter())
        print(f"{'all':<10} {total['tried']:>6} {total['held']:>6} {total['failed']:>6}   {total['ok']:>8} "
              f"{total['refused']:>8}")
        report_failures(results, failures, args.keep)


if __name__ == "__main__":
    main()
