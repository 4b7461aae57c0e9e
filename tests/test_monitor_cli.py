"""`filterdb monitor LOG`: reading the monitor's log (also hostile ones), the summary, the HTML page in Chromium."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")

from filterdb.cli import main
from filterdb.errors import ModelNotFoundError
from filterdb.monitor import LOG_NAME, Monitor, MonitorAlert, MonitorLogError, read_log, summarize


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    """A monitor log of a hand-made run: conv_a is pruned (75 % of its filters zeroed) at step 20, conv_b
    never changes (stays random)."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("conv_a", torch.nn.Conv2d(32, 32, 3))  # 1,024 filters: large enough for a confident verdict
    model.add_module("conv_b", torch.nn.Conv2d(32, 32, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorAlert)
        monitor = Monitor(model, every=10, log_dir=folder, max_overhead=None, total_steps=40)
        for step in range(1, 41):
            if step == 20:
                with torch.no_grad():
                    model.conv_a.weight[:24] = 0  # 768 of 1,024 filters
            monitor.step()
        monitor.close()
    return folder


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_the_log_reads_back_with_alerts_and_summary(log_dir):
    log = read_log(log_dir)
    assert log.path == log_dir / LOG_NAME
    assert log.steps == [0, 10, 20, 30, 40] and log.layer_names == ["conv_a", "conv_b"]
    kinds = [(a["kind"], a["layer"], a["rule"], a["step"]) for a in log.alerts]
    # the sparsity jump (0 → 0.75) and the verdict arrive together: one alert per layer and kind, the verdict's
    assert kinds == [("sparse", "conv_a", "verdict", 20), ("random", "conv_b", "still-random", 20)]
    summary = summarize(log).set_index("name")
    assert summary.loc["conv_a", "sparsity_first"] == 0.0 and summary.loc["conv_a", "sparsity_last"] == 0.75
    assert summary.loc["conv_a", "alerts"] == ["sparse at step 20 (verdict)"]
    assert summary.loc["conv_b", "verdicts"] == ["random"]


def test_the_command_prints_the_summary_and_gates_on_alerts(log_dir, capsys):
    code, out, _ = run(["monitor", str(log_dir)], capsys)
    assert code == 0
    assert "5 evaluations, steps 0 – 40" in out
    assert "0.000 → 0.750" in out and "sparse at step 20 (verdict)" in out
    assert "alert step 20: layer 'conv_a': the layer is now 'sparse'" in out
    code, out, _ = run(["monitor", str(log_dir / LOG_NAME), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["steps"] == [0, 10, 20, 30, 40]
    assert [layer["name"] for layer in data["layers"]] == ["conv_a", "conv_b"]
    assert data["alerts"][0]["values"] == {"sparsity": 0.75}
    assert run(["monitor", str(log_dir), "--fail-on", "sparse"], capsys)[0] == 3
    assert run(["monitor", str(log_dir), "--fail-on", "non-finite"], capsys)[0] == 0
    code, _, err = run(["monitor", str(log_dir), "--fail-on", "dead"], capsys)
    assert code == 2 and "unknown alert kind 'dead'" in err


def test_bad_logs_end_in_one_line_naming_the_file(tmp_path, capsys):
    code, _, err = run(["monitor", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 1 and "no such file" in err
    code, _, err = run(["monitor", str(tmp_path)], capsys)
    assert code == 1 and f"no {LOG_NAME} in this directory" in err
    cases = {
        "not json\n": "line 1: not a JSON record",
        "[1, 2]\n": "line 1: expected a JSON object, got list",
        '{"name": "c", "step": -1}\n': "line 1: 'step' must be an integer >= 0, got -1",
        '{"name": "c", "step": 1, "sparsity": "lots"}\n': "line 1: 'sparsity' must be a number or null",
        '{"step": 1}\n': "line 1: a layer record needs a 'name' string",
        '{"alert": 3, "step": 1}\n': "an alert record needs 'alert'",
        "\n\n": "no layer records",
        '{"name": "c", "step": 1}\n' + "x" * (1 << 21) + "\n": "line 2: a line longer than 1,048,576 bytes",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(text)
        with pytest.raises(MonitorLogError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_log(path)
        code, _, err = run(["monitor", str(path)], capsys)
        assert code == 1 and str(path) in err.replace("\n", "")
    with pytest.raises(ModelNotFoundError):
        read_log(tmp_path / "missing")


def test_a_half_written_last_line_of_a_killed_run_is_skipped(log_dir, tmp_path):
    text = (log_dir / LOG_NAME).read_text()
    (tmp_path / LOG_NAME).write_text(text + text.splitlines()[0][:40])
    assert len(read_log(tmp_path).layers) == len(read_log(log_dir).layers)


# ------------------------------------------------------------------------------------------ the HTML page
def test_the_page_is_self_contained_and_shows_the_alerts(log_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    page = tmp_path / "monitor.html"
    code, _, err = run(["monitor", str(log_dir), "--html", str(page)], capsys)
    assert code == 0 and "monitor page written" in err
    text = page.read_text(encoding="utf-8")
    assert text.count('<img src="data:image/png;base64,') == 4  # three heatmaps and the chosen layer
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "Layer conv_a" in text  # the first layer to alert is drawn against step
    assert "the layer is now &#x27;sparse&#x27;" in text
    code, _, err = run(["monitor", str(log_dir), "--html", str(page), "--layer", "conv_x"], capsys)
    assert code == 2 and "did you mean" in err


def test_hostile_layer_names_are_escaped(tmp_path):
    pytest.importorskip("matplotlib")
    from filterdb.monitor._html import monitor_html

    record = {"name": "<script>alert(1)</script>", "step": 0, "epoch": None, "sparsity": 0.1,
              "variance_entropy_norm": 0.9, "orthogonality": 0.5, "verdicts": []}
    (tmp_path / LOG_NAME).write_text(json.dumps(record) + "\n" + json.dumps({**record, "step": 5}) + "\n")
    text = monitor_html(read_log(tmp_path))
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.slow
def test_the_page_renders_in_chromium(log_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from browser import png_distinct_rows, render, require_chromium

    require_chromium()
    page = tmp_path / "monitor.html"
    from filterdb.monitor._html import write_monitor_html

    write_monitor_html(page, read_log(log_dir))
    result = render(page)
    assert result.errors == [], result.errors
    assert png_distinct_rows(result.screenshot) >= 20
    images = result.dom["images"]
    assert len(images) == 4
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0 and 0 < image["width"] <= 1280, image
    assert result.dom["bodyWidth"] <= result.dom["viewportWidth"]
    assert result.dom["scripts"] == 0
    assert [u for u in result.requests if not u.startswith(("file://", "data:"))] == []
    assert result.dom["headings"][:3] == [log_dir.name, "Alerts", "Layers"]
    assert "sparse at step 20 (verdict)" in result.dom["text"]
