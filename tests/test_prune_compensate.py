"""Data-free compensation of removed channels (filterdb.integrations._compensate), on real small nets whose
batch norms hold real running statistics: merging an exact duplicate changes no output, and on a net trained
on scikit-learn's digits the compensated removal keeps the outputs closer to the unpruned net's than plain
removal does (measured on the held-out images)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tp = pytest.importorskip("torch_pruning")
nn = torch.nn
F = torch.nn.functional

from filterdb.integrations._compensate import compensate_group, relu_gaussian_mean  # noqa: E402

pytestmark = pytest.mark.torch


def _net(width: int = 12) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0 - 0.3).astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def _calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Real running statistics: the batch norms' cumulative averages over the images."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch Adam on the first 1,400 digits (a few seconds on a CPU); the held-out images and their outputs."""
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(model(x[:1400]), y[:1400]).backward()
        optimiser.step()
    model.eval()
    test = x[1400:]
    with torch.no_grad():
        return test, model(test)


def _remove(model: nn.Module, layer: nn.Module, channels: list[int], compensate: bool) -> None:
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 1, 8, 8))
    group = graph.get_pruning_group(layer, tp.prune_conv_out_channels, channels)
    if compensate:
        compensate_group(group, graph)
    else:
        group.prune()


def test_relu_gaussian_mean_matches_numerical_integration() -> None:
    from scipy import integrate, stats

    for mean, std in ((0.3, 1.2), (-1.0, 0.5), (2.0, 0.1), (0.0, 1.0)):
        expected, _ = integrate.quad(lambda y: max(y, 0.0) * stats.norm.pdf(y, mean, std), -20, 20, points=[0.0])
        got = float(relu_gaussian_mean(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)))
        assert math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    assert float(relu_gaussian_mean(torch.tensor(-0.5), torch.tensor(0.0))) == 0.0


def test_merging_an_exact_duplicate_changes_no_output() -> None:
    torch.manual_seed(0)
    model = _net()
    x, _ = _digits()
    with torch.no_grad():
        model[0].weight[5] = 2.5 * model[0].weight[2]  # channel 5 repeats channel 2, scaled
        model[1].weight[5] = model[1].weight[2]
        model[1].bias[5] = model[1].bias[2]
    _calibrate(model, x)
    with torch.no_grad():
        before = model(x)
    _remove(model, model[0], [5], compensate=True)
    assert model[0].out_channels == 11 and model[3].in_channels == 11
    with torch.no_grad():
        after = model(x)
    assert float((after - before).abs().max() / before.abs().max()) <= 1e-4
    # the same removal without the merge does change the outputs: the test can fail
    torch.manual_seed(0)
    plain = _net()
    with torch.no_grad():
        plain[0].weight[5] = 2.5 * plain[0].weight[2]
        plain[1].weight[5] = plain[1].weight[2]
        plain[1].bias[5] = plain[1].bias[2]
    _calibrate(plain, x)
    _remove(plain, plain[0], [5], compensate=False)
    with torch.no_grad():
        assert float((plain(x) - before).abs().max() / before.abs().max()) > 1e-3


def test_compensation_keeps_a_trained_net_closer_than_plain_removal() -> None:
    x, y = _digits()
    torch.manual_seed(0)
    model = _net(24)
    test, reference = _train(model, x, y, steps=60)
    errors = {}
    for compensate in (False, True):
        pruned = _net(24)
        pruned.load_state_dict(model.state_dict())
        pruned.eval()
        _remove(pruned, pruned[0], list(range(0, 24, 2)), compensate)  # half the first layer's channels
        with torch.no_grad():
            errors[compensate] = float(((pruned(test) - reference) ** 2).mean())
    assert errors[True] < 0.8 * errors[False], errors


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def test_a_compensated_plan_on_a_residual_net_stays_closer_than_the_plain_step() -> None:
    """Through plan_pruner and Torch-Pruning's real graph: residual groups couple several batch norms."""
    from filterdb import read_model
    from filterdb.integrations.torch_pruning import compensated_step, plan_pruner
    from filterdb.prune import PlanSettings, prune_plan

    x, y = _digits()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(), _Block(24),
                          nn.Conv2d(24, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    test, reference = _train(model, x, y, steps=25)
    # over several targets: one plan's channels can favour the plain removal (measured: 0.4, 1.51 against 2.50)
    errors: dict[float, dict[bool, float]] = {}
    for target in (0.2, 0.3, 0.4, 0.5, 0.6):
        plan = prune_plan(read_model(model), target=target, settings=PlanSettings(strategy="compensated"))
        errors[target] = {}
        for compensate in (False, True):
            pruned = copy_of(model)
            pruner = plan_pruner(pruned, plan, x[:1], ignored_layers=[pruned[-1]], match_params=False)
            if compensate:
                done = compensated_step(pruner)
                assert done.folded + done.merged > 0 and done.groups > 0
            else:  # plain removal: the groups as Torch-Pruning yields them (step() itself would compensate)
                for group in pruner.step(interactive=True):
                    group.prune()
            with torch.no_grad():
                out = pruned(test)
            assert torch.isfinite(out).all()
            errors[target][compensate] = float(((out - reference) ** 2).mean())
    closer = sum(e[True] < e[False] for e in errors.values())
    assert closer >= 3, errors  # measured: 4 of 5
    assert sum(e[True] for e in errors.values()) < 0.8 * sum(e[False] for e in errors.values()), errors  # 0.57
    # the plan says "compensated": plan_pruner's own step() compensates, with the same outputs
    pruned = copy_of(model)
    report = plan_pruner(pruned, plan, x[:1], ignored_layers=[pruned[-1]], match_params=False).step()
    assert report.groups > 0
    with torch.no_grad():
        assert float(((pruned(test) - reference) ** 2).mean()) == pytest.approx(errors[0.6][True], rel=1e-6)


def copy_of(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)
