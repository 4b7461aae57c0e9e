"""filterdb analyze: exit codes and output of pca / drift / degeneration."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from filterdb.cli import app


@pytest.fixture()
def root(synthetic_zoo):
    """The session's synthetic zoo (filterdb.testing.ZOO_MODELS): the commands only read it."""
    return synthetic_zoo.root


def test_analyze_commands(root, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["analyze", str(root), "pca", "--out", str(tmp_path / "b.npz"), "--threads", "1"])
    assert out.exit_code == 0, out.output
    assert "cumulative" in out.output and (tmp_path / "b.npz").exists()
    out = runner.invoke(app, ["analyze", str(root), "drift", "--by", "visual_category", "--basis",
                              str(tmp_path / "b.npz"), "--min-filters", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["groups"][-1] == "plants" and len(data["matrix"]) == 3
    out = runner.invoke(app, ["analyze", str(root), "drift", "--by", "Visual Category", "--range", "-3,3",
                              "--weights", "uniform", "--per-model", "--min-filters", "0"])
    assert out.exit_code == 0 and "upper triangle" in out.output
    out = runner.invoke(app, ["analyze", str(root), "degeneration", "--by", "task"])
    assert out.exit_code == 0 and "degeneration by task" in out.output


def _exit(capsys, *args):
    from filterdb.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--by", "taks"], "unknown column 'taks'; did you mean 'task'?"),
    (["--by", "colour"], "unknown column 'colour'"),
    (["--by", "task", "--range", "wide"], "--range must be 'bound', 'minmax' or LO,HI"),
    (["--by", "task", "--range", "3,-3"], "range must have lo < hi, got (3.0, -3.0)"),
    (["--by", "task", "--range", "0,0"], "range must have lo < hi, got (0.0, 0.0)"),
    (["--by", "task", "--range", "nan,1"], "range must be two finite numbers, got (nan, 1.0)"),
    (["--by", "task", "--range=-inf,inf"], "range must be two finite numbers"),
    (["--by", "task", "--range", "1,2,3"], "--range LO,HI needs exactly two numbers"),
    (["--by", "task", "--bins", "0"], "bins must be an integer from 1 to 10,000, got 0"),
    (["--by", "task", "--bins", "1000000"], "bins must be an integer from 1 to 10,000, got 1000000"),
])
def test_analyze_drift_usage_errors(root, capsys, args, message):
    code, err = _exit(capsys, "analyze", root, "drift", *args)
    assert code == 2, err
    assert message in err and err.count("\n") == 1  # one error line, no traceback


def test_help_texts_are_complete():
    runner = CliRunner()
    for command in ("pca", "drift", "degeneration"):
        out = runner.invoke(app, ["analyze", "STORE", command, "--help"])
        assert out.exit_code == 0 and "REFERENCE" not in out.output
        options = [line.split()[0] for line in out.output.splitlines() if line.startswith("  -")]
        text = out.output
        for option in options:  # every option line is followed by a description
            rest = text[text.index(option) + len(option):].split("\n  -")[0]
            assert len(rest.split()) >= 2 or option == "--help", (command, option)
