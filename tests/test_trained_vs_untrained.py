"""A CNN trained for a few epochs on sklearn's digits loses the "random" verdict it has at initialisation."""

from __future__ import annotations

import numpy as np
import pytest

import filterdb
from filterdb.check import check_model
from filterdb.errors import UnsupportedFormatError
from filterdb.readers import make_layer
from filterdb.types import ModelInfo, ModelRecord

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def make_net() -> "torch.nn.Module":
    # Conv layers of 16, 512 and 2048 filters: the first is below Thresholds.min_filters on purpose.
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def read_live(module: "torch.nn.Module") -> ModelRecord:
    """Through filterdb's live-module reader; until that reader is registered, from module.weight directly."""
    try:
        return filterdb.read_model(module)
    except UnsupportedFormatError:
        layers = tuple(
            make_layer(name, "Conv2d", m.weight.detach().cpu().numpy(), groups=m.groups)
            for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)
        )
        return ModelRecord(ModelInfo(source=type(module).__name__, format="pytorch"), layers)


@pytest.fixture(scope="module")
def nets():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        images, labels = load_digits(return_X_y=True)
        x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        y = torch.tensor(labels)
        untrained = make_net()
        trained = make_net()
        trained.load_state_dict(untrained.state_dict())
        optimiser = torch.optim.Adam(trained.parameters(), lr=0.01)
        for _ in range(6):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                batch = order[i: i + 64]
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(trained(x[batch]), y[batch]).backward()
                optimiser.step()
        with torch.no_grad():
            accuracy = {name: (net(x).argmax(1) == y).float().mean().item()
                        for name, net in (("untrained", untrained), ("trained", trained))}
    finally:
        torch.set_num_threads(threads)
    return untrained, trained, accuracy


def test_training_worked(nets):
    # What the verdict tests below need is a net that learned, not a tuned accuracy: 0.89-0.95 across BLAS builds
    # and CPUs, against 0.1 for chance. The margins hold for any machine whose training did not break.
    _, _, accuracy = nets
    assert accuracy["untrained"] < 0.3
    assert accuracy["trained"] > 0.7


def test_untrained_larger_layers_read_random(nets):
    untrained, _, _ = nets
    report = check_model(read_live(untrained))
    assert report.layers["n_filters"].tolist() == [16, 512, 2048]
    assert report.layers["verdicts"].tolist() == [[], ["random"], ["random"]]
    assert (report.layers["variance_entropy_norm"] > 1).all()
    assert (report.layers["neighbour_corr"].iloc[1:].abs() < 0.05).all()  # random init: uncorrelated taps


def test_trained_layers_are_not_random(nets):
    _, trained, _ = nets
    report = check_model(read_live(trained))
    assert all("random" not in kinds for kinds in report.layers["verdicts"])
    judged = report.layers["variance_entropy_norm"].iloc[1:]  # the 16-filter first layer is too small to judge
    assert (judged < 1).all()
    assert (judged > 0.5).all()  # and not degenerate either
    assert (report.layers["neighbour_corr"].iloc[1:] > 0.1).all()  # trained filters are smooth
    assert np.isfinite(report.layers["orthogonality"]).all()
