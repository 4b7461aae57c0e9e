"""A pass read backward (the study's histogram pass, analysis/_run.py) gives the same numbers, bit for bit, as the
same pass read forward, on one thread or several, with one task or many; and its histograms are those of the
projected filters computed with numpy."""

from __future__ import annotations

import numpy as np
import pytest

import notebook_reference as ref

from filterdb.analysis import fit_pca
from filterdb.analysis._run import run_pass, run_task
from filterdb.analysis._study_run import _plan
from filterdb.analysis.kernels import PassSpec
from filterdb.engine import LocalEngine
from filterdb.selection import Selection
from filterdb.testing import build_synthetic_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    store = build_synthetic_zoo(tmp_path_factory.mktemp("order") / "zoo.fdb")
    plan, units, _ = _plan(store, Selection(shape="3x3"), ["task", "visual_category", "depth"])
    basis = fit_pca(store, "3x3")
    return store, plan, basis


def _hist_spec(plan, basis, kernel):
    return PassSpec(d=plan.d, gram=False, hist=True, minmax=True, density=True, components=basis.components,
                    mean=basis.mean, lo=-basis.bound(), hi=basis.bound(), nbins=40, kernel=kernel, density_bins=24)


def _fields(p):
    return {"n": p.n, "skipped": p.skipped, "gram": p.gram, "sums": p.sums, "hist": p.hist, "unit_rows": p.unit_rows,
            "cmin": p.cmin, "cmax": p.cmax, "density": p.density, "slot_gram": p.slot_gram, "slot_n": p.slot_n}


def _same(a, b):
    fa, fb = _fields(a), _fields(b)
    for k in fa:
        if fa[k] is None or fb[k] is None:
            assert fa[k] is None and fb[k] is None, k
        else:
            assert np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])), k  # bit for bit, not approximately


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("threads, task_rows", [(1, 1_000), (2, 1_000), (2, 10**9)])
def test_histogram_pass_backward_equals_forward(zoo, kernel, threads, task_rows):
    _, plan, basis = zoo
    spec = _hist_spec(plan, basis, kernel)
    assert len(plan.tasks(task_rows)) > (1 if task_rows < 10**9 else 0)
    forward = run_pass(plan, spec, LocalEngine(threads), task_rows)
    backward = run_pass(plan, spec, LocalEngine(threads), task_rows, backward=True)
    _same(forward, backward)
    assert forward.n == plan.n_filters - forward.skipped and forward.hist.sum() == forward.n * plan.d


@pytest.mark.parametrize("threads", [1, 2])
def test_gram_pass_backward_equals_forward(zoo, threads):
    _, plan, _ = zoo
    slots = np.arange(plan.n_units) % 3 - 1  # three gram slots, -1 among them
    for spec in (PassSpec(d=plan.d), PassSpec(d=plan.d, unit_slot=slots)):
        forward = run_pass(plan, spec, LocalEngine(threads), 1_000)
        _same(forward, run_pass(plan, spec, LocalEngine(threads), 1_000, backward=True))


def test_histograms_are_numpys(zoo):
    # the backward histograms against numpy's histograms of the projected filters of each unit (the rows read
    # as plain numpy through iter_filters, scaled by the notebook's reference code)
    store, plan, basis = zoo
    spec = _hist_spec(plan, basis, "numpy")
    got = run_pass(plan, spec, LocalEngine(2), 1_000, backward=True)
    batches, ids = [], []
    for x, lid in store.iter_filters("3x3", scaled=False, with_layer_ids=True):
        batches.append(np.asarray(x, np.float64))
        ids.append(lid)
    x = ref.scale(np.concatenate(batches))
    unit_of = dict(zip(plan.layers["layer_id"].to_numpy(), plan.layers["unit"].to_numpy()))
    units = np.array([unit_of[i] for i in np.concatenate(ids)])
    c = (x - basis.mean) @ basis.components.T
    edges = np.linspace(spec.lo, spec.hi, spec.nbins + 1)
    assert got.hist.sum() == len(x) * plan.d
    for unit in range(plan.n_units):
        for k in range(plan.d):
            want, _ = np.histogram(np.clip(c[units == unit, k], edges[0], edges[-1]), edges)
            assert np.abs(got.hist[unit, k] - want).sum() <= 4  # float32 rounding at a bin edge, at most


def test_gram_backward_task_is_refused(zoo):
    _, plan, _ = zoo
    task = plan.tasks(1_000)[0]
    with pytest.raises(ValueError, match="Gram pass"):
        run_task(task, plan.root, PassSpec(d=plan.d), None, True)


def test_backward_on_dask_equals_forward_local(zoo):
    # the engine whose workers do not share this process's page cache: tasks travel with their direction
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from filterdb.engine import get_engine

    _, plan, basis = zoo
    spec = _hist_spec(plan, basis, "numba")
    local = run_pass(plan, spec, LocalEngine(1), 1_000)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            engine = get_engine(client)
            _same(local, run_pass(plan, spec, engine, 1_000, backward=True))
            gram = PassSpec(d=plan.d)
            _same(run_pass(plan, gram, LocalEngine(1), 1_000), run_pass(plan, gram, engine, 1_000, backward=True))
