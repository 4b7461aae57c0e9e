"""filterdb analyze: exit codes and output of pca / drift / degeneration."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_analysis import MODELS, _model

from filterdb.cli import app
from filterdb.store import init_store


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "zoo"
    st = init_store(path)
    for seed, category, task in MODELS:
        st.ingest(_model(seed, category), {"Name": f"m{seed}", "Visual Category": category, "Task": task})
    return path


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


def test_analyze_bad_input(root):
    from filterdb.cli import main

    with pytest.raises(SystemExit) as e:
        main(["analyze", str(root), "drift", "--by", "colour"])
    assert e.value.code == 1
    runner = CliRunner()
    out = runner.invoke(app, ["analyze", str(root), "drift", "--by", "task", "--range", "wide"])
    assert out.exit_code == 1
