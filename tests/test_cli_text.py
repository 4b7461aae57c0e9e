"""What the terminal shows: control characters escaped (against Python's own escape decoder), cells never
markup, the one display-name rule, and check's verdict margins, borderline marks and --only-flagged."""

from __future__ import annotations

import codecs
import json
import math
import unicodedata

import numpy as np
import pytest

from filterdb import ModelInfo, ModelRecord
from filterdb._names import display_name
from filterdb._thresholds import random_spread, randomness_threshold
from filterdb.check import BORDERLINE_SPREADS, check_model, judge_layers
from filterdb.cli._table import csv_cell, markup_safe, safe_text, text_cell
from filterdb.readers._registry import make_layer
from helpers import run_cli

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_every_control_bidi_and_line_break_character_is_shown_escaped():
    for code in [*range(0x3000), 0xFEFF, 0x1F600]:
        char = chr(code)
        shown = safe_text(char)
        obeyed = unicodedata.category(char) == "Cc" or char in BIDI or char in "\u2028\u2029"
        if obeyed:
            assert shown != char and shown.isascii() and shown.isprintable(), hex(code)
            assert codecs.decode(shown, "unicode_escape") == char  # the escape names the character exactly
        else:
            assert shown == char, hex(code)


def test_cells_are_text_never_markup_or_emoji(capsys):
    from rich.console import Console

    import re

    # the CLI's console settings (cli/_app.py): no highlighter, no emoji codes
    console = Console(width=120, force_terminal=True, color_system="truecolor", highlight=False, emoji=False)
    for name in ("[/bold]x", "[link=https://example.invalid/]y[/link]", ":warning:", "[red]z[/red]"):
        assert text_cell(name).plain == name
        with console.capture() as capture:
            console.print(text_cell(name))
            console.print(f"[bold]{markup_safe(name)}[/]")
        shown = re.sub("\x1b\\[[0-9;]*m", "", capture.get())
        assert shown.count(name) == 2 and "\x1b]8;" not in shown  # literal both times, never a hyperlink


def test_csv_cells_get_the_formula_guard_and_numbers_do_not():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("+x") == "'+x"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("\t=1") == "\\t=1" and csv_cell("conv") == "conv"  # tab shown escaped: no longer first
    assert csv_cell(-0.5) == -0.5 and csv_cell("-0.5") == "-0.5"  # numbers, also as text, stay numbers


@pytest.mark.parametrize(("name", "shown"), [
    ("model/re_lu/Relu;model/conv2d/BiasAdd;model/conv2d/Conv2D;model/conv2d/BiasAdd/ReadVariableOp",
     "model/conv2d/Conv2D"),
    ("m/batch_normalization_3/FusedBatchNormV3;m/depthwise_conv2d_37/depthwise;m/depthwise_conv2d_1/depthwise",
     "m/depthwise_conv2d_1/depthwise"),
    ("m/bn/batchnorm/add_1;m/conv2d_3_1/convolution;m/bn/batchnorm/sub", "m/conv2d_3_1/convolution"),
    ("m/a/BiasAdd;m/a/BiasAdd/ReadVariableOp", "m/a/BiasAdd"),  # no conv part: the first that is not a read
    ("/model.0/conv/Conv", "/model.0/conv/Conv"), ("features.0.weight", "features.0.weight"),
])
def test_display_name_is_the_convs_own_op(name, shown):
    assert display_name(name) == shown


def _spread_by_simulation(n: int, d: int, trials: int = 300) -> float:
    """The standard deviation of ve_norm of random Gaussian layers, computed here from scratch."""
    rng = np.random.default_rng(5)
    values = []
    for _ in range(trials):
        w = rng.standard_normal((n, d))
        ev = np.clip(np.linalg.eigvalsh(np.cov(w, rowvar=False)), 0, None)
        p = ev / ev.sum()
        values.append(-(p[p > 0] * np.log10(p[p > 0])).sum())
    return float(np.std(values, ddof=1)) / randomness_threshold(n, (int(math.isqrt(d)),) * 2)


@pytest.mark.parametrize(("n", "kernel"), [(64, (3, 3)), (256, (3, 3)), (100, (5, 5))])
def test_the_spread_of_random_layers_matches_a_simulation(n, kernel):
    simulated = _spread_by_simulation(n, kernel[0] * kernel[1])
    assert random_spread(n, kernel) == pytest.approx(simulated, rel=0.25)


