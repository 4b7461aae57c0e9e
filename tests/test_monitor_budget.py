"""Monitor's time budget never hides what was asked: an explicit `every` that the budget overrides is warned
about once (with the counts and the way out), `filterdb monitor` shows the skipped count, and every warning
points at the caller's line, not at filterdb's."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")

from helpers import run_cli

from filterdb.monitor import Monitor, MonitorAlert, MonitorSkipped, read_log


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3))


def test_an_explicit_every_that_the_budget_skips_is_warned_once_at_the_callers_line():
    monitor = Monitor(small_model(), every=2, max_overhead=1e-12)  # no evaluation fits in this budget
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):
            monitor.step()  # the line the warning must name
    skips = [w for w in caught if issubclass(w.category, MonitorSkipped)]
    assert len(skips) == 1  # once, however many are skipped
    assert skips[0].filename == __file__
    message = str(skips[0].message)
    assert "step 2 that every=2 asked for (1 of 1 due evaluations skipped so far)" in message
    assert "max_overhead=None" in message
    assert (monitor.due, monitor.skipped) == (5, 5)


def test_the_default_every_is_skipped_silently_but_counted():
    monitor = Monitor(small_model(), max_overhead=1e-12)  # every=100 by default: the budget is the contract
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorSkipped)
        for _ in range(300):
            monitor.step()
    assert (monitor.due, monitor.skipped) == (3, 3)


def test_no_budget_no_skip_no_warning():
    monitor = Monitor(small_model(), every=2, max_overhead=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorSkipped)
        for _ in range(10):
            monitor.step()
    assert (monitor.due, monitor.skipped, monitor.last_step) == (5, 0, 10)


def test_an_alert_points_at_the_line_that_called_step():
    model = small_model()
    monitor = Monitor(model, every=1, max_overhead=None)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.warns(MonitorAlert) as caught:
        monitor.step()  # the line the alert must name
    assert {w.filename for w in caught} == {__file__}


def test_an_alert_from_the_optimizer_hook_points_past_torch_to_the_caller():
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, every=1, max_overhead=None, optimizer=optimizer)
    with torch.no_grad():
        model[1].weight.fill_(float("inf"))
    with pytest.warns(MonitorAlert) as caught:
        optimizer.step()  # torch calls the monitor's hook: the warning still names this line
    assert {w.filename for w in caught} == {__file__}
    monitor.close()


def test_filterdb_monitor_shows_the_skipped_count(tmp_path, capsys):
    monitor = Monitor(small_model(), every=2, max_overhead=1e-12, log_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorSkipped)
        warnings.simplefilter("ignore", MonitorAlert)  # the untrained layers are "still random" at close
        for _ in range(10):
            monitor.step()
        monitor.close()
    log = read_log(tmp_path)
    assert log.steps == [0, 10]  # the start and the close: every due step in between was skipped
    code, out, err = run_cli(capsys, "monitor", tmp_path)
    assert code == 0, err
    assert "skipped: 5 of the 5 evaluations that `every` asked for" in out
    code, out, err = run_cli(capsys, "monitor", tmp_path, "--json")
    data = json.loads(out)
    assert (data["due_evaluations"], data["skipped_evaluations"]) == (5, 5)
