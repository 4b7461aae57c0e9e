"""The fused analysis kernel of several checkouts in ONE process, interleaved, timed in CPU seconds.

    PYTHONPATH=src python bench/bench_kernel_checkouts.py CHECKOUT [CHECKOUT ...] [--n 4e6] [--repeats 7]

Each checkout's ``src/filterdb/analysis/kernels.py`` is loaded as a module of its own (under this process'
``filterdb.analysis`` package, so its relative imports resolve there), then every pass (``gram``, ``hist``,
``gram+hist``, ``hist+minmax``) runs on the same float16 filters in RAM, checkout after checkout, ``--repeats``
times; the best ``time.thread_time()`` (CPU seconds of this thread: a crowded machine makes the thread wait,
which wall time counts and this does not) is kept. The outputs of all checkouts are compared bit for bit
(Gram matrix, sums, histograms, min / max). Single-threaded on purpose: the kernel, not the thread pool.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def load(checkout: Path, tag: str):  # noqa: ANN201 - a module
    path = checkout / "src" / "filterdb" / "analysis" / "kernels.py"
    spec = importlib.util.spec_from_file_location(f"filterdb.analysis._kernels_{tag}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkouts", nargs="+", type=Path)
    ap.add_argument("--n", type=float, default=4e6, help="filters (3x3, float16) in RAM")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from synthetic_zoo import Pools

    n = int(args.n)
    pools = Pools(0)
    x = np.concatenate([pools.get(i % 10, 0, i % 10) for i in range(n // len(pools.get(0, 0, 0)) + 1)])[:n]
    comps = np.linalg.qr(np.random.default_rng(0).standard_normal((9, 9)))[0].T
    mods = [load(c.resolve(), f"v{i}") for i, c in enumerate(args.checkouts)]
    passes = {"gram": {}, "hist": dict(gram=False, hist=True), "gram+hist": dict(hist=True),
              "hist+minmax": dict(gram=False, hist=True, minmax=True)}
    starts, counts, units = np.array([0, n // 2]), np.array([n // 2, n - n // 2]), np.array([0, 1])
    best = {(name, i): float("inf") for name in passes for i in range(len(mods))}
    outputs: dict[tuple[str, int], tuple[bytes, ...]] = {}
    for name, kw in passes.items():
        specs = [m.PassSpec(d=9, components=comps, mean=np.zeros(9), lo=-3.2, hi=3.2, kernel="numba", **kw)
                 for m in mods]
        for m, spec in zip(mods, specs):  # compiled or loaded from numba's cache before timing
            m.run_rows(x[:1000], np.array([0]), np.array([1000]), np.array([0]), spec, 1)
        for _ in range(args.repeats):
            for i, (m, spec) in enumerate(zip(mods, specs)):
                t0 = time.thread_time()
                part = m.run_rows(x, starts, counts, units, spec, 2)
                best[(name, i)] = min(best[(name, i)], time.thread_time() - t0)
                outputs[(name, i)] = tuple(np.asarray(getattr(part, f)).tobytes() for f in
                                           ("gram", "sums", "cmin", "cmax", "hist") if getattr(part, f) is not None)
    result = {"n": n, "repeats": args.repeats, "load": os.getloadavg()[0],
              "checkouts": [str(c) for c in args.checkouts], "cpu_s": {}, "filters_per_cpu_s": {},
              "ratio_to_first": {}, "identical_to_first": {}}
    for name in passes:
        result["cpu_s"][name] = [best[(name, i)] for i in range(len(mods))]
        result["filters_per_cpu_s"][name] = [n / best[(name, i)] for i in range(len(mods))]
        result["ratio_to_first"][name] = [best[(name, i)] / best[(name, 0)] for i in range(len(mods))]
        result["identical_to_first"][name] = [outputs[(name, i)] == outputs[(name, 0)] for i in range(len(mods))]
    print("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in result.items()) + "\n}")


if __name__ == "__main__":
    main()
