"""The Python API matches the CLI: filterdb.check(anything) and one to_frame() name on every table result.

Models are the demo's shipped digits files (real safetensors and ONNX files, no network); the stores are the
session's synthetic zoo.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from digits_family import SHIPPED

import filterdb
from filterdb.analysis import degeneration, fit_pca

ONNX = SHIPPED / "digits-cnn-w2.onnx"
SAFETENSORS = SHIPPED / "digits-cnn-w2.safetensors"
DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_check_reads_a_path_and_reports_what_check_model_reports():
    direct = filterdb.check_model(filterdb.read_model(ONNX)).to_frame()
    via_check = filterdb.check(ONNX).to_frame()
    pd.testing.assert_frame_equal(via_check, direct)
    # the same weights in another format give the same numbers: check really read the files
    other = filterdb.check(str(SAFETENSORS)).to_frame()
    assert other["variance_entropy_norm"].tolist() == via_check["variance_entropy_norm"].tolist()


def test_check_stays_callable_once_the_check_module_is_imported():
    import filterdb.check as module  # importing the module sets filterdb.check to it

    assert filterdb.check is module and callable(module)
    assert module.Thresholds is filterdb.Thresholds
    report = filterdb.check(filterdb.read_model(ONNX), filterdb.Thresholds(min_filters=10_000))
    assert isinstance(report, module.ModelReport)
    assert not any(report.to_frame()["verdicts"].map(bool))  # the thresholds were passed on: no layer judged


def test_check_passes_read_options_on(tmp_path):
    with pytest.raises(filterdb.errors.MemoryBudgetError):
        filterdb.check(ONNX, max_memory=1024)


def test_check_model_given_a_path_says_to_call_check():
    with pytest.raises(TypeError, match=r"filterdb\.check\(model\)"):
        filterdb.check_model(str(ONNX))


def test_model_report_to_frame_and_to_json():
    report = filterdb.check(ONNX)
    frame = report.to_frame()
    pd.testing.assert_frame_equal(frame, report.layers)
    frame.loc[0, "name"] = "changed"
    assert report.layers.loc[0, "name"] != "changed"  # a copy: the report stays as computed
    assert json.loads(report.to_json()) == json.loads(json.dumps(report.to_dict()))
    assert [layer["name"] for layer in json.loads(report.to_json())["layers"]] == list(report.layers["name"])


@pytest.mark.torch
def test_check_takes_a_live_torch_module():
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    conv = torch.nn.Conv2d(16, 32, 3)
    conv.weight.data = load_file(SAFETENSORS)["conv2.weight"].float()
    frame = filterdb.check(conv).to_frame()
    expected = filterdb.check(SAFETENSORS).to_frame().set_index("name").loc["conv2"]
    assert len(frame) == 1
    assert frame["variance_entropy_norm"].iloc[0] == pytest.approx(expected["variance_entropy_norm"], abs=1e-6)


def test_pca_and_degeneration_results_have_to_frame(synthetic_zoo):
    basis = fit_pca(synthetic_zoo)
    frame = basis.to_frame()
    assert list(frame.columns) == ["explained_variance", "explained_variance_ratio", "cumulative"]
    assert len(frame) == basis.d
    np.testing.assert_allclose(frame["cumulative"].iloc[-1], 1.0)
    assert frame["explained_variance"].is_monotonic_decreasing
    grouped = degeneration(synthetic_zoo, by="visual_category")
    assert grouped.to_frame() is grouped.per_group
    ungrouped = degeneration(synthetic_zoo)
    assert ungrouped.to_frame() is ungrouped.per_model


def test_docs_api_table_names_every_command_and_existing_functions():
    from filterdb.cli import app

    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    documented = {re.match(r"\| `([a-z0-9-]+)", row).group(1) for row in rows}
    assert set(app.lazy_commands) <= documented
    for dotted in sorted(set(re.findall(r"`(filterdb(?:\.\w+)+)\(", DOC.read_text()))):
        module, _, name = dotted.rpartition(".")
        target = __import__(module, fromlist=[name])
        assert callable(getattr(target, name)), dotted
