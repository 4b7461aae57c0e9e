"""Benchmarks of the analyses (issue 4). Each measurement runs in its own process (clean peak memory).

  python bench/bench_analysis.py kernel  [--n 20e6]          in-memory kernel speed, 1 and 2 threads
  python bench/bench_analysis.py side    [--n 20e6]          filterdb vs the reference notebook pipeline
  python bench/bench_analysis.py full    STORE               PCA + drift along two axes over a whole store
  python bench/bench_analysis.py dask    STORE [--where ..]  Dask LocalCluster vs the local engine

The reference pipeline is the authors' notebook (CNN-Filter-DB main.ipynb) as tests/notebook_reference.py
writes it out: all filters in RAM as float32, per-filter scaling in numpy, sklearn ``PCA`` with scikit-learn
0.24.1's U-based signs, global min / max range, ``np.histogram(density=True)`` per group and component with
float32 eps in empty bins, ``scipy.stats.entropy``. ``side`` compares it with ``drift(preset="paper")``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # notebook_reference: the notebook's exact definitions


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status() -> dict[str, float]:
    """VmRSS / RssAnon / RssFile / VmHWM of this process in MB (Linux /proc/self/status)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class MemSampler:
    """Peak RssAnon (anonymous memory: heap, arrays) and RssFile (file-backed pages: shared libraries and
    memory-mapped shards, i.e. page cache) sampled every 2 ms; the kernel releases the GIL, so the sampler
    runs during it. VmHWM (peak total RSS, what ``ru_maxrss`` reports) is exact; the two parts are samples."""

    def __init__(self) -> None:
        import threading

        self.peak = _status()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self._take()

    def _take(self) -> None:
        now = _status()
        for k in ("RssAnon", "RssFile"):
            self.peak[k] = max(self.peak.get(k, 0.0), now.get(k, 0.0))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._take()
        now = _status()
        return {"peak_rss_mb": now["VmHWM"], "peak_anon_mb": self.peak["RssAnon"],
                "peak_file_mb": self.peak["RssFile"]}


def child(args: list[str]) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"child {args} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall  # interpreter start, imports, numba cache load, everything
    return result


def run_baseline(store_path: str, which: str) -> dict:
    """What the libraries alone cost a process: the imports each pipeline needs, one catalog query, and for
    filterdb the numba kernels loaded from the cache; no filter data read."""
    t0 = time.perf_counter()
    from filterdb.store import open_store

    if which == "ref":
        from scipy.stats import entropy  # noqa: F401
        from sklearn.decomposition import PCA  # noqa: F401
    else:
        from filterdb.analysis import drift, fit_pca  # noqa: F401
        from filterdb.analysis.kernels import PassSpec, run_rows

        x = np.zeros((1000, 9), np.float16)
        for spec in (PassSpec(d=9), PassSpec(d=9, gram=False, hist=True, minmax=True, components=np.eye(9),
                                             mean=np.zeros(9))):
            run_rows(x, np.array([0]), np.array([1000]), np.array([0]), spec, 1)
    open_store(store_path).sql("SELECT count(*) FROM layers")
    st = _status()
    return {"which": which, "import_s": time.perf_counter() - t0, "rss_mb": st["VmRSS"], "anon_mb": st["RssAnon"],
            "file_mb": st["RssFile"], "peak_rss_mb": st["VmHWM"]}


# -- children -----------------------------------------------------------------------------------------
def run_reference(store_path: str, by: str) -> dict:
    """The notebook (notebook_reference): everything in RAM, sklearn PCA, np.histogram, scipy entropy."""
    from filterdb.store import open_store
    from filterdb.store._shards import ShardReader

    mem = MemSampler()
    t0 = time.perf_counter()
    store = open_store(store_path)
    layers = store.sql("SELECT l.n_filters, l." + by + " AS g, t.shard, t.row_offset FROM layers l "
                       "JOIN t_layers t USING (layer_id) WHERE l.kernel = '3x3' ORDER BY l.model_id, l.layer_index")
    n = int(layers["n_filters"].sum())
    x = np.empty((n, 9), np.float32)
    pos = 0
    for shard, part in layers.groupby("shard", sort=False):
        reader = ShardReader(Path(store_path), shard)
        for off, cnt in zip(part["row_offset"], part["n_filters"]):
            x[pos : pos + cnt] = reader.rows(int(off), int(cnt))
            pos += cnt
        reader.close()
    groups = np.repeat(layers["g"].to_numpy(), layers["n_filters"].to_numpy())
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    import notebook_reference as nb

    basis, _, labels, mat = nb.paper(x, list(groups), dtype=np.float32)  # the notebook ran in float32
    t_compute = time.perf_counter() - t1
    return {"n": n, "load_s": t_load, "compute_s": t_compute, "total_s": t_load + t_compute,
            **mem.stop(), "evr": basis.explained_variance_ratio.tolist(), "labels": [str(g) for g in labels],
            "matrix": mat.tolist()}


