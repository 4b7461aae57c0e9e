"""Errors at the edges say the real cause: a mistyped command, a missing store for `report`, and a grouping axis
that no model has a value for."""

from __future__ import annotations

import pytest
from helpers import run_cli

import filterdb
from filterdb.testing import synthetic_record


def test_a_mistyped_command_gets_a_suggestion(capsys):
    code, _, err = run_cli(capsys, "chek", "model.onnx")
    assert code == 2
    assert "unknown command 'chek'; did you mean 'check'?" in err


def test_a_command_far_from_any_lists_the_commands(capsys):
    code, _, err = run_cli(capsys, "zzzzzz")
    assert code == 2
    assert "unknown command 'zzzzzz'" in err and "check" in err


def test_report_on_a_missing_store_says_so_like_every_store_command(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    missing = tmp_path / "nosuch.fdb"
    report = run_cli(capsys, "report", missing, "-o", tmp_path / "r.html")
    models = run_cli(capsys, "models", missing)
    assert report[0] == models[0] == 1
    assert f"{missing}: no such store; create one with `filterdb init {missing}`" in report[2]
    assert not (tmp_path / "r.html").exists()


def test_drift_by_an_axis_no_model_has_names_the_cause(capsys, empty_store):
    for seed in range(3):  # models without any metadata: no task, no visual category
        filterdb.ingest_record(empty_store, synthetic_record(seed, name=f"m{seed}"))
    code, _, err = run_cli(capsys, "analyze", empty_store.root, "drift", "--by", "task")
    assert code == 1
    assert "no model in the selection has a value for 'task'" in err
    assert "--manifest" in err and "'model'" in err
    code, out, err = run_cli(capsys, "analyze", empty_store.root, "drift", "--by", "model")  # the suggested axis
    assert code == 0, err
