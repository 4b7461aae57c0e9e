"""Two writer processes and a reader process on one store at the same time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import subprocess_env

from filterdb import ingest_record
from filterdb.store import init_store, open_store


def _popen(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env(), text=True)


@pytest.mark.slow
def test_two_writers_and_a_reader(tmp_path):
    root = tmp_path / "zoo"
    init_store(root)
    writer = "import sys; from helpers import run_synthetic_ingest; run_synthetic_ingest(sys.argv[1], {}, 64)"
    first = _popen(writer.format(list(range(8))), str(root))
    second = _popen(writer.format(list(range(4, 12))), str(root))  # models 4..7 overlap
    reader = _popen("import sys; from helpers import run_reader; run_reader(sys.argv[1], 4.0)", str(root))
    results = [p.communicate(timeout=180) for p in (first, second, reader)]
    for proc, (out, err) in zip((first, second, reader), results):
        assert proc.returncode == 0, err
    assert int(results[2][0].split()[-1]) > 0  # the reader kept working
    store = open_store(root)
    models = store.models()
    assert sorted(models["model"]) == sorted(f"m{i}" for i in range(12))
    assert models["sha256"].is_unique and (models["version"] == 1).all()
    skipped = [line for out, _ in results[:2] for line in out.splitlines() if line.endswith(" 1")]
    assert len(skipped) == 4  # each overlapping model was written once and skipped once
    layers = store.sql("SELECT sum(n_filters) AS n FROM t_layers WHERE kernel = '3x3'")["n"].item()
    assert sum(len(b) for b in store.iter_filters()) == layers


@pytest.mark.slow
def test_second_writer_waits_or_fails_clearly(tmp_path):
    from filterdb.store import StoreBusyError

    root = tmp_path / "zoo"
    init_store(root)
    holder = _popen("import sys, time; from filterdb.store import open_store; s = open_store(sys.argv[1], 'a'); "
                    "s.writer().acquire(); print('held', flush=True); time.sleep(3)", str(root))
    assert holder.stdout.readline().strip() == "held"
    store = open_store(root, mode="a", lock_timeout=0.2)
    from filterdb.testing import synthetic_record

    with pytest.raises(StoreBusyError, match=r"another writer \(process \d+\) holds the store's writer lock"):
        ingest_record(store, synthetic_record(1))
    patient = open_store(root, mode="a", lock_timeout=30)
    assert not ingest_record(patient, synthetic_record(1)).skipped  # waited for the holder to exit
    holder.communicate(timeout=30)
