"""The lifetime of a shard's memory map: closing never invalidates (nor fails on) an array still viewing it, and
the Dask and thread engines give the local numbers under load (many small tasks, every core busy)."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

from filterdb.store import ShardRows, open_store


def _mapped(path) -> bool:
    with open("/proc/self/maps") as fh:
        return any(line.rstrip().endswith(str(path)) for line in fh)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps (Linux)")
def test_close_with_a_live_view_keeps_it_valid_then_unmaps(synthetic_zoo):
    plan = synthetic_zoo.segments("3x3")
    shard, first, count = plan["shard"][0], int(plan["row_offset"][0]), int(plan["n_filters"][0])
    expected = np.concatenate(list(synthetic_zoo.iter_filters("3x3", "layer_id = ?", [int(plan["layer_id"][0])],
                                                               scaled=False)))
    rows = ShardRows(str(synthetic_zoo.root), shard, first, first + count)
    view = rows.array[1:]  # a slice a kernel (or a traceback) still holds when the task closes the shard
    rows.close()  # before: BufferError "cannot close exported pointers exist"
    assert rows.array is None
    path = synthetic_zoo.root / shard
    assert _mapped(path)  # the view owns the mapping...
    np.testing.assert_array_equal(view.astype(np.float32) * np.float32(plan["scale"][0]), expected[1:])
    del view
    assert not _mapped(path)  # ...and the last view to go unmaps it
    with ShardRows(str(synthetic_zoo.root), shard, first, first + count) as again:
        assert again.array.shape == (count, 9)
    assert not _mapped(path)  # no view left: unmapped at close, at once


def _burn(stop):
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003


@pytest.fixture()
def cpu_load():
    """Every core busy in other processes, for the duration of the test."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in procs:
        p.start()
    yield
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()


@pytest.mark.slow
def test_engines_under_load_equal_the_local_numbers(synthetic_zoo, cpu_load):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from filterdb.analysis import coefficient_histograms, fit_pca
    from filterdb.engine import LocalEngine

    store = open_store(synthetic_zoo.root)
    local = fit_pca(store, task_rows=64, engine=LocalEngine(1))
    reference = coefficient_histograms(store, by="task", basis=local, task_rows=64, engine=LocalEngine(1))
    # tiny tasks: hundreds of shard maps opened and closed per pass, across processes and threads
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for engine in (client, LocalEngine(4)) * 3:
            pca = fit_pca(store, task_rows=64, engine=engine)
            np.testing.assert_array_equal(pca.explained_variance, local.explained_variance)  # same merge order
            hist = coefficient_histograms(store, by="task", basis=local, task_rows=64, engine=engine)
            np.testing.assert_array_equal(hist.counts, reference.counts)
