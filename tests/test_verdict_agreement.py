"""`filterdb check`, `degeneration` on a store and the zoo report give every layer the same verdicts.

The independent evidence is the rule applied by hand, in this file, to the metrics the store holds: the
documented cut-offs of filterdb.check.Thresholds (sparse ≥ 0.5; with at least 32 filters, entropy > 1 and the
neighbour-tap correlation inside ±z/√(n·P) → random, entropy < 0.5 → low-diversity; any NaN/Inf weight →
non-finite).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import filterdb
from filterdb import ingest_record
from filterdb.analysis import degeneration
from filterdb.check import Thresholds, check_model
from filterdb.ingest import ingest
from filterdb.readers import make_layer
from filterdb.store import open_store
from filterdb.types import ModelInfo, ModelRecord

CORPUS = ("320n.onnx", "face_detection_full_range_sparse.tflite")


def _synthetic_models() -> list[ModelRecord]:
    """Layers made to fall on each side of each cut-off (seeded)."""
    rng = np.random.default_rng(13)
    smooth = np.exp(-(np.mgrid[-1:2, -1:2] ** 2).sum(0) / 2.0)

    def trained(o: int, i: int = 16, k: int = 3) -> np.ndarray:
        yy, xx = np.mgrid[: k, : k] - k // 2
        base = np.exp(-(xx**2 + yy**2) / 2.0)
        return rng.normal(size=(o, i, 1, 1)) * base + 0.3 * rng.standard_normal((o, i, k, k))

    random = rng.standard_normal((64, 32, 3, 3))
    sparse = trained(64)
    sparse[:40] = 0.0
    redundant = rng.normal(size=(64, 16, 1, 1)) * smooth + 1e-3 * rng.standard_normal((64, 16, 3, 3))
    # 1024 random filters whose horizontal neighbours share 6 %: the entropy of a random layer, correlated taps
    correlated = np.random.default_rng(7).standard_normal((256, 4, 3, 4))
    correlated = correlated[..., :3] + 0.06 * correlated[..., 1:]
    broken = trained(48)
    broken[0, 0, 1, 1] = np.nan
    layers = {
        "random": random, "sparse": sparse, "redundant": redundant, "correlated": correlated, "broken": broken,
        "small-random": rng.standard_normal((16, 64, 3, 3)),  # 16 filters: too few for an entropy verdict
        "random-5x5": rng.standard_normal((64, 8, 5, 5)),
        "trained-5x5": trained(64, 8, 5),
        "pointwise": rng.standard_normal((64, 32, 1, 1)),  # no spectrum, no neighbours
        "depthwise-random": rng.standard_normal((96, 1, 3, 3)),
    }
    records = []
    for m, names in enumerate((list(layers)[:5], list(layers)[5:])):
        records.append(ModelRecord(ModelInfo(source=f"synthetic-{m}.onnx", format="onnx"),
                                   tuple(make_layer(name, "Conv", layers[name].astype(np.float32)) for name in names)))
    return records


def by_hand(row, t: Thresholds) -> list[str]:
    kinds = []
    if row["n_nonfinite"] and row["n_nonfinite"] > 0:
        kinds.append("non-finite")
    if row["sparsity"] is not None and not math.isnan(row["sparsity"]) and row["sparsity"] >= t.sparse:
        kinds.append("sparse")
    kh, kw = (int(k) for k in row["kernel"].split("x"))
    n, entropy, corr = row["n_filters"], row["variance_entropy_norm"], row["neighbour_corr"]
    if n >= t.min_filters and entropy is not None and not math.isnan(entropy):
        if entropy > t.random:
            pairs = kh * (kw - 1) + kw * (kh - 1)
            bound = t.random_corr_z / math.sqrt(n * pairs) if pairs else math.nan
            structured = corr is not None and not math.isnan(corr) and not math.isnan(bound) and abs(corr) > bound
            if not structured:
                kinds.append("random")
        elif entropy < t.low_diversity:
            kinds.append("low-diversity")
    return kinds


def _none_for_nan(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, corpus_path):
    path = tmp_path_factory.mktemp("agree") / "zoo.fdb"
    ingest(path, [str(corpus_path(key)) for key in CORPUS], create=True, jobs=1)  # filterdb ingest's own path
    store = open_store(path, "a")
    records = {}
    for record in _synthetic_models():
        ingest_record(store, record, {"Name": record.info.source.split(".")[0], "Task": "synthetic"})
        records[record.info.source.split(".")[0]] = record
    for key in CORPUS:
        records[key] = filterdb.read_model(corpus_path(key))
    return open_store(path), records


def test_check_store_and_hand_rule_agree_on_every_layer(zoo):
    store, records = zoo
    t = Thresholds()
    layers = store.layers("spatial_ndim = 2")
    seen: set[str] = set()
    for model, part in layers.groupby("model"):
        checked = check_model(records[model])
        by_name = dict(zip(checked.layers["name"], checked.layers["verdicts"]))
        for row in part.to_dict("records"):
            row = {k: _none_for_nan(v) for k, v in row.items()}
            expected = by_hand(row, t)
            assert by_name[row["layer"]] == expected, (model, row["layer"])
            assert list(row["verdicts"]) == expected, (model, row["layer"])  # stored at ingest
            seen.update(expected)
    assert seen == {"sparse", "low-diversity", "random", "non-finite"}
    # the correlated layer reads random by its entropy alone: the second test is what keeps it healthy
    correlated = layers[layers["layer"] == "correlated"].iloc[0]
    assert correlated["variance_entropy_norm"] > t.random and list(correlated["verdicts"]) == []


@pytest.mark.parametrize("thresholds", [Thresholds(), Thresholds(entropy="clean"), Thresholds(random_corr_z=math.inf),
                                        Thresholds(sparse=0.2, low_diversity=0.8, random=0.95)])
def test_degeneration_counts_what_the_hand_rule_flags(zoo, thresholds):
    store, _ = zoo
    result = degeneration(store, by="model", thresholds=thresholds)
    layers = store.layers("spatial_ndim = 2 AND sparsity IS NOT NULL")
    for row in result.per_group.to_dict("records"):
        part = [{k: _none_for_nan(v) for k, v in r.items()} for r in layers[layers["model"] == row["model"]]
                .to_dict("records")]
        assert row["n_layers"] == len(part)
        if thresholds.entropy == "clean":
            expected = [check_kinds_clean(r, thresholds) for r in part]
        else:
            expected = [by_hand(r, thresholds) for r in part]
        for kind in ("sparse", "low-diversity", "random"):
            assert row[f"{kind}_layers"] * len(part) == pytest.approx(sum(kind in e for e in expected)), (row["model"],
                                                                                                           kind)


def check_kinds_clean(row, t: Thresholds) -> list[str]:
    """The clean variant: entropy of the non-sparse filters against n_clean, no correlation test."""
    kinds = [k for k in by_hand({**row, "variance_entropy_norm": None}, t)]
    n_clean = row["n_filters"] - round(row["sparsity"] * row["n_filters"])
    entropy = row["variance_entropy_clean_norm"]
    if n_clean >= t.min_filters and entropy is not None and not math.isnan(entropy):
        if entropy > t.random:
            kinds.append("random")
        elif entropy < t.low_diversity:
            kinds.append("low-diversity")
    return kinds


def test_the_report_lists_the_layers_the_hand_rule_flags(zoo):
    pytest.importorskip("matplotlib")
    from filterdb.analysis import StudySettings, study
    from filterdb.report import build_zoo_report

    store, _ = zoo
    result = build_zoo_report(study(store, by=["task"], settings=StudySettings(pca_groups=1)), model_sections=False,
                              figure_cache=None)
    listed = {(e["model"], e["layer"]): e["verdicts"] for e in result.summary["degenerated_layers"]}
    expected = {}
    for row in store.layers().to_dict("records"):
        row = {k: _none_for_nan(v) for k, v in row.items()}
        if len(row["kernel"].split("x")) == 2:
            kinds = by_hand(row, Thresholds())
        else:
            kinds = ["non-finite"] if row["n_nonfinite"] else []
        if kinds:
            expected[(row["model"], row["layer"])] = kinds
    assert listed == expected


def test_a_store_with_verdicts_of_an_older_rule_is_judged_by_the_current_one(tmp_path):
    """Verdicts stored at ingest are history: degeneration and the report judge the stored metrics again."""
    import duckdb

    from filterdb.store import init_store

    path = tmp_path / "old.fdb"
    init_store(path)
    with open_store(path, "a") as store:
        ingest_record(store, _synthetic_models()[0], {"Name": "synthetic-0", "Task": "synthetic"})
    # an older filterdb judged by the entropy alone: it stored "random" for the correlated layer
    with duckdb.connect(str(path / "catalog.duckdb")) as con:
        con.execute("UPDATE t_layers SET verdicts = ['random'] WHERE layer = 'correlated'")
    store = open_store(path)
    assert list(store.layers("layer = 'correlated'")["verdicts"].iloc[0]) == ["random"]
    assert degeneration(store).overall["random_layers"] == pytest.approx(1 / 5)  # the 'random' layer alone
    pytest.importorskip("matplotlib")
    from filterdb.analysis import StudySettings, study
    from filterdb.report import build_zoo_report

    result = build_zoo_report(study(store, by=["task"], settings=StudySettings(pca_groups=1)), model_sections=False,
                              figure_cache=None)
    assert "correlated" not in {e["layer"] for e in result.summary["degenerated_layers"]}
