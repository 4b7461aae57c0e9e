"""filterdb.study: every number against an independent computation, findings against the matrices, two passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import notebook_reference as ref
from filterdb.analysis import AnalysisError, Execution, StudySettings, fit_pca, study
from filterdb.errors import UsageError
from filterdb.selection import Selection
from filterdb.testing import build_synthetic_zoo

HALF = 2654435761  # the documented split: top bit of a 32-bit multiplicative hash of the layer id


def _reference_inputs(store):
    """(scaled float64 filters, one row per filter: layer_id, model_id, task, visual_category, half) from the
    store's rows read as plain numpy and its catalog."""
    batches, ids = [], []
    for x, lid in store.iter_filters("3x3", scaled=False, with_layer_ids=True):
        batches.append(np.asarray(x, np.float64))
        ids.append(lid)
    filters = ref.scale(np.concatenate(batches))
    layer_ids = np.concatenate(ids)
    layers = store.sql("SELECT layer_id, model_id, task, visual_category FROM layers WHERE kernel = '3x3'")
    rows = pd.DataFrame({"layer_id": layer_ids}).merge(layers, on="layer_id", how="left")
    rows["half"] = ((rows["layer_id"].to_numpy(np.int64) * HALF) % 2**32) // 2**31
    return filters, rows


@pytest.fixture(scope="module")
def result(synthetic_zoo):
    return study(synthetic_zoo, by=["task", "visual_category"], settings=StudySettings(sign_rule="loadings"))


def test_basis_matches_scikit_learn(synthetic_zoo, result):
    filters, _ = _reference_inputs(synthetic_zoo)
    basis = ref.fit_pca(filters)
    np.testing.assert_allclose(result.pca.mean, basis.mean, atol=1e-6)
    np.testing.assert_allclose(result.pca.explained_variance_ratio, basis.explained_variance_ratio, atol=1e-6)
    # the same axes (signs are a rule of their own, tested in test_analysis)
    np.testing.assert_allclose(np.abs((result.pca.components * basis.components).sum(1)), 1.0, atol=1e-5)


def test_matrices_and_floors_match_numpy_and_scipy(synthetic_zoo, result):
    filters, rows = _reference_inputs(synthetic_zoo)
    c = (filters - result.pca.mean) @ result.pca.components.T
    b = result.pca.bound()
    w = result.pca.explained_variance_ratio
    n_models = rows.groupby("visual_category")["model_id"].nunique()
    for axis in ("task", "visual_category"):
        a = result.axis(axis)
        names, matrix = ref.drift_matrix(c, rows[axis].tolist(), w, (-b, b))
        order = [names.index(g) for g in a.groups]
        np.testing.assert_allclose(a.drift.matrix, matrix[np.ix_(order, order)], rtol=2e-3, atol=2e-3)
        labels = [f"{g}|{h}" for g, h in zip(rows[axis], rows["half"])]
        half_names, halves = ref.drift_matrix(c, labels, w, (-b, b))
        models = rows.groupby(axis)["model_id"].nunique()
        for g in a.groups:
            if models[g] < 2:  # one model: no floor, never "beyond noise"
                assert a.floors[g] is None
                continue
            i, j = half_names.index(f"{g}|0"), half_names.index(f"{g}|1")
            assert a.floors[g] == pytest.approx(halves[i, j], rel=2e-3, abs=2e-3)
    assert n_models["plants"] == 1 and result.axis("visual_category").floors["plants"] is None


def test_ranking_and_findings_follow_the_matrix(result):
    for a in result.axes:
        m = a.drift.matrix
        g = len(a.groups)
        means = m.sum(axis=1) / (g - 1)  # mean off-diagonal drift, from the matrix alone
        expected = [a.groups[i] for i in sorted(range(g), key=lambda i: (-means[i], a.groups[i]))]
        assert [s.group for s in a.ranking] == expected
        for s in a.ranking:
            assert s.mean_drift == pytest.approx(means[a.groups.index(s.group)])
            floor = a.floors[s.group]
            assert s.beyond_floor == (None if floor is None else bool(s.mean_drift > floor))
        named = [f for f in result.findings if f.kind == "most_shifted" and f.axis == a.axis]
        assert len(named) == 1
        assert [x["group"] for x in named[0].numbers["groups"]] == expected[:3]
        for x in named[0].numbers["groups"]:
            assert x["group"] in named[0].text
        # pairs beyond noise: above the larger floor of both groups, never with an unknown floor
        for p, q, v in a.beyond_pairs:
            fp, fq = a.floors[p], a.floors[q]
            assert fp is not None and fq is not None and v > max(fp, fq)
        no_shift = [f for f in result.findings if f.kind == "no_shift" and f.axis == a.axis]
        assert bool(no_shift) == (not any(s.beyond_floor for s in a.ranking))
        largest = next(f for f in result.findings if f.kind == "largest_pair" and f.axis == a.axis)
        assert largest.numbers["drift"] == pytest.approx(m.max())
    # the axes by median pairwise drift
    medians = {a.axis: float(np.median(a.drift.matrix[np.triu_indices(len(a.groups), 1)])) for a in result.axes}
    assert [r.axis for r in result.axis_ranking] == sorted(medians, key=lambda k: -medians[k])
    top = next(f for f in result.findings if f.kind == "axis_ranking")
    assert top.axis == max(medians, key=medians.get)


