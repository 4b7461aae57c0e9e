"""FilterMonitor in a real PyTorch Lightning Trainer: check's numbers, the trainer's loggers, a clean stop."""

from __future__ import annotations

import csv
import json
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
L = pytest.importorskip("lightning.pytorch")

from filterdb.cli import main
from filterdb.integrations.lightning import FilterMonitor
from filterdb.monitor import AlertRules, MonitorAlert, read_log
from monitor_training import DigitsCNN, digits_tensors


class DigitsModule(L.LightningModule):
    def __init__(self, freeze: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = DigitsCNN()
        if freeze:
            self.net.conv3.weight.requires_grad_(False)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def loader(n=640):
    x, y = digits_tensors()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:n], y[:n]), batch_size=64)


def trainer(tmp_path, callback, epochs=2):
    return L.Trainer(max_epochs=epochs, callbacks=[callback], default_root_dir=tmp_path,
                     logger=L.loggers.CSVLogger(tmp_path),
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     log_every_n_steps=1, deterministic=True)


def test_epoch_evaluations_equal_check_on_the_saved_checkpoint_and_reach_the_logger(tmp_path, capsys):
    callback = FilterMonitor()
    fit = trainer(tmp_path, callback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own hints about small data sets
        fit.fit(DigitsModule(), loader())
    monitor = callback.monitor
    assert monitor.closed and monitor.log_path.parent == tmp_path / "lightning_logs" / "version_0"
    log = read_log(monitor.log_path)
    assert log.steps == [0, 10, 20] and set(log.layers["epoch"].dropna()) == {0, 1}
    fit.save_checkpoint(tmp_path / "digits.ckpt")
    with pytest.raises(SystemExit) as exc:
        main(["check", "--json", str(tmp_path / "digits.ckpt")])
    assert exc.value.code == 0
    reference = json.loads(capsys.readouterr().out)["layers"]
    ours = monitor.last_report.to_dict()["layers"]
    assert [r["name"] for r in ours] == [r["name"] for r in reference] == ["net.conv1", "net.conv2", "net.conv3"]
    for mine, theirs in zip(ours, reference):
        for key, value in theirs.items():
            if isinstance(value, float) and key != "conv_depth_norm":
                assert mine[key] == pytest.approx(value, abs=1e-6, rel=0), key
        assert [v["kind"] for v in mine["verdicts"]] == [v["kind"] for v in theirs["verdicts"]]
    # the trainer's logger got a few scalars per layer at each evaluation (CSVLogger: metrics.csv)
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    logged = [(int(r["step"]), float(r["filterdb/net.conv3/variance_entropy_norm"])) for r in rows
              if r.get("filterdb/net.conv3/variance_entropy_norm")]
    expected = log.layers[log.layers["name"] == "net.conv3"].drop_duplicates("step", keep="last")
    assert [s for s, _ in logged] == list(expected["step"])
    assert [v for _, v in logged] == pytest.approx(list(expected["variance_entropy_norm"]), rel=1e-6)


def test_the_one_line_form_reaches_the_callback_after_import_filterdb():
    import filterdb

    assert filterdb.integrations.lightning.FilterMonitor is FilterMonitor


def test_on_alert_stop_ends_fit_through_trainer_should_stop(tmp_path):
    callback = FilterMonitor(every=2, on_alert="stop", max_overhead=None, rules=AlertRules(random_after=0.2))
    fit = trainer(tmp_path, callback, epochs=5)
    with pytest.warns(MonitorAlert, match="layer 'net.conv3': the layer still looks untrained after 20% of training"):
        fit.fit(DigitsModule(freeze=True), loader())
    # 5 epochs of 10 steps: 20 % is step 10, the first evaluation (every 2 steps) at or after it
    assert [(a.layer, a.step) for a in callback.monitor.alerts] == [("net.conv3", 10)]
    assert fit.should_stop and fit.global_step < 50
    assert callback.monitor.closed
