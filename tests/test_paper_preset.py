"""`--preset paper` / `--preset medical` on real corpus models equal the authors' notebook (notebook_reference).

A float32 store of a handful of corpus models with a manifest (one model without a Task label, one tiny
group, and PP-OCR's models, whose 1x1 filters include max |w| values that are float32 subnormals).
"""

from __future__ import annotations

import json

import notebook_reference as nb
import numpy as np
import pytest
from click.testing import CliRunner
from corpus import CORPUS

from filterdb import read_model
from filterdb.cli import app
from filterdb.ingest import ingest
from filterdb.store import init_store
from filterdb.testing import write_manifest

MODELS = {  # corpus key -> (Task, Visual Category); None: no label in the manifest
    "pnet.pt": ("Face Detection", "faces"),
    "rnet.pt": ("Face Detection", "faces"),
    "onet.pt": ("Face Landmarks", "faces"),
    "ch_PP-OCRv4_det_infer.onnx": ("OCR", "text"),
    "ch_PP-OCRv4_rec_infer.onnx": ("OCR", "text"),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("OCR", "text"),
    "nmp.onnx": ("Pitch Detection", "audio"),  # 33 filters: a group far below the default min_filters
    "iris_landmark.tflite": (None, "faces"),
}
pytestmark = [pytest.mark.corpus]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """(store path, 3x3 filters (n, 9), their labels, 1x1 filters, their tasks) read from the model files."""
    from corpus import fetch_corpus_file

    root = tmp_path_factory.mktemp("paper")
    rows, filters, labels = [], [], {"task": [], "visual_category": [], "depth": []}
    ones, one_tasks = [], []
    for key, (task, category) in MODELS.items():
        entry = CORPUS[key]
        fetch_corpus_file(entry.spec)
        row = {"file": entry.spec, "Name": key, "Visual Category": category, "Training-Dataset": "unknown"}
        if task:
            row["Task"] = task
        rows.append(row)
    manifest = write_manifest(root / "zoo.yaml", rows)
    init_store(root / "zoo", dtype="float32")
    report = ingest(root / "zoo", manifest=manifest, required=["name"], jobs=1)
    assert len(report.ingested) == len(MODELS) and not report.failed
    for key, (task, category) in MODELS.items():
        for layer in read_model(CORPUS[key].spec).layers:
            if layer.kernel == (3, 3) and layer.n_filters:
                f = layer.filters()
                filters.append(f)
                labels["task"] += [task] * len(f)
                labels["visual_category"] += [category] * len(f)
                labels["depth"] += [layer.conv_depth_norm] * len(f)
            elif layer.kernel == (1, 1) and layer.n_filters:
                ones.append(layer.filters())
                one_tasks += [task] * layer.n_filters
    return root / "zoo", np.concatenate(filters), labels, np.concatenate(ones), one_tasks


def _cli(*args):
    out = CliRunner().invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def _relative(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_subnormal_filters_of_a_float32_store(zoo):
    """PP-OCR's 1x1 filters with a subnormal max |w| ended `analyze pca|drift` with a LinAlgError (issue 8)."""
    root, _, _, ones, tasks = zoo
    peak = np.abs(ones).max(axis=1)
    assert ((peak > 0) & (peak < np.finfo(np.float32).tiny)).any()
    ref = nb.fit_pca(nb.scale(ones))
    got = _cli("analyze", root, "pca", "--shape", "1x1", "--preset", "paper", "--json")
    np.testing.assert_allclose(got["mean"], ref.mean, atol=1e-6)
    np.testing.assert_allclose(got["explained_variance"], PCA_VAR(nb.scale(ones)), rtol=1e-5)
    _, value_range, names, expected = nb.paper(ones, tasks)
    got = _cli("analyze", root, "drift", "--shape", "1x1", "--by", "task", "--preset", "paper", "--json")
    np.testing.assert_allclose(got["range"], value_range, rtol=1e-5)
    index = [got["groups"].index(n) for n in names]
    assert _relative(np.array(got["matrix"])[np.ix_(index, index)], expected) <= 1e-3


def PCA_VAR(xs):  # noqa: N802 - the variance of the single 1x1 "component", N - 1 denominator
    return [float(np.var(xs, ddof=1))]


def test_paper_pca_equals_notebook(zoo):
    root, x, *_ = zoo
    ref = nb.fit_pca(nb.scale(x))
    got = _cli("analyze", root, "pca", "--preset", "paper", "--json", "--threads", "1")
    assert got["n_filters"] == len(x) and got["sign_rule"] == "u-based"
    np.testing.assert_allclose(got["explained_variance_ratio"], ref.explained_variance_ratio, atol=1e-5)
    np.testing.assert_allclose(got["mean"], ref.mean, atol=1e-5)
    # eigen-images equal to 1e-4 with the same signs (published sign convention)
    np.testing.assert_allclose(got["components"], ref.components, atol=1e-4)


@pytest.mark.parametrize("by", ["task", "visual_category", "depth"])
def test_paper_drift_equals_notebook(zoo, by):
    root, x, labels, *_ = zoo
    basis, value_range, names, expected = nb.paper(x, labels[by] if by != "depth"
                                                   else nb.depth_deciles(np.array(labels["depth"])))
    got = _cli("analyze", root, "drift", "--by", by, "--preset", "paper", "--json")
    assert got["range_mode"] == "minmax" and got["bins"] == 70 and got["sign_rule"] == "u-based"
    np.testing.assert_allclose(got["range"], value_range, rtol=1e-5)
    np.testing.assert_allclose(got["component_weights"], basis.explained_variance_ratio, atol=1e-6)
    assert not got["dropped"]  # small groups stay in the matrix, as in the notebook
    if by == "depth":  # deciles keep their natural order on both sides
        assert len(got["groups"]) == len(names)
        matrix = np.array(got["matrix"])
    else:
        assert sorted(got["groups"]) == sorted(names)
        assert got["groups"] == nb.display_order(names, expected)  # the notebook's display order
        index = [got["groups"].index(n) for n in names]
        matrix = np.array(got["matrix"])[np.ix_(index, index)]
    assert _relative(matrix, expected) <= 1e-3
    if by == "task":  # the unlabelled model is in the basis, but in no group
        assert "Pitch Detection" in got["groups"] and any("no value for 'task'" in n for n in got["notes"])


def test_medical_preset_with_a_saved_basis(zoo, tmp_path):
    root, x, labels, *_ = zoo
    _cli("analyze", root, "pca", "--preset", "paper", "--out", tmp_path / "basis.npz", "--json")
    with np.load(tmp_path / "basis.npz") as z:  # read with numpy, not with filterdb
        mean, components = z["mean"], z["components"]
    names, expected = nb.medical(x, labels["visual_category"], mean, components)
    got = _cli("analyze", root, "drift", "--by", "visual_category", "--preset", "medical", "--basis",
               tmp_path / "basis.npz", "--json")
    assert got["range"] == [-3.0, 3.0] and got["weights"] == "uniform"
    index = [got["groups"].index(n) for n in names]
    assert _relative(np.array(got["matrix"])[np.ix_(index, index)], expected) <= 1e-3


def test_options_override_a_preset(zoo):
    root, *_ = zoo
    got = _cli("analyze", root, "drift", "--by", "task", "--preset", "paper", "--bins", "35", "--min-filters",
               "100", "--json")
    assert got["bins"] == 35 and "Pitch Detection" in got["dropped"] and got["range_mode"] == "minmax"