def test_one_model_group_is_ranked_but_never_beyond_noise(result):
    # plants: one model, the most shifted category of the synthetic zoo (CATEGORY_SHIFTS): named first, no floor
    a = result.axis("visual_category")
    first = a.ranking[0]
    assert first.group == "plants" and first.floor is None and first.beyond_floor is None
    assert first.floor_note == "one model"
    assert any(f.kind == "floor_unknown" and "plants" in f.text for f in result.findings)


def test_two_passes_over_the_shards(synthetic_zoo, monkeypatch):
    import filterdb.analysis._study_run as run

    calls = []
    real = run.run_pass

    def counted(plan, spec, engine, task_rows, backward=False):
        calls.append((spec, backward))
        return real(plan, spec, engine, task_rows, backward=backward)

    monkeypatch.setattr(run, "run_pass", counted)
    st = study(synthetic_zoo, by=["task", "visual_category", "depth"])
    assert len(calls) == 2 and len(st.axes) == 3 and not st.errors
    assert calls[0][0].gram and not calls[0][0].hist and not calls[0][1]
    # the histogram pass reads the shards backward: it starts on those the basis pass left in the page cache
    assert calls[1][0].hist and calls[1][0].density and calls[1][0].minmax and not calls[1][0].gram and calls[1][1]


def test_u_based_signs_density_and_group_bases(synthetic_zoo):
    from filterdb.analysis import coefficient_density

    st = study(synthetic_zoo, by=["visual_category"])
    basis = fit_pca(synthetic_zoo, sign_rule="u-based")  # its own two passes
    np.testing.assert_allclose(st.pca.components, basis.components, atol=1e-6)
    dens = coefficient_density(synthetic_zoo, 0, 1, basis=st.pca, bins=160)  # numpy over iter_filters
    assert st.density.counts.sum() == dens.counts.sum() == st.n_filters
    assert np.abs(st.density.counts - dens.counts).sum() <= 1e-3 * st.n_filters
    # the bases of the largest groups: the same axes as a PCA of that group alone, signs aligned to the whole
    assert set(st.group_pcas) == {"natural", "medical", "plants"}
    for g, p in st.group_pcas.items():
        alone = fit_pca(synthetic_zoo, where="visual_category = ?", params=[g])
        np.testing.assert_allclose(np.abs((p.components[:3] * alone.components[:3]).sum(1)), 1.0, atol=1e-4)
        assert (np.einsum("kd,kd->k", p.components, st.pca.components) >= 0).all()


def test_json_is_one_object_without_nan(result):
    data = json.loads(result.to_json())
    assert data["format"] == "filterdb-study-1"
    assert [a["axis"] for a in data["axes"]] == ["task", "visual_category"]
    plants = next(r for r in data["axes"][1]["ranking"] if r["group"] == "plants")
    assert plants["floor"] is None and plants["beyond_floor"] is None
    assert data["findings"] and all({"kind", "text", "numbers"} <= set(f) for f in data["findings"])
    assert data["errors"] == {} and "histogram pass" in data["timings"]


def test_a_damaged_shard_is_a_section_error_not_a_lost_study(tmp_path):
    store = build_synthetic_zoo(tmp_path / "zoo.fdb")
    shard = sorted((Path(store.root) / "shards" / "3x3").rglob("*.arrow"))[0]
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    st = study(store, by=["visual_category"])
    assert "pca" in st.errors and st.pca is None and st.axes == ()
    assert st.degeneration is not None  # catalog rows only: still there
    json.loads(st.to_json())


def test_mistakes_in_the_call_are_usage_errors(synthetic_zoo):
    with pytest.raises(UsageError, match="taks"):
        study(synthetic_zoo, by=["taks"])
    with pytest.raises(UsageError, match="by="):
        study(synthetic_zoo, selection=Selection(by="task"))
    with pytest.raises(UsageError, match="bins"):
        StudySettings(bins=0)
    with pytest.raises(AnalysisError, match="no 5x5 filters"):
        study(synthetic_zoo, selection=Selection(shape="5x5"))


def test_numpy_kernel_gives_the_same_study(synthetic_zoo, result):
    other = study(synthetic_zoo, by=["task", "visual_category"], settings=StudySettings(sign_rule="loadings"),
                  execution=Execution(kernel="numpy", threads=1))
    for a, b in zip(result.axes, other.axes):
        assert a.groups == b.groups
        np.testing.assert_allclose(a.drift.matrix, b.drift.matrix, rtol=1e-3, atol=1e-3)


def test_families_from_stored_fingerprints_only(tmp_path):
    store = build_synthetic_zoo(tmp_path / "zoo.fdb")
    folder = Path(store.root) / "data" / "fingerprint"
    shutil.rmtree(folder, ignore_errors=True)  # a store ingested before fingerprints were stored
    st = study(store, by=["visual_category"])
    assert st.families is not None and st.families.n_models == 0
    assert len(st.families.missing) == 7 and "filterdb lineage" in st.families.note
    assert not folder.exists() or not any(folder.iterdir())  # nothing was computed behind the caller's back


def test_tasks_carry_their_shard_records(tmp_path):
    # the read path checks each shard against the record its task carries: no process-wide catalog lookup
    from filterdb.store import _reading, _shards

    store = build_synthetic_zoo(tmp_path / "zoo.fdb")
    _shards._RECORDS.pop(str(store.root), None)
    _reading._LAYOUTS.clear()
    st = study(store, by=["visual_category"], settings=StudySettings(lineage=False))
    assert not st.errors
    assert str(store.root) not in _shards._RECORDS
