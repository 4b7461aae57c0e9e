"""Dask engine: a real LocalCluster gives the same numbers as the local thread engine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from filterdb.analysis import coefficient_histograms, drift, fit_pca  # noqa: E402
from filterdb.engine import DaskEngine, get_engine  # noqa: E402
from filterdb.engine.dask import SchedulerError  # noqa: E402


@pytest.fixture()
def store(synthetic_zoo):
    """The session's synthetic zoo (filterdb.testing.ZOO_MODELS), read-only."""
    return synthetic_zoo


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def test_dask_equals_local(store, client):
    engine = get_engine(client)
    assert isinstance(engine, DaskEngine) and "2 workers" in engine.describe()
    local = fit_pca(store, task_rows=2000)
    remote = fit_pca(store, engine=client, task_rows=2000)
    np.testing.assert_array_equal(remote.components, local.components)  # same merge order: bit-identical
    np.testing.assert_array_equal(remote.explained_variance, local.explained_variance)
    for kwargs in ({"range": "bound"}, {"range": "minmax", "model_weighting": True, "weights": "uniform"},
                   {"preset": "paper"}):
        a = drift(store, by="visual_category", min_filters=0, task_rows=2000, **kwargs)
        b = drift(store, by="visual_category", min_filters=0, task_rows=2000, engine=engine, **kwargs)
        assert a.groups == b.groups and a.sizes == b.sizes
        np.testing.assert_array_equal(a.matrix, b.matrix)
    h1 = coefficient_histograms(store, by="task", basis=local, task_rows=2000)
    h2 = coefficient_histograms(store, by="task", basis=local, task_rows=2000, engine=client)
    np.testing.assert_array_equal(h1.counts, h2.counts)


def test_unreachable_scheduler():
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"):
        DaskEngine("tcp://127.0.0.1:1", timeout="1s")
