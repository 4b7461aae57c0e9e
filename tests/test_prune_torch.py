"""Applying a prune plan to real torch modules with Torch-Pruning: free pruning leaves the outputs unchanged,
plans made from a module, its saved state_dict and its ONNX export agree and map onto the module, and a
residual net pruned through its real graph loses the planned share of weights ± 2 %."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
nn = torch.nn

from filterdb import read_model  # noqa: E402
from filterdb.errors import UsageError  # noqa: E402
from filterdb.integrations.torch_pruning import conv_params, map_layers, plan_pruner  # noqa: E402
from filterdb.prune import prune_plan  # noqa: E402

pytestmark = pytest.mark.torch


def _plain_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(24, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


class _Residual(nn.Module):
    def __init__(self, batch_norm: bool = True) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(64) if batch_norm else nn.Identity()
        self.a = nn.Conv2d(64, 96, 3, padding=1, bias=False)
        self.b = nn.Conv2d(96, 64, 3, padding=1, bias=False)
        self.c = nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)
        self.dw = nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False)
        self.pw = nn.Conv2d(128, 40, 1, bias=False)
        self.head = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = x + self.b(torch.relu(self.a(x)))  # residual: stem and b share channels
        x = torch.relu(self.pw(torch.relu(self.dw(torch.relu(self.c(x))))))
        return self.head(x.mean((2, 3)))


def test_free_pruning_leaves_the_outputs_unchanged() -> None:
    model = _plain_net().eval()
    with torch.no_grad():
        for index, channels in ((0, [2, 5, 9]), (2, [3, 17])):
            model[index].weight[channels] = 0.0
            model[index].bias[channels] = 0.0
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        before = model(x)
    plan = prune_plan(read_model(model), free_only=True)
    assert {lp.name: sorted(lp.remove) for lp in plan.layers} == {"0": [2, 5, 9], "2": [3, 17], "4": []}
    assert plan.free_params == plan.params_removed > 0
    plan_pruner(model, plan, x[:1], match_params=False, ignored_layers=[model[8]]).step()
    assert (model[0].out_channels, model[2].out_channels, model[2].in_channels) == (13, 22, 13)
    with torch.no_grad():
        after = model(x)
    assert float((after - before).abs().max() / before.abs().max()) <= 1e-4


def test_plans_from_the_module_its_state_dict_and_its_onnx_export_agree(tmp_path) -> None:
    """Without batch norm the three files hold the same weights (an exporter folds a batch norm into the conv
    before it, which rescales its channels and so, rightly, their scores: docs/prune.md)."""
    pytest.importorskip("onnx")
    model = _Residual(batch_norm=False).eval()
    state = tmp_path / "weights.pt"
    torch.save(model.state_dict(), state)
    exported = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(exported), dynamo=False)
    plans = {source: prune_plan(read_model(path), target=0.4)
             for source, path in (("module", model), ("state_dict", state), ("onnx", exported))}
    ratios = {source: [lp.ratio for lp in plan.layers] for source, plan in plans.items()}
    assert ratios["module"] == ratios["state_dict"] == ratios["onnx"]
    for source, plan in plans.items():  # every plan's names land on the same convs of the module
        mapping = map_layers(model, plan)
        assert [mapping[lp.name] for lp in plan.layers] == [model.stem, model.a, model.b, model.c, model.dw, model.pw]


def test_a_plan_of_another_model_is_refused() -> None:
    plan = prune_plan(read_model(_plain_net()), target=0.4)
    with pytest.raises(UsageError, match="match no conv layer"):
        map_layers(_Residual(), plan)


def test_a_residual_net_loses_the_planned_share_through_its_real_graph() -> None:
    model = _Residual().eval()
    example = torch.randn(1, 3, 16, 16)
    plan = prune_plan(read_model(model), target=0.5)
    before = conv_params(model)
    plan_pruner(model, plan, example, ignored_layers=[model.head]).step()
    removed = 1 - conv_params(model) / before
    planned = plan.params_removed / plan.params_total
    assert abs(removed - planned) <= 0.02 * planned
    assert model.stem.out_channels == model.b.out_channels  # the residual add stays consistent
    assert model.dw.in_channels == model.dw.out_channels == model.c.out_channels == model.dw.groups
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
