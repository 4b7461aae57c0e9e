"""Hostile monitor logs (issue 17, item 8): every crafted record and a slice of seeded mutants is read or
refused in one line (a FilterDBError), within a bounded heap; a bounded slice of bench/fuzz_monitor_log.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuzz_monitor_log import CRAFTED, html_available, mutants, run_case, valid_log

from filterdb.monitor import MonitorLog, read_log

N_MUTANTS = 60  # the campaign in bench/fuzz_monitor_log.py runs thousands
SEED = 17
# the log's own data is small (< 1 MiB per line, ~50 KB in all but two cases): a bounded read stays far below
PEAK_MIB = 16
PEAK_MIB_MANY_LAYERS = 128  # "10,000 layers" is a legitimate 400 KB log: a table of 10,000 rows


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_log_is_read_or_refused(name: str, tmp_path: Path) -> None:
    result = run_case(name, CRAFTED[name](), tmp_path, html=False)
    assert result.outcome in ("ok", "refused"), f"{name}: {result.detail}"
    assert result.peak_mib < (PEAK_MIB_MANY_LAYERS if name == "10,000 layers" else PEAK_MIB), result
    if name.startswith(("metric ", "alert values ", "step ", "epoch ", "line ")):
        assert result.outcome == "refused", f"{name} was accepted"


@pytest.mark.parametrize("case", ["metric Infinity", "metric nested 100000", "line 64 MiB"])
def test_the_three_holes_of_the_issue_name_line_and_reason(case: str, tmp_path: Path) -> None:
    result = run_case(case, CRAFTED[case](), tmp_path, html=False)
    reason = {"metric Infinity": "the number Infinity is not finite",
              "metric nested 100000": "nested more than 32 levels deep",
              "line 64 MiB": "a line longer than 1,048,576 bytes"}[case]
    assert result.outcome == "refused" and ", line 22: " in result.detail and reason in result.detail
    if case == "line 64 MiB":  # never held whole: the 64 MiB line peaked at twice its size before
        assert result.peak_mib < 4


def test_seeded_mutants_are_read_or_refused(tmp_path: Path) -> None:
    results = [run_case(name, data, tmp_path, html=False) for name, data in mutants(SEED, N_MUTANTS)]
    failed = [f"{r.name}: {r.detail}" for r in results if r.outcome == "failed"]
    assert failed == []
    assert max(r.peak_mib for r in results) < PEAK_MIB
    # the mutants are not all refused at the first byte: the reader's insides are exercised too
    assert sum(r.outcome == "ok" for r in results) > 0 and sum(r.outcome == "refused" for r in results) > 0


@pytest.mark.skipif(not html_available(), reason="the HTML page needs matplotlib (extra plot)")
@pytest.mark.parametrize("name", ["name with escapes", "half-written last line"])
def test_the_html_page_of_accepted_hostile_logs(name: str, tmp_path: Path) -> None:
    result = run_case(name, CRAFTED[name](), tmp_path, html=True)
    assert result.outcome == "ok", result.detail
    page = (tmp_path / "page.html").read_text()
    assert page.rstrip().endswith("</html>") and "<link=" not in page  # names are text, never markup


@pytest.mark.skipif(not html_available(), reason="the figures need matplotlib (extra plot)")
def test_figures_of_a_hand_built_log_with_infinite_values(tmp_path: Path) -> None:
    # read_log refuses them; a MonitorLog built in Python may still hold them: drawn as gaps, no OverflowError
    from filterdb.monitor._figures import heatmap_figure, layer_figure

    path = tmp_path / "filterdb-monitor.jsonl"
    path.write_bytes(valid_log())
    log = read_log(path)
    layers = log.layers.copy()
    layers.loc[layers.index[::3], "sparsity"] = np.inf
    layers.loc[layers.index[1::3], "orthogonality"] = -np.inf
    hand_built = MonitorLog(path=path, layers=pd.DataFrame(layers), alerts=log.alerts)
    for fig in (heatmap_figure(hand_built, "sparsity"), layer_figure(hand_built, "features.0")):
        fig.savefig(tmp_path / "f.png")
