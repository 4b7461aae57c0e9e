"""A campaign of tampered stores: links in place of the store's folders, hostile catalog values, damaged shards
and per-model data (tests/fuzz_store.py), each followed by verify, models, sql, stats, analyze, lineage,
ingest and rm.

Run by hand (CI runs two seeds per class in tests/test_fuzz_store.py):

    PYTHONPATH=src .venv/bin/python bench/fuzz_store.py [--seeds 20] [--classes link_folder bad_sha ...]

Prints, per class, the cases tried, held (every command succeeded or ended in one clear error line, nothing
outside the store changed) and failed, with each failure's reason.
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

from fuzz_store import TAMPERS, build_base, new_model_file, run_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="cases per class")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--classes", nargs="*", default=sorted(TAMPERS), choices=sorted(TAMPERS))
    args = parser.parse_args()
    tried: Counter[str] = Counter()
    held: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-store-") as tmp:
        folder = Path(tmp)
        base = build_base(folder / "base")
        new_model = new_model_file(folder)
        for tamper in args.classes:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                outcome = run_case(base, folder / "cases" / "case", tamper, seed, new_model)
                tried[tamper] += 1
                held[tamper] += outcome.held
                if not outcome.held:
                    failures.append(f"{tamper} seed {seed} ({outcome.what}): {outcome.reason}")
    print(f"{'class':16} {'tried':>6} {'held':>6} {'failed':>6}")
    for tamper in args.classes:
        print(f"{tamper:16} {tried[tamper]:6d} {held[tamper]:6d} {tried[tamper] - held[tamper]:6d}")
    total, ok = sum(tried.values()), sum(held.values())
    print(f"{'total':16} {total:6d} {ok:6d} {total - ok:6d}   ({time.perf_counter() - started:.0f} s)")
    for line in failures:
        print("FAILED", line)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