def test_a_verdict_close_to_its_threshold_is_borderline():
    spread = random_spread(512)
    columns = {"n_filters": [512, 512, 512], "kernel": ["3x3"] * 3, "sparsity": [0.0, 0.0, 0.0],
               "variance_entropy_norm": [1 + 0.5 * spread, 1 + 3 * spread, 0.4], "neighbour_corr": [0.0, 0.0, 0.3],
               "n_nonfinite": [0, 0, 0]}
    near, far, low = (v[0] for v in judge_layers(columns).verdicts())
    assert near.kind == far.kind == "random" and low.kind == "low-diversity"
    assert near.margin == pytest.approx(0.5, rel=1e-6) and near.borderline
    assert far.margin == pytest.approx(3.0, rel=1e-6) and not far.borderline
    assert low.margin == pytest.approx((0.5 - 0.4) / spread) and not low.borderline
    assert near.to_dict()["borderline"] is True and near.to_dict()["margin"] == pytest.approx(0.5, rel=1e-6)
    assert BORDERLINE_SPREADS == 1.0


def _record(tmp_path):
    """A model with a random 3x3 layer, a trained-looking smooth layer and a 1x1 layer."""
    from filterdb.testing import category_record

    rng = np.random.default_rng(0)
    smooth = category_record(0, "natural").layers[1]  # trained-looking: correlated taps, no verdict
    layers = (make_layer("random", "Conv", rng.standard_normal((64, 64, 3, 3))),
              make_layer("smooth", "Conv", np.asarray(smooth.weight)),
              make_layer("pointwise", "Conv", rng.standard_normal((64, 64, 1, 1))))
    return ModelRecord(ModelInfo(source="x", format="onnx"), layers)


def _onnx(tmp_path, record):
    from onnx import TensorProto, helper, numpy_helper, save

    nodes, inits, previous = [], [], "x"
    for i, layer in enumerate(record.layers):
        inits.append(numpy_helper.from_array(np.asarray(layer.weight, dtype=np.float32), layer.name))
        nodes.append(helper.make_node("Conv", [previous, layer.name], [f"y{i}"], name=layer.name))
        previous = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_check_puts_the_answer_first_and_only_flagged_lists_the_flagged(tmp_path, capsys):
    record = _record(tmp_path)
    path = _onnx(tmp_path, record)
    api = check_model(record)
    flagged = [name for name, kinds in zip(api.layers["name"], api.layers["verdicts"]) if kinds]
    assert flagged == ["random"]
    code, out, _ = run_cli(capsys, "check", path)
    lines = out.splitlines()
    answer = next(i for i, line in enumerate(lines) if line.startswith("degenerated layers"))
    assert answer < next(i for i, line in enumerate(lines) if "smooth" in line)
    code, out, _ = run_cli(capsys, "check", path, "--only-flagged")
    assert code == 0 and "random" in out and "smooth" not in out and "pointwise" not in out
    assert "1 flagged of 3 layers" in out


def test_entropy_that_does_not_apply_is_a_dash(tmp_path, capsys):
    path = _onnx(tmp_path, _record(tmp_path))
    _, out, _ = run_cli(capsys, "check", path)  # in process the console is 200 columns wide: the table
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    header = [cell.strip() for cell in next(line for line in out.splitlines() if line.startswith("┃")).split("┃")[1:-1]]
    pointwise = dict(zip(header, next(row for row in rows if row[0] == "pointwise")))
    random = dict(zip(header, next(row for row in rows if row[0] == "random")))
    assert pointwise["var_entropy"] == pointwise["ve_norm"] == pointwise["ve_clean"] == "–"
    assert random["var_entropy"] != "–" and float(random["ve_norm"]) > 1
    _, out, _ = run_cli(capsys, "check", path, "--json")
    assert json.loads(out)["layers"][2]["variance_entropy"] == 0.0  # the data itself is unchanged


def test_the_model_card_marks_a_borderline_verdict(tmp_path):
    """A random layer of 32 filters that reads just past the threshold (found by seed here): the card says
    'borderline' and gives the margin; the JSON summary counts it."""
    pytest.importorskip("matplotlib")
    from filterdb.report import write_model_card

    for seed in range(400):
        weight = np.random.default_rng(seed).standard_normal((32, 1, 3, 3))
        record = ModelRecord(ModelInfo(source="x", format="onnx"), (make_layer("dw", "Conv", weight, groups=32),))
        report = check_model(record)
        verdicts = report.verdicts[0]
        if verdicts and verdicts[0].kind == "random" and verdicts[0].borderline:
            break
    else:
        pytest.fail("no borderline layer among 400 seeds")
    assert 0 < verdicts[0].margin < BORDERLINE_SPREADS and report.summary["n_borderline"] == 1
    page = write_model_card(tmp_path / "card.html", record, report).read_text()
    assert "of them borderline" in page and '<span class="muted">borderline</span>' in page
    assert f"{verdicts[0].margin:.1f}" in page
