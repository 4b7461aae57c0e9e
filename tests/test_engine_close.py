"""A Dask client the engine opens itself is closed with the engine (close(), garbage collection or exit); a
client the caller passes stays the caller's (issue 17, item 14: no thread may outlive its owner)."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

from filterdb.engine import DaskEngine  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


def test_a_client_the_engine_opened_is_closed_by_close_and_by_garbage_collection(cluster):
    engine = DaskEngine(cluster.scheduler_address)  # an address: the engine opens (owns) the client
    client = engine.client
    assert list(engine.map(abs, [-1, -2])) == [1, 2]
    engine.close()
    engine.close()  # idempotent
    assert client.status == "closed"

    engine = DaskEngine(cluster)  # a cluster object: owned too
    client = engine.client
    del engine
    gc.collect()
    assert client.status == "closed"


def test_a_client_passed_in_stays_open(cluster):
    with Client(cluster) as client:
        engine = DaskEngine(client)
        engine.close()
        del engine
        gc.collect()
        assert client.status == "running"
