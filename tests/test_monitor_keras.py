"""FilterMonitor in a real Keras 3 fit (torch backend): check's numbers, the epoch logs, a clean stop."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # no TensorFlow needed: Keras 3 runs on torch
keras = pytest.importorskip("keras", reason="the Keras integration needs the 'keras' package")
pytest.importorskip("sklearn")

from filterdb.cli import main
from filterdb.integrations.keras import FilterMonitor
from filterdb.monitor import AlertRules, MonitorAlert, read_log


def digits():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return (images.reshape(-1, 8, 8, 1) / 16.0).astype("float32")[:640], labels[:640]


def digits_cnn(freeze=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3", trainable=not freeze),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_epoch_evaluations_equal_check_on_the_saved_model_and_reach_the_logs(tmp_path, capsys):
    x, y = digits()
    model = digits_cnn()
    callback = FilterMonitor(log_dir=tmp_path / "logs", rules=AlertRules(random_after=None))  # 20 steps: still random
    history = model.fit(x, y, epochs=2, batch_size=64, callbacks=[callback], verbose=0)
    monitor = callback.monitor
    assert monitor.closed and monitor.alerts == []
    log = read_log(tmp_path / "logs")
    assert log.steps == [0, 10, 20] and log.layer_names == ["conv1", "conv2", "conv3"]
    model.save(tmp_path / "digits.keras")  # Keras' own writer: an independent file of the same weights
    with pytest.raises(SystemExit) as exc:
        main(["check", "--json", str(tmp_path / "digits.keras")])
    assert exc.value.code == 0
    reference = json.loads(capsys.readouterr().out)["layers"]
    ours = monitor.last_report.to_dict()["layers"]
    assert [r["name"] for r in ours] == [r["name"] for r in reference]
    for mine, theirs in zip(ours, reference):
        for key, value in theirs.items():
            if isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=1e-6, rel=0), key
            else:
                assert mine[key] == value, key
    # the epoch logs (History, CSVLogger, TensorBoard) carry the scalars of each epoch's evaluation
    conv3 = log.layers[(log.layers["name"] == "conv3") & (log.layers["step"] > 0)].drop_duplicates("step", keep="last")
    np.testing.assert_allclose(history.history["filterdb/conv3/variance_entropy_norm"],
                               conv3["variance_entropy_norm"], rtol=1e-6)
    assert len([k for k in history.history if k.startswith("filterdb/")]) == 9


def test_on_alert_stop_ends_fit_through_stop_training(tmp_path):
    x, y = digits()
    model = digits_cnn(freeze=True)
    callback = FilterMonitor(every=2, on_alert="stop", max_overhead=None, log_dir=tmp_path,
                             rules=AlertRules(random_after=0.2))
    with pytest.warns(MonitorAlert, match="layer 'conv3': the layer still looks untrained after 20% of training"):
        history = model.fit(x, y, epochs=5, batch_size=64, callbacks=[callback], verbose=0)
    assert [(a.layer, a.step) for a in callback.monitor.alerts] == [("conv3", 10)]
    assert len(history.history["loss"]) < 5  # stopped at the end of the epoch in which the alert fired
    assert read_log(tmp_path).alerts[0]["rule"] == "still-random"
