"""The cost of one drift call over a store, repeated in one process: best wall and best CPU seconds per axis.

    PYTHONPATH=CHECKOUT/src python bench/bench_drift_calls.py STORE [--by visual_category,depth] [--repeats 5]

The same calls as ``bench_analysis.py full`` (one PCA basis, then ``drift(by=..., basis=..., range="bound")``),
but each drift is repeated and timed twice: wall time, and ``time.process_time()`` (CPU seconds of every thread
of the process; on a crowded machine far steadier). Imports filterdb from ``PYTHONPATH`` only, so that
``bench/bench_checkouts.py`` can run it against any checkout (give the script's absolute path).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--by", default="visual_category,depth")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--task-rows", type=int, default=4_000_000)
    args = ap.parse_args()
    from filterdb.analysis import drift, fit_pca
    from filterdb.engine import LocalEngine
    from filterdb.store import open_store

    store = open_store(args.store)
    engine = LocalEngine(None)
    basis = fit_pca(store, engine=engine, task_rows=args.task_rows)
    out: dict[str, float] = {}
    matrices: dict[str, str] = {}
    for by in args.by.split(","):
        walls, cpus = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            result = drift(store, by=by, basis=basis, range="bound", engine=engine, task_rows=args.task_rows,
                           min_filters=0)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        out[f"drift_{by}_wall_s"] = min(walls)
        out[f"drift_{by}_cpu_s"] = min(cpus)
        matrices[by] = hashlib.sha256(result.matrix.tobytes()).hexdigest()[:16]  # compared across checkouts
    print(json.dumps({**out, "load": os.getloadavg()[0], "matrix_sha256": matrices}))


if __name__ == "__main__":
    main()
