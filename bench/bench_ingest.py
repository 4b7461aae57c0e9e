"""Ingest benchmark: the real corpus and a synthetic zoo of >= 100 M 3x3 filters.

Measures wall time, model MB/s, filters/s, peak memory, bytes per filter on disk, time to open a store and
answer a metadata query, and (for reference) a full streaming pass over the store's filters.

    .venv/bin/python bench/bench_ingest.py corpus                 # the corpus files (docs/corpus.md) (fetched, cached)
    .venv/bin/python bench/bench_ingest.py synthetic --filters 100e6 --dir /tmp/fdb-bench
    .venv/bin/python bench/bench_ingest.py all

The synthetic zoo is deleted afterwards unless --keep is given (~1.8 GB per 100 M filters).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def peak_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its (finished) children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids


def bench_corpus(workdir: Path, jobs: int) -> dict:
    from corpus import CORPUS

    from filterdb import read_model
    from filterdb.check import check_model
    from filterdb.ingest import ingest
    from filterdb.sources import resolve_source

    paths = [resolve_source(e.spec).path for e in CORPUS.values()]
    size = sum(p.stat().st_size for p in paths)
    # reference: what reading + metrics alone costs, without a store (1 process)
    t = time.perf_counter()
    n_filters = 0
    for entry in CORPUS.values():
        record = read_model(entry.spec, trust_pickle=entry.trust_pickle)
        check_model(record)
        n_filters += sum(layer.n_filters for layer in record.layers)
    read_s = time.perf_counter() - t
    out = {"files": len(paths), "mb": size / 1e6, "filters": n_filters, "read_and_metrics_s_1proc": read_s}
    for j in sorted({1, jobs}):
        root = workdir / f"corpus-j{j}"
        t = time.perf_counter()
        report = ingest(root, [str(p) for p in paths], trust_pickle=True, create=True, jobs=j)
        wall = time.perf_counter() - t
        out[f"ingest_j{j}"] = {"wall_s": wall, "model_mb_per_s": size / 1e6 / wall,
                               "filters_per_s": report.n_filters / wall, "models": len(report.ingested)}
        shutil.rmtree(root)
    out["peak_rss_mb_self_children"] = peak_mb()
    return out


def synthetic_records(n_filters: int, seed: int = 0):
    """Models of 8 layers of 256x256x3x3 (524,288 filters each) until n_filters is reached."""
    from filterdb.readers import make_layer
    from filterdb.types import ModelInfo, ModelRecord

    rng = np.random.default_rng(seed)
    per_model = 8 * 256 * 256
    for i in range(max(1, int(np.ceil(n_filters / per_model)))):
        layers = tuple(make_layer(f"conv{j}", "Conv", rng.standard_normal((256, 256, 3, 3), dtype=np.float32)
                                  * np.float32(0.02)) for j in range(8))
        info = ModelInfo(source=f"synthetic-{i}", format="synthetic",
                         size_bytes=sum(layer.weight.nbytes for layer in layers))
        yield i, ModelRecord(info=info, layers=layers)


def bench_synthetic(workdir: Path, n_filters: int, keep: bool) -> dict:
    from filterdb.store import init_store, open_store, prepare_model

    root = workdir / "synthetic.fdb"
    if root.exists():
        shutil.rmtree(root)
    store = init_store(root)
    gen_s = prep_s = write_s = 0.0
    total = 0
    raw_bytes = 0
    tasks = ["Classification", "Detection", "Segmentation", "GAN-Discriminator"]
    t0 = time.perf_counter()
    with store.writer():  # one writer session; each model is still its own transaction
        records = synthetic_records(n_filters)
        while True:
            t = time.perf_counter()
            item = next(records, None)
            gen_s += time.perf_counter() - t
            if item is None:
                break
            i, record = item
            t = time.perf_counter()
            prepared = prepare_model(record, {"name": f"m{i}", "task": tasks[i % 4]}, metrics=None)
            prep_s += time.perf_counter() - t
            t = time.perf_counter()
            result = store.ingest_prepared(prepared)
            write_s += time.perf_counter() - t
            total += result.n_filters
            raw_bytes += record.info.size_bytes or 0
    wall = time.perf_counter() - t0
    store_s = prep_s + write_s
    stats = store.stats()
    out = {
        "filters": total, "models": stats.n_models,
        "generate_s": gen_s, "prepare_s": prep_s, "write_commit_s": write_s, "wall_s": wall,
        "store_filters_per_s": total / store_s, "store_mb_per_s_float32_in": raw_bytes / 1e6 / store_s,
        "write_commit_filters_per_s": total / write_s,
        "bytes_per_filter_total": stats.bytes_per_filter,
        "bytes_per_filter_shards": stats.shard_bytes / total,
        "catalog_mb": stats.catalog_bytes / 1e6, "total_gb": stats.total_bytes / 1e9,
    }
    # open + metadata query, in a fresh process (cold Python, warm page cache)
    import subprocess

    code = ("import time; t = time.perf_counter(); from filterdb.store import open_store; "
            f"s = open_store({str(root)!r}); t1 = time.perf_counter(); "
            "df = s.sql('SELECT task, count(*) AS models, sum(n_filters)::BIGINT AS filters FROM layers "
            "GROUP BY task ORDER BY task'); t2 = time.perf_counter(); "
            "l = s.layers('task = ? AND conv_depth_norm IS NULL', ['Detection']); t3 = time.perf_counter(); "
            "print(t1 - t, t2 - t1, t3 - t2, len(df), len(l))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    vals = [float(x) for x in res.stdout.split()[:3]]
    out["open_s_incl_import"] = vals[0]
    out["query_filters_per_task_s"] = vals[1]
    out["query_layers_where_s"] = vals[2]
    # a full streaming pass (raw float32 batches of 1 M rows), for reference
    reader = open_store(root)
    t = time.perf_counter()
    n = 0
    for batch in reader.iter_filters("3x3", batch_rows=1 << 20, scaled=False):
        n += len(batch)
    out["stream_raw_filters_per_s"] = n / (time.perf_counter() - t)
    out["peak_rss_mb_self_children"] = peak_mb()
    if not keep:
        shutil.rmtree(root)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["corpus", "synthetic", "all"])
    parser.add_argument("--filters", type=float, default=100e6, help="synthetic zoo size in filters")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="fdb-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.what in ("corpus", "all"):
        results["corpus"] = bench_corpus(workdir, args.jobs)
    if args.what in ("synthetic", "all"):
        results["synthetic"] = bench_synthetic(workdir, int(args.filters), args.keep)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
