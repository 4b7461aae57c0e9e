"""filterdb.Monitor on plain PyTorch: the numbers of `filterdb check`, alerts on injected faults, the log,
the step budget, loggers and snapshots. Real training on sklearn's digits (tests/monitor_training.py)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import filterdb
from filterdb.cli import main
from filterdb.errors import UnsupportedFormatError
from filterdb.monitor import AlertRules, Monitor, MonitorAlert, MonitorSkipped, read_log
from monitor_training import first_verdict_step, make_run

EVERY = 8
STEPS = 80


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and fair on a shared CI machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(fault) -> (run, monitor): each fault trained once per module, with a log and a checkpoint per step."""
    cache = {}

    def get(fault):
        if fault not in cache:
            folder = tmp_path_factory.mktemp(fault)
            run = make_run(fault, folder, steps=STEPS)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MonitorAlert)
                monitor = Monitor(run.model, every=EVERY, log_dir=folder / "log", max_overhead=None,
                                  total_steps=run.steps)
                run.train(lambda step: monitor.step())
                monitor.close()
            cache[fault] = (run, monitor)
        return cache[fault]

    return get


def check_json(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--json", str(path)])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0
    return json.loads(out)


def test_the_last_step_equals_filterdb_check_on_the_saved_model(runs, capsys):
    run, monitor = runs("none")
    reference = check_json(run.checkpoints[STEPS], capsys)["layers"]
    log = [json.loads(line) for line in monitor.log_path.read_text().splitlines()]
    last = [r for r in log if "alert" not in r and r["step"] == STEPS][-len(reference):]
    assert [r["name"] for r in last] == [r["name"] for r in reference] == ["conv1", "conv2", "conv3"]
    for ours, theirs in zip(last, reference):
        assert set(ours) == set(theirs) | {"step", "epoch", "due_evaluations", "skipped_evaluations"}
        for key, value in theirs.items():
            if isinstance(value, float):
                assert ours[key] == pytest.approx(value, abs=1e-6, rel=0), key
            elif key not in ("depth_source",):  # a state_dict has no graph: depth from order there
                assert ours[key] == value, key


def test_a_healthy_run_raises_no_alert(runs):
    run, monitor = runs("none")
    assert monitor.alerts == []
    assert first_verdict_step(run, "random") == (0, "conv2")  # untrained at step 0 ...
    assert monitor.last_report.layers["verdicts"].map(len).sum() == 0  # ... and healthy at the end


@pytest.mark.parametrize("fault, kinds", [
    ("lr100", {"non-finite", "low-diversity"}),  # learning rate × 100: divergence or collapse
    ("weight-decay", {"low-diversity"}),  # heavy weight decay on an over-parameterised net
    ("prune", {"sparse"}),  # 75 % of conv3's filters zeroed at half-time
])
def test_an_alert_fires_within_one_interval_of_the_verdict_on_a_checkpoint(runs, fault, kinds):
    run, monitor = runs(fault)
    alerts = [a for a in monitor.alerts if a.kind in kinds]
    assert alerts, f"{fault}: no {kinds} alert; got {monitor.alerts}"
    for alert in alerts:
        assert alert.rule in ("verdict", "non-finite", "sparsity-jump", "entropy-drop")
    # every layer that check on a checkpoint shows with the verdict got an alert no later than one interval after
    for kind in kinds:
        per_layer = {}
        for step, path in sorted(run.checkpoints.items()):
            report = filterdb.check_model(filterdb.read_model(path))
            for name, verdicts in zip(report.layers["name"], report.layers["verdicts"]):
                if kind in verdicts:
                    per_layer.setdefault(name, step)
        for name, first in per_layer.items():
            fired = [a.step for a in alerts if a.layer == name and a.kind == kind]
            assert fired and fired[0] <= first + EVERY, (fault, name, first, fired)


def test_a_frozen_layer_alerts_once_half_of_training_has_passed(runs):
    run, monitor = runs("frozen")
    random_alerts = [a for a in monitor.alerts if a.kind == "random"]
    assert [(a.layer, a.rule, a.step) for a in random_alerts] == [("conv3", "still-random", STEPS // 2)]
    assert random_alerts[0].values == {"variance_entropy_norm": pytest.approx(random_alerts[0].values[
        "variance_entropy_norm"]), "random_after": 0.5}
    assert random_alerts[0].values["variance_entropy_norm"] > 1.0
    # the reference: check on the checkpoint of that step calls conv3 random (it never changed) and conv2 not
    report = filterdb.check_model(filterdb.read_model(run.checkpoints[STEPS // 2]))
    assert dict(zip(report.layers["name"], report.layers["verdicts"])) == {"conv1": [], "conv2": [],
                                                                          "conv3": ["random"]}
    assert "rule: 'random' after 50% of training" in random_alerts[0].message


def test_without_a_known_length_a_still_random_layer_alerts_at_close(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(32, 32, 3)  # 1,024 filters, never trained
    with pytest.warns(MonitorAlert, match="still looks untrained after the end of training"):
        with Monitor(model, every=5, max_overhead=None) as monitor:
            for _ in range(12):
                monitor.step()
    assert [(a.kind, a.step) for a in monitor.alerts] == [("random", 12)]


def test_non_finite_weights_alert_at_the_next_due_step_and_stop_ends_training(tmp_path):
    run = make_run("none", tmp_path, steps=60)

    def poison(step, model):
        if step == 13:
            with torch.no_grad():
                model.conv2.weight[0, 0, 1, 1] = float("inf")

    run.after_step = poison
    # a budget so small that no regular evaluation runs: the non-finite check still forces one
    monitor = Monitor(run.model, every=10, max_overhead=1e-12, on_alert="stop", log_dir=tmp_path / "log")
    with warnings.catch_warnings(), pytest.warns(MonitorAlert) as warned:
        warnings.simplefilter("ignore", MonitorSkipped)  # the skips are the point here (test_monitor_budget.py)
        stopped_at = run.train(lambda step: monitor.step())
    monitor.close()
    assert any(re.fullmatch(r"layer 'conv2': \d+ weight\(s\) are NaN or infinite .*", str(w.message)) for w in warned)
    assert stopped_at == 20
    # by step 20 the Inf has spread through the gradients into every layer; one alert each, nothing else
    assert [(a.kind, a.layer, a.rule, a.step) for a in monitor.alerts] == [
        ("non-finite", name, "non-finite", 20) for name in ("conv1", "conv2", "conv3")]
    assert monitor.skipped == 1  # step 10: over budget, all weights finite
    log = read_log(tmp_path / "log")
    assert log.steps == [0, 20]
    n_bad = log.layers.set_index("name")["n_nonfinite"][log.layers["step"].to_numpy() == 20]
    assert [a["values"]["n_nonfinite"] for a in log.alerts] == list(n_bad)


def test_the_budget_skips_due_evaluations_and_none_evaluates_every_interval(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3))
    tight = Monitor(model, every=2, max_overhead=1e-12)
    exact = Monitor(model, every=2, max_overhead=None)
    with pytest.warns(MonitorSkipped):  # an explicit every that the budget overrides is said (test_monitor_budget.py)
        for _ in range(10):
            tight.step()
            exact.step()
    assert (tight.skipped, tight.last_step) == (5, 0)
    assert (exact.skipped, exact.last_step) == (0, 10)


def test_the_optimizer_hook_counts_steps_without_a_call(tmp_path):
    run = make_run("none", tmp_path, steps=25)
    monitor = Monitor(run.model, every=10, optimizer=run.optimizer, max_overhead=None, log_dir=tmp_path / "log")
    run.train(lambda step: False)
    monitor.close()
    assert read_log(tmp_path / "log").steps == [0, 10, 20, 25]
    run.optimizer.step()  # the hook is gone after close
    assert monitor.current_step == 25


def test_log_records_carry_checks_keys_and_alert_records(runs):
    _, monitor = runs("prune")
    records = [json.loads(line) for line in monitor.log_path.read_text().splitlines()]
    alerts = [r for r in records if "alert" in r]
    layers = [r for r in records if "alert" not in r]
    assert {r["step"] for r in layers} == set(range(0, STEPS + 1, EVERY))
    assert all(set(r) == set(layers[0]) for r in layers) and {"step", "epoch", "verdicts", "sparsity"} <= set(layers[0])
    assert alerts == [{"alert": {"kind": "sparse", "layer": "conv3", "rule": "verdict",
                                 "values": {"sparsity": 0.75},
                                 "message": alerts[0]["alert"]["message"]}, "step": STEPS // 2, "epoch": None}]
    assert "rule: the verdict of filterdb check" in alerts[0]["alert"]["message"]
    per_event = max(sum(len(json.dumps(r)) for r in layers if r["step"] == s) for s in range(0, STEPS + 1, EVERY))
    assert per_event <= 50_000


def test_rules_are_configurable_and_validated():
    with pytest.raises(ValueError, match=r"AlertRules.sparsity_jump must be in \(0, 1\] or None, got 2"):
        AlertRules(sparsity_jump=2)
    with pytest.raises(ValueError, match="AlertRules.verdicts must be a tuple of verdict kinds"):
        AlertRules(verdicts=("sparse", "dead"))
    model = torch.nn.Conv2d(32, 32, 3)
    with pytest.raises(ValueError, match="Monitor every must be an integer >= 1, got 0"):
        Monitor(model, every=0)
    with pytest.raises(ValueError, match="on_alert must be 'warn' or 'stop'"):
        Monitor(model, on_alert="raise")
    with pytest.raises(UnsupportedFormatError, match="cannot watch a builtins.object"):
        Monitor(object())
    monitor = Monitor(model, rules=AlertRules(random_after=None))
    monitor.close()
    assert monitor.alerts == []  # the untrained layer would alert at close with the default rules
    with pytest.raises(filterdb.FilterDBError, match="this Monitor is closed"):
        monitor.step()


def test_scalars_reach_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = make_run("none", tmp_path, steps=20)
    monitor = Monitor(run.model, every=10, max_overhead=None, tensorboard=tmp_path / "tb", log_dir=tmp_path)
    run.train(lambda step: monitor.step())
    monitor.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = events.Tags()["scalars"]
    assert sorted(tags) == sorted(f"filterdb/{layer}/{metric}" for layer in ("conv1", "conv2", "conv3")
                                  for metric in ("sparsity", "variance_entropy_norm", "orthogonality"))
    entropy = events.Scalars("filterdb/conv3/variance_entropy_norm")
    log = read_log(tmp_path).layers
    expected = log[log["name"] == "conv3"].drop_duplicates("step", keep="last")
    assert [e.step for e in entropy] == list(expected["step"])
    np.testing.assert_allclose([e.value for e in entropy], expected["variance_entropy_norm"], rtol=1e-6)


def test_snapshots_go_into_a_store_and_drift_by_step_reads_them(tmp_path, capsys):
    run = make_run("none", tmp_path, steps=20)
    monitor = Monitor(run.model, every=5, max_overhead=None, snapshot_store=tmp_path / "runs.fdb",
                      snapshot_every=2, name="digits")
    run.train(lambda step: monitor.step())
    monitor.close()
    store = filterdb.open_store(tmp_path / "runs.fdb")
    models = store.sql("SELECT model, step FROM models ORDER BY CAST(step AS INTEGER)").values.tolist()
    assert [tuple(m) for m in models] == [("digits@step=0", "0"), ("digits@step=10", "10"), ("digits@step=20", "20")]
    # the stored filters are the checkpoint's (float16 store: within 2**-11 of the layer's max |w|)
    (layer_id,), = store.sql("SELECT layer_id FROM layers WHERE model = ? AND layer = ?",
                             ["digits@step=10", "conv3"]).values.tolist()
    batch, ids = next(store.iter_filters("3x3", where="model = ?", params=["digits@step=10"], scaled=False,
                                         with_layer_ids=True))
    stored = batch[ids == layer_id]
    saved = torch.load(run.checkpoints[10])["conv3.weight"].numpy().reshape(-1, 9)
    np.testing.assert_allclose(stored, saved, rtol=0, atol=np.abs(saved).max() * 2.0**-11)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(tmp_path / "runs.fdb"), "drift", "--by", "CAST(step AS INTEGER)", "--bins", "16"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "3 groups" in out and "7,728 filters" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_weights_are_read_in_place(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 64, 3), torch.nn.Conv2d(64, 64, 3)).cuda()
    monitor = Monitor(model, every=1, max_overhead=None)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp_path / "m.pt")
    reference = check_json(tmp_path / "m.pt", capsys)["layers"]
    got = monitor.last_report.to_dict()["layers"]
    for ours, theirs in zip(got, reference):
        assert ours["variance_entropy_norm"] == pytest.approx(theirs["variance_entropy_norm"], abs=1e-6)
        assert ours["sparsity"] == theirs["sparsity"]
    assert next(model.parameters()).is_cuda