def run_filterdb(store_path: str, bys: list[str], threads: int | None, task_rows: int, range_mode: str) -> dict:
    from filterdb.analysis import drift, fit_pca
    from filterdb.engine import LocalEngine
    from filterdb.store import open_store

    store = open_store(store_path)
    engine = LocalEngine(threads)
    mem = MemSampler()
    t0 = time.perf_counter()
    paper = range_mode == "paper"  # drift(preset="paper"): basis, minmax range and histograms per axis
    basis = None if paper else fit_pca(store, engine=engine, task_rows=task_rows)
    times = {"pca_s": time.perf_counter() - t0}
    results = {}
    for by in bys:
        t1 = time.perf_counter()
        if paper:
            r = drift(store, by=by, preset="paper", engine=engine, task_rows=task_rows)
            basis = r.basis
        else:
            r = drift(store, by=by, basis=basis, range=range_mode, engine=engine, task_rows=task_rows,
                      min_filters=0)
        times[f"drift_{by}_s"] = time.perf_counter() - t1
        results[by] = {"labels": list(r.groups), "matrix": r.matrix.tolist(), "summary": r.summary()}
    total = time.perf_counter() - t0
    passes = 3 * len(bys) if paper else 1 + len(bys) * (2 if range_mode == "minmax" else 1)
    return {"n": basis.n_filters, "total_s": total, **times, "passes": passes,
            "filters_per_s_per_pass": basis.n_filters * passes / total, **mem.stop(),
            "evr": basis.explained_variance_ratio.tolist(), "drift": results, "engine": engine.describe()}


