"""Hostile files in the CNN Filter DB HDF5 layout (a bounded slice of bench/fuzz_hdf5.py): each is imported or
refused with a FilterDBError, no pickled payload runs, and no worker crashes, hangs or blows up memory."""

from __future__ import annotations

import pytest

from fuzz_hdf5 import KINDS, cases, marker_of, run_imports

pytest.importorskip("tables")  # the files are written with pandas.DataFrame.to_hdf

PER_KIND = 3  # x 8 classes; the campaign in bench/fuzz_hdf5.py runs hundreds
SEED = 17
CASE_TIMEOUT_S = 120  # a hang guard, far above any of these imports
PEAK_MIB = 1024  # a worker imports all cases in turn: its imports + the largest legitimate model (tiny here)
ADDRESS_LIMIT = 16 * 2**30  # a safety net for the machine running the tests; the RSS bound is the assertion


def test_hostile_hdf5_layouts_are_imported_or_refused(tmp_path):
    built = cases(tmp_path, SEED, PER_KIND)
    results = run_imports([path for _, path in built], case_timeout=CASE_TIMEOUT_S, address_limit=ADDRESS_LIMIT)
    assert len(results) == len(built) == PER_KIND * len(KINDS)
    bad = [f"{r.outcome}: {r.path}: {r.detail}" for r in results if r.outcome not in ("ok", "refused")]
    assert bad == []
    assert max(r.rss_mib for r in results) < PEAK_MIB
    assert not any(marker_of(path).exists() for _, path in built)
    outcome = {r.path: r.outcome for r in results}
    for kind in ("code", "arrays", "filters", "huge", "truncated"):  # every one of these files lies
        assert all(outcome[str(path)] == "refused" for k, path in built if k == kind), kind
