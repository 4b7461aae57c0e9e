"""Every table command is readable at 80 columns in a real pseudo-terminal (issue 20, item 2): no line wider
than the terminal, no value split across lines or cut with an ellipsis, every name whole."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from filterdb._format import number
from filterdb._names import display_name
from fuzz_names import plain, run_in_pty, write_onnx
from helpers import subprocess_env

COLUMNS = 80
LAYERS = ["model_1/model/depthwise_conv2d_23/depthwise", "model_1/model/conv2d_17/Conv2D",
          "model_1/model/re_lu/Relu;model_1/model/conv2d_18/BiasAdd;model_1/model/conv2d_18/Conv2D;"
          "model_1/model/conv2d_18/BiasAdd/ReadVariableOp"]
MODELS = ["BlazeFace-short-range", "face_detection_full_range_sparse", "ch_ppocr_mobile_v2.0_cls_infer"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from filterdb.ingest import ingest

    root = tmp_path_factory.mktemp("wide")
    rows = []
    for i, name in enumerate(MODELS):
        path = write_onnx(root / f"m{i}.onnx", LAYERS, producer="tf2onnx", seed=i)
        rows.append({"file": path.name, "name": name, "task": "Detection", "visual_category": "face",
                     "training_dataset": "WIDER FACE (private subset)", "architecture": "MobileNetV2-SSD"})
    (root / "manifest.json").write_text(json.dumps(rows))
    ingest(root / "s.fdb", [root], manifest=root / "manifest.json", create=True, jobs=1)
    return root


def _records(*argv):
    proc = subprocess.run([sys.executable, "-m", "filterdb", *map(str, argv), "--format", "json"],
                          capture_output=True, text=True, env=subprocess_env(), check=True)
    return json.loads(proc.stdout)


def _cell(value):
    """How a value reads in a table: the reference of tests (numbers as filterdb._format.number shows them)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return number(value)
    return str(value)


def _assert_readable(text, values):
    lines = plain(text).splitlines()
    assert max(len(line) for line in lines) <= COLUMNS, max(lines, key=len)
    assert "…" not in text  # nothing cut
    missing = [v for v in values if v and len(v) <= COLUMNS - 8 and not any(v in line for line in lines)]
    assert missing == []  # each value whole on one line


@pytest.mark.parametrize("command", [["models"], ["models", "--all-columns"], ["layers"],
                                     ["sql", "SELECT model, layer, n_filters, sparsity FROM layers"]])
def test_store_tables_fit_80_columns_with_every_value_whole(store, command):
    argv = [command[0], str(store / "s.fdb"), *command[1:]]
    text = run_in_pty(argv, COLUMNS, env=subprocess_env())
    records = _records(*argv) if command != ["layers"] else _records(*argv)
    shown_columns = {"models": ("model", "task", "training_dataset", "architecture", "n_filters"),
                     "layers": ("model", "layer", "kernel", "n_filters", "verdicts")}.get(command[0])
    values = [_cell(r[k]) for r in records for k in (shown_columns or r) if k in r and k != "verdicts"]
    _assert_readable(text, values)
    assert all(name in plain(text) for name in MODELS)


def test_long_headers_break_after_underscores_not_inside_words(store):
    query = "SELECT model, n_filters AS n_filters_total_of_model, n_layers AS n_layers_of_the_model FROM models"
    text = plain(run_in_pty(["sql", str(store / "s.fdb"), query], 60, env=subprocess_env()))
    assert "\\n" not in text and "filters_" in text and "of_model" in text  # a header on several lines
    assert all(name in text for name in MODELS[:1])


def test_degeneration_fits_80_columns(store):
    argv = ["analyze", str(store / "s.fdb"), "degeneration", "--by", "task"]
    text = run_in_pty(argv, COLUMNS, env=subprocess_env())
    _assert_readable(text, [*MODELS, "Detection"])


def test_inspect_and_check_fit_80_columns_with_display_names(store):
    model = store / "m0.onnx"
    for command in ("inspect", "check"):
        text = run_in_pty([command, str(model)], COLUMNS, env=subprocess_env())
        _assert_readable(text, [display_name(name) for name in LAYERS])
        assert "ReadVariableOp" not in text  # the fused name is shown by its conv's own op


def test_a_wide_terminal_gets_a_table(store):
    text = plain(run_in_pty(["models", str(store / "s.fdb")], 250, env=subprocess_env()))
    header = next(line for line in text.splitlines() if "model_id" in line)
    assert "n_filters" in header and "┃" in header


DEMO_PROGRESS = """
import time
from filterdb.cli._demo import _Display
display = _Display("bar")
display.phase("zoo", 3, "digits: training the family of small CNNs on sklearn's digits (about 30 s)")
time.sleep(2.5)
display.step("digits: trained digits-base")
time.sleep(0.5)
display.stop()
print("done")
"""


def test_demo_progress_fits_the_terminal_and_keeps_moving():
    """Issue 20 item 3: one truncated line, unchanged for 70 s, elapsed cut to '0:0…'."""
    text = run_in_pty(["-c", DEMO_PROGRESS], COLUMNS, env=subprocess_env())
    frames = [line for line in plain(text).replace("\r", "\n").split("\n") if line.strip()]
    assert "done" in frames[-1]
    assert all(len(line) <= COLUMNS for line in frames), max(frames, key=len)
    assert any("0:00:02" in line for line in frames)  # the elapsed time whole, and ticking
    assert any("digits: training the family" in line for line in frames)  # the sub-step on its own line
    assert any(re.match(r" +2 s  digits: training the family", line) for line in frames)  # its seconds count up
    assert any("digits: trained digits-base" in line for line in frames)