def run_kernel(n: int, threads: int) -> dict:
    """The fused kernel (Gram + projection + histograms) on float16 filters already in RAM."""
    from concurrent.futures import ThreadPoolExecutor

    from synthetic_zoo import Pools

    from filterdb.analysis.kernels import PassSpec, merge, run_rows

    pools = Pools(0)
    x = np.concatenate([pools.get(i % 10, 0, i % 10) for i in range(n // len(pools.get(0, 0, 0)) + 1)])[:n]
    comps = np.linalg.qr(np.random.default_rng(0).standard_normal((9, 9)))[0].T
    out = {}
    for name, spec in (("gram", PassSpec(d=9)),
                       ("hist", PassSpec(d=9, gram=False, hist=True, components=comps, mean=np.zeros(9),
                                         lo=-3.2, hi=3.2)),
                       ("gram+hist", PassSpec(d=9, hist=True, components=comps, mean=np.zeros(9), lo=-3.2, hi=3.2))):
        run_rows(x[:1000], np.array([0]), np.array([1000]), np.array([0]), spec, 1)  # compiled / loaded
        chunks = np.array_split(np.arange(n), 64)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda idx: run_rows(x, np.array([idx[0]]), np.array([len(idx)]),
                                                       np.array([0]), spec, 1), chunks))
        merge(parts, 9, 70, 1)
        out[name] = n / (time.perf_counter() - t0)
    return {"n": n, "threads": threads, "filters_per_s": out}


def _drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_ratio(store_path: str, threads: int, repeats: int = 5, cold: bool = False) -> dict:
    """One Gram+histogram pass over the store (plan, shards, engine, merge) against the fused kernel on
    20 M float16 filters in RAM with the same threads, interleaved in one process, best of ``repeats``
    each (this machine is shared: timings drift between runs).

    ``cold``: the page cache is dropped before every store pass (needs root), and the store pass is timed
    with read-ahead off and on (``filterdb.store._reading.READAHEAD_BYTES``), interleaved."""
    from concurrent.futures import ThreadPoolExecutor

    from synthetic_zoo import Pools

    from filterdb.analysis import fit_pca
    from filterdb.analysis._run import run_pass
    from filterdb.analysis._selection import make_plan
    from filterdb.analysis.kernels import PassSpec, merge, run_rows
    from filterdb.engine import LocalEngine
    from filterdb.store import _reading, open_store

    store = open_store(store_path)
    engine = LocalEngine(threads)
    basis = fit_pca(store, engine=engine)  # warms the page cache, the kernel and the shard layouts
    spec = PassSpec(d=9, hist=True, components=basis.components, mean=basis.mean, lo=-basis.bound(),
                    hi=basis.bound())
    pools = Pools(0)
    n = 20_000_000
    x = np.concatenate([pools.get(i % 10, 0, i % 10) for i in range(n // len(pools.get(0, 0, 0)) + 1)])[:n]
    chunks = np.array_split(np.arange(n), 64)
    settings = [0, _reading.READAHEAD_BYTES] if cold else [_reading.READAHEAD_BYTES]
    t_store: dict[int, list[float]] = {ra: [] for ra in settings}
    t_kern, n_store, checks = [], 0, set()
    for _ in range(repeats):
        for ra in settings:
            _reading.READAHEAD_BYTES = ra
            if cold:  # the store pass reads every shard from disk
                _drop_caches()
            t0 = time.perf_counter()
            plan = make_plan(store, "3x3", None, None, "visual_category")
            total = run_pass(plan, spec, engine, 4_000_000)
            t_store[ra].append(time.perf_counter() - t0)
            n_store = total.n
            checks.add((total.gram.tobytes(), total.hist.tobytes()))
        _reading.READAHEAD_BYTES = settings[-1]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda idx: run_rows(x, np.array([idx[0]]), np.array([len(idx)]),
                                                       np.array([0]), spec, 1), chunks))
        merge(parts, 9, 70, 1)
        t_kern.append(time.perf_counter() - t0)
    kern_rate = n / min(t_kern)
    store_rate = n_store / min(t_store[settings[-1]])
    out = {"n_store": n_store, "threads": threads, "cold": cold, "readahead_mb": settings[-1] / 2**20,
           "store_pass_filters_per_s": store_rate, "kernel_in_memory_filters_per_s": kern_rate,
           "store_pass_vs_kernel": store_rate / kern_rate, "store_pass_s": t_store[settings[-1]],
           "identical_results": len(checks) == 1}
    if cold:
        off = n_store / min(t_store[0])
        out.update({"readahead_off_filters_per_s": off, "readahead_off_vs_kernel": off / kern_rate,
                    "readahead_off_s": t_store[0]})
    return out


def run_dask(store_path: str, where: str | None, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from filterdb.analysis import fit_pca
    from filterdb.engine import LocalEngine
    from filterdb.store import open_store

    store = open_store(store_path)
    local = LocalEngine(workers)
    fit_pca(store, where=where, engine=local)  # warm the page cache and the kernel
    t0 = time.perf_counter()
    a = fit_pca(store, where=where, engine=local)
    t_local = time.perf_counter() - t0
    t1 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t_start = time.perf_counter() - t1
        fit_pca(store, where="model_id = 1", engine=client)  # load the kernel in the workers
        t2 = time.perf_counter()
        b = fit_pca(store, where=where, engine=client)
        t_dask = time.perf_counter() - t2
    same = bool(np.array_equal(a.components, b.components))
    return {"n": a.n_filters, "local_s": t_local, "dask_s": t_dask, "cluster_start_s": t_start,
            "overhead_ratio": t_dask / t_local, "bit_identical": same}


def _threads() -> int:
    from filterdb.engine.local import _cpu_count

    return _cpu_count()


# -- drivers ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["kernel", "side", "full", "dask", "_ref", "_fdb", "_kernel", "_dask", "_base", "_ratio", "cold"])
    ap.add_argument("store", nargs="?")
    ap.add_argument("--n", type=float, default=20e6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--task-rows", type=int, default=4_000_000)
    ap.add_argument("--by", default="visual_category,depth")
    ap.add_argument("--range", default="bound")
    ap.add_argument("--where", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if a.what == "_ref":
        print(json.dumps(run_reference(a.store, a.by)))
    elif a.what == "_fdb":
        print(json.dumps(run_filterdb(a.store, a.by.split(","), a.threads, a.task_rows, a.range)))
    elif a.what == "_ratio":
        print(json.dumps(run_ratio(a.store, a.threads or _threads(), a.repeats, a.cold)))
    elif a.what == "_base":
        print(json.dumps(run_baseline(a.store, a.by)))
    elif a.what == "_kernel":
        print(json.dumps(run_kernel(int(a.n), a.threads or 1)))
    elif a.what == "_dask":
        print(json.dumps(run_dask(a.store, a.where, a.workers)))
    elif a.what == "kernel":
        for t in (1, 2):
            print(json.dumps(child(["_kernel", "--n", str(a.n), "--threads", str(t)])))
    elif a.what == "side":
        from synthetic_zoo import write_zoo

        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            root = a.store or str(Path(tmp) / "zoo")
            if not a.store:
                write_zoo(root, int(a.n), 647, progress=False)
            base_ref = child(["_base", root, "--by", "ref"])
            base_fdb = child(["_base", root, "--by", "fdb"])
            ref = child(["_ref", root, "--by", "visual_category"])
            fdb = child(["_fdb", root, "--by", "visual_category", "--range", "paper"])
            fdb_bound = child(["_fdb", root, "--by", "visual_category"])
        m_ref = np.array(ref["matrix"])
        order = [ref["labels"].index(g) for g in fdb["drift"]["visual_category"]["labels"]]
        diff = np.abs(np.array(fdb["drift"]["visual_category"]["matrix"]) - m_ref[np.ix_(order, order)]).max()
        rel = float(diff / np.abs(m_ref).max())
        keys = ("total_s", "process_wall_s", "peak_rss_mb", "peak_anon_mb", "peak_file_mb")
        print(json.dumps({
            "n": ref["n"],
            "reference": {k: ref[k] for k in ("load_s", "compute_s") + keys},
            "filterdb_paper_mode": {k: fdb[k] for k in ("passes",) + keys},
            "filterdb_default": {k: fdb_bound[k] for k in ("passes",) + keys},
            "library_baseline": {"reference": base_ref, "filterdb": base_fdb},
            "speedup_vs_compute": ref["compute_s"] / fdb["total_s"],
            "speedup_vs_total": ref["total_s"] / fdb["total_s"],
            "speedup_default_vs_total": ref["total_s"] / fdb_bound["total_s"],
            "speedup_process_wall": ref["process_wall_s"] / fdb["process_wall_s"],
            "speedup_default_process_wall": ref["process_wall_s"] / fdb_bound["process_wall_s"],
            "memory_ratio": fdb["peak_rss_mb"] / ref["peak_rss_mb"],
            "memory_ratio_default": fdb_bound["peak_rss_mb"] / ref["peak_rss_mb"],
            "anon_memory_ratio": fdb["peak_anon_mb"] / ref["peak_anon_mb"],
            "memory_ratio_above_library_baseline": (fdb["peak_rss_mb"] - base_fdb["rss_mb"])
            / (ref["peak_rss_mb"] - base_ref["rss_mb"]),
            "max_abs_drift_diff_paper_mode": float(diff),
            "max_rel_drift_diff_paper_mode": rel,
            "same_group_order": fdb["drift"]["visual_category"]["labels"]
            == [ref["labels"][i] for i in np.argsort(m_ref.mean(axis=1), kind="stable")],
            "evr_max_diff": float(np.abs(np.array(ref["evr"]) - np.array(fdb["evr"])).max()),
        }, indent=1))
    elif a.what == "full":
        full = child(["_fdb", a.store, "--by", a.by, "--range", a.range, "--task-rows", str(a.task_rows)]
                     + (["--threads", str(a.threads)] if a.threads else []))
        # one Gram+histogram pass over the store vs the same kernel in RAM, interleaved in one process
        full["single_pass"] = child(["_ratio", a.store, "--threads", str(a.threads or _threads())])
        print(json.dumps(full, indent=1))
    elif a.what == "cold":
        # one pass over a store read from disk (page cache dropped before each; root) with read-ahead off and
        # on, interleaved, against the kernel in RAM
        print(json.dumps(child(["_ratio", a.store, "--threads", str(a.threads or _threads()), "--cold",
                                "--repeats", str(a.repeats)]), indent=1))
    elif a.what == "dask":
        print(json.dumps(child(["_dask", a.store, "--workers", str(a.workers)]
                               + (["--where", a.where] if a.where else [])), indent=1))


if __name__ == "__main__":
    main()
