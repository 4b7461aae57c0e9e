"""What the store's integrity checks cost: the sha256 computed while a shard is written, the size/structure
check on every shard open, and `filterdb verify` over a whole store.

    .venv/bin/python bench/bench_store_integrity.py --filters 20e6 --dir /tmp/fdb-integrity

Builds a synthetic store (models of 8 layers of 256 x 256 3x3 filters), then prints one JSON object:
shard write rate with the hash, the hash alone on the same bytes (its share of the write), shard opens per
second with the catalog's record, and verify's rate (MB/s of shards read and hashed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", type=float, default=20e6)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    from filterdb.readers import make_layer
    from filterdb.store import init_store, verify_store
    from filterdb.store._shards import ShardReader, write_shard
    from filterdb.types import ModelInfo, ModelRecord

    work = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        rng = np.random.default_rng(0)
        per_model = 8 * 256 * 256
        n_models = max(1, int(args.filters // per_model))
        values = (rng.standard_normal((per_model, 9)) * 0.1).astype(np.float16)

        # 1. the hash's share of a shard write (write_shard hashes in the same pass)
        (work / "w").mkdir()
        t = time.perf_counter()
        for _ in range(n_models):
            write_shard(work / "w", "3x3", values)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n_models):
            hashlib.sha256(values.tobytes()).hexdigest()
        hash_s = time.perf_counter() - t
        shutil.rmtree(work / "w")

        # 2. a store, its shard opens, and verify
        store = init_store(work / "zoo")
        for i in range(n_models):
            layers = tuple(make_layer(f"c{j}", "Conv", values[j * 65536:(j + 1) * 65536].astype(np.float32)
                                      .reshape(256, 256, 3, 3) * (i + 1)) for j in range(8))
            store.ingest(ModelRecord(ModelInfo(source=f"m{i}", format="synthetic"), layers), metrics=None)
        shards = store.sql("SELECT shard FROM t_shards")["shard"].tolist()
        ShardReader(store.root, shards[0]).close()  # load the catalog's records once
        t = time.perf_counter()
        repeats = max(1, 2000 // len(shards))
        for _ in range(repeats):
            for shard in shards:
                ShardReader(store.root, shard).close()
        open_us = (time.perf_counter() - t) / (repeats * len(shards)) * 1e6
        t = time.perf_counter()
        report = verify_store(store)
        verify_s = time.perf_counter() - t
        assert report.ok
        mb = report.n_bytes / 1e6
        print(json.dumps({
            "filters": n_models * per_model, "models": n_models, "shard_mb": round(mb, 1),
            "shard_write_mb_s_with_hash": round(mb / write_s, 1),
            "sha256_alone_mb_s": round(mb / hash_s, 1),
            "hash_share_of_write": round(hash_s / write_s, 3),
            "shard_open_us_with_checks": round(open_us, 1),
            "verify_s": round(verify_s, 2), "verify_mb_s": round(mb / verify_s, 1),
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
