"""The fixed cost of one model's commit (shard writes + one catalog transaction) on tiny models, in ms per model.

    PYTHONPATH=src .venv/bin/python bench/bench_commit_cost.py

Run it alternately against two checkouts (PYTHONPATH=<checkout>/src) to compare them side by side.
"""
import sys, time, tempfile, shutil
from filterdb.store import init_store, prepare_model
from filterdb.testing import synthetic_record
d = tempfile.mkdtemp()
s = init_store(d + "/s")
recs = [prepare_model(synthetic_record(i, channels=4, n_layers=2), {"name": f"m{i}"}, metrics=None) for i in range(40)]
with s.writer():
    t = time.perf_counter()
    for p in recs:
        s.ingest_prepared(p)
    dt = time.perf_counter() - t
print(f"{dt / len(recs) * 1000:.1f}")
shutil.rmtree(d)
