"""The CLI agrees with the study: report --json, analyze drift's floors at 80 columns, analyze pca's numbering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from filterdb.analysis import DriftSettings, Selection, run_drift
from filterdb.testing import build_synthetic_zoo
from helpers import run_cli


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch):
    from filterdb.cli._app import console

    monkeypatch.setattr(console, "width", 80)  # a terminal of 80 columns (piped output gets 200)


def test_report_json_is_the_study(synthetic_zoo, capsys):
    code, out, err = run_cli(capsys, "report", synthetic_zoo.root, "--json", "--by", "visual_category")
    assert code == 0
    data = json.loads(out)  # one object, nothing else on stdout
    assert data["format"] == "filterdb-study-1" and data["errors"] == {}
    assert [a["axis"] for a in data["axes"]] == ["visual_category"]
    # progress: one line per phase on stderr when it is not a terminal
    for phase in ("plan", "basis pass", "histogram pass", "findings"):
        assert re.search(rf"\] {phase}: [0-9.]+ s", err), err


def test_report_json_names_a_failed_section_and_exits_1(tmp_path, capsys):
    store = build_synthetic_zoo(tmp_path / "zoo.fdb")
    shard = sorted((Path(store.root) / "shards" / "3x3").rglob("*.arrow"))[0]
    shard.write_bytes(shard.read_bytes()[:64])
    code, out, err = run_cli(capsys, "report", store.root, "--json", "--no-progress")
    assert code == 1
    data = json.loads(out)
    assert "pca" in data["errors"] and data["degeneration"] is not None
    assert "pca:" in err


def test_analyze_drift_shows_floors_and_marks_cells(synthetic_zoo, capsys):
    code, out, _ = run_cli(capsys, "analyze", synthetic_zoo.root, "drift", "--by", "visual_category")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    r = run_drift(synthetic_zoo, Selection(by="visual_category"), DriftSettings(floors=True))
    rows = {line.split()[1]: line.split() for line in out.splitlines() if re.match(r"^ ?\d+ \S", line)}
    assert list(rows) == list(r.groups)
    for i, g in enumerate(r.groups):
        cols = rows[g]
        floor = r.floors[g]
        assert cols[4] == ("none" if floor is None else f"{floor:.3f}")
        for j, text in enumerate(cols[6:]):
            if i == j:
                continue
            fi, fj = r.floors[g], r.floors[r.groups[j]]
            mark = "?" if fi is None or fj is None else "" if r.matrix[i, j] > max(fi, fj) else "~"
            assert text == f"{r.matrix[i, j]:.3f}{mark}"


def test_analyze_drift_too_wide_becomes_a_ranked_list(figure_zoo, capsys):
    code, out, _ = run_cli(capsys, "analyze", figure_zoo.root, "drift", "--by", "model")
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    r = run_drift(figure_zoo, Selection(by="model"), DriftSettings(floors=True))
    means = r.matrix.sum(1) / (len(r.groups) - 1)
    listed = [m.group(2) for m in (re.match(r"^  ([0-9.]+)  (\S+)  \(floor", line) for line in lines) if m]
    assert listed == [r.groups[i] for i in np.argsort(-means, kind="stable")]
    pair_values = [float(line.split()[0].rstrip("~?")) for line in lines if re.match(r"^  [0-9.]+[~?]? +\S+ / ", line)]
    assert pair_values == sorted(pair_values, reverse=True) and pair_values[0] == pytest.approx(r.matrix.max(),
                                                                                               abs=6e-4)


def test_analyze_pca_numbers_components_from_one_and_explains_signs(synthetic_zoo, capsys):
    code, out, _ = run_cli(capsys, "analyze", synthetic_zoo.root, "pca")
    assert code == 0
    numbers = [int(m.group(1)) for m in (re.match(r"^│\s+(\d)\s+│", line) for line in out.splitlines()) if m]
    assert numbers == list(range(1, 10))
    assert re.search(r"signs: loadings: each component's largest \|loading\| is positive", out)
