"""ShuffleNetV2 (torchvision's builders, random weights): the plan knows which channels cross a channel shuffle,
so the pruned module loses the planned share of conv weights ± 2 % at every width; a plan that cannot reach its
target says so, and what it reaches is the most ShuffleNet's structure allows, counted here by hand from the
module's convs. Also: a plan short of its target names the layers that hold the rest (a hand-sized chain), and the
layout is recognised from a module, its state_dict and its ONNX export alike (docs/prune.md, "Coupling")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from filterdb import ModelInfo, ModelRecord
from filterdb.prune import PlanSettings, PrunePlan, prune_plan
from filterdb.readers import make_layer

SHUFFLE = "keep: channel shuffle"


def _shufflenet(name: str):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def _most_removable(model) -> float:
    """The largest share of conv weights any pruning of a torchvision ShuffleNetV2 can remove when the channels
    that cross a shuffle stay, the last conv (conv5, a possible output) stays, and no conv loses more than 90 % of
    its output channels. Counted from the module's blocks, not from the plan: the stem's outputs go with the first
    block's depthwise conv and the inputs of its two 1x1 convs; each branch2's first 1x1 conv loses outputs with
    the depthwise conv after it and the inputs of the 1x1 conv after that; nothing else changes."""
    from torchvision.models.shufflenetv2 import InvertedResidual

    def weights(conv, out: int, inp: int) -> int:
        k = conv.kernel_size[0] * conv.kernel_size[1]
        return out * k if conv.groups > 1 else out * inp * k

    keep = lambda n: -(-n // 10)  # noqa: E731 - at most 90 % of n removed
    convs = [m for m in model.modules() if m.__class__.__name__ == "Conv2d"]
    total = sum(m.weight.numel() for m in convs)
    stem = model.conv1[0]
    stem_keep = keep(stem.out_channels)
    left = weights(stem, stem_keep, stem.in_channels) + model.conv5[0].weight.numel()
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    for n, block in enumerate(blocks):
        expand, depthwise, project = block.branch2[0], block.branch2[3], block.branch2[5]
        inner = keep(expand.out_channels)
        inputs = stem_keep if n == 0 else expand.in_channels
        left += weights(expand, inner, inputs) + weights(depthwise, inner, inner)
        left += weights(project, project.out_channels, inner)
        if len(block.branch1):  # a stride-2 block: its branch1 sees the block input
            down, down_project = block.branch1[0], block.branch1[2]
            inputs = stem_keep if n == 0 else down.in_channels
            left += weights(down, inputs, inputs) + weights(down_project, down_project.out_channels, inputs)
    return 1 - left / total


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
                                  "shufflenet_v2_x2_0"])
def test_every_shufflenet_width_is_pruned_as_planned(name: str) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    from filterdb import read_model
    from filterdb.integrations.torch_pruning import conv_params, plan_pruner

    model = _shufflenet(name)
    example = torch.randn(1, 3, 64, 64)
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    most = _most_removable(model)
    plan = prune_plan(read_model(model), target=0.5)
    planned = plan.params_removed / plan.params_total
    before = conv_params(model)
    plan_pruner(model, plan, example, ignored_layers=[model.fc]).step()
    removed = 1 - conv_params(model) / before
    assert removed == pytest.approx(planned, rel=0.02)
    with torch.no_grad():
        assert model(torch.cat([example, example])).shape == (2, 1000)
    shuffled = [layer for layer, reason in plan.untouched if reason == SHUFFLE]
    after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    # the branch outputs and every depthwise conv of a stage's shuffled input are the plan's "channel shuffle"
    assert sorted(shuffled) == sorted(n for n in widths if n.endswith(("branch1.2", "branch2.5"))
                                      or (n.endswith("branch1.0") and not n.startswith("stage2.")))
    assert all(after[n] == widths[n] for n in shuffled)
    assert all(after[n] < widths[n] for n in widths if n.endswith("branch2.0"))
    if most >= 0.5:
        assert planned >= 0.5 and "out of reach" not in plan.headline()
    else:  # x0_5: conv5 alone is 59 % of its conv weights; the plan removes all the rest may lose, and says so
        assert name == "shufflenet_v2_x0_5"
        assert planned == pytest.approx(most, abs=1e-9)
        assert "out of reach" in plan.headline()
        note = plan.notes[-1]
        assert note.startswith(f"target 50% of conv weights is out of reach: this plan removes the most it may, "
                               f"{most:.1%}")
        conv5 = widths["conv5.0"] * model.conv5[0].in_channels
        assert f"1 layer 'keep: model output' (conv5.0) keeps {conv5 / before:.1%}" in note
        assert "protect_outputs=False" in note


@pytest.mark.torch
@pytest.mark.slow
def test_the_output_layer_may_be_planned_when_the_user_says_so() -> None:
    """x0_5 reaches 50 % once its last conv (which feeds the classifier's linear layer) may be pruned, and the
    pruned module still loses what was planned."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    from filterdb import read_model
    from filterdb.integrations.torch_pruning import conv_params, plan_pruner

    model = _shufflenet("shufflenet_v2_x0_5")
    plan = prune_plan(read_model(model), target=0.5, settings=PlanSettings(protect_outputs=False))
    before = conv_params(model)
    plan_pruner(model, plan, torch.randn(1, 3, 64, 64), ignored_layers=[model.fc]).step()
    assert plan.reduction >= 0.5 and not any("out of reach" in note for note in plan.notes)
    assert 1 - conv_params(model) / before == pytest.approx(plan.reduction, rel=0.02)
    assert model.conv5[0].out_channels < 1024 and model.fc.in_features == model.conv5[0].out_channels


@pytest.mark.torch
def test_the_layout_is_read_from_a_state_dict_and_an_onnx_export(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from filterdb import read_model

    model = _shufflenet("shufflenet_v2_x0_5")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(tmp_path / "m.onnx"), dynamo=False)
    plans = [prune_plan(read_model(model), target=0.3), prune_plan(read_model(tmp_path / "m.pt", trust_pickle=True),
                                                                  target=0.3),
             prune_plan(read_model(tmp_path / "m.onnx"), target=0.3)]
    reasons = [[lp.reason for lp in plan.layers] for plan in plans]
    assert reasons[0].count(SHUFFLE) == 21  # 4 + 8 + 4 branch2.5, 3 branch1.2, 2 depthwise convs of shuffled inputs
    assert reasons[1] == reasons[0] and reasons[2] == reasons[0]
    assert [p.params_removed for p in plans[1:]] == [plans[0].params_removed] * 2


def test_a_plan_short_of_its_target_names_what_holds_the_rest() -> None:
    """c1 (4 channels) feeds c2, a model output. c1 may lose 3 of 4 channels (90 % at most): 3·27 of its 108
    weights and 2·3·9 of c2's 72, 135 of 180 = 75 %; c2 keeps 18 (10 %), c1 27 (15 %)."""
    rng = np.random.default_rng(0)
    record = ModelRecord(ModelInfo(source="test", format="onnx"), (
        make_layer("c1", "Conv", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        make_layer("c2", "Conv", rng.standard_normal((2, 4, 3, 3)).astype(np.float32))))
    plan = prune_plan(record, target=0.8)
    assert plan.reduction == pytest.approx(0.75)
    note = plan.notes[-1]
    assert note == ("target 80% of conv weights is out of reach: this plan removes the most it may, 75.0%. Of the "
                    "conv weights, 1 layer 'keep: model output' (c2) keeps 10.0%; the layers it may prune keep 15.0%, "
                    "each at the most it may lose (90% of its channels, at least 1 kept). 'Model output' is a guess "
                    "from the file (no conv takes those channels: a classifier's last conv feeds a linear layer, a "
                    "concatenation hides its consumers); where the real outputs are left to plan_pruner's "
                    "ignored_layers, PlanSettings(protect_outputs=False) plans those layers too (docs/prune.md, "
                    "'Coupling')")
    assert plan.headline().endswith(
        "(target 80 % by params: out of reach, the notes say which layers it may not touch)")
    assert PrunePlan.from_json(plan.to_json()).notes == plan.notes
    reachable = prune_plan(record, target=0.7)
    assert reachable.reduction >= 0.7 and not any("out of reach" in n for n in reachable.notes)
    assert "out of reach" not in prune_plan(record, free_only=True).headline()  # free-only ignores the target


def test_names_alone_are_not_enough() -> None:
    """A net whose conv names look like ShuffleNet's but whose shapes are not gets the chain by order."""
    rng = np.random.default_rng(0)
    names_shapes = [("conv1.0", (8, 3, 3, 3)), ("stage2.0.branch1.0", (8, 1, 3, 3)),
                    ("stage2.0.branch1.2", (8, 8, 1, 1)),
                    ("stage2.0.branch2.0", (8, 8, 1, 1)), ("stage2.0.branch2.3", (8, 8, 3, 3)),  # not depthwise
                    ("stage2.0.branch2.5", (8, 8, 1, 1)), ("conv5.0", (16, 16, 1, 1))]
    record = ModelRecord(ModelInfo(source="test", format="onnx"), tuple(
        make_layer(n, "Conv", rng.standard_normal(s).astype(np.float32)) for n, s in names_shapes))
    plan = prune_plan(record, target=0.3)
    assert all(lp.reason != SHUFFLE for lp in plan.layers)
    assert not any("ShuffleNetV2" in n for n in plan.notes)


def test_filterdb_prune_prints_why_a_target_is_out_of_reach(tmp_path, capsys) -> None:
    """The command line shows the shortfall in the headline and the note, and keeps it in the JSON."""
    safetensors = pytest.importorskip("safetensors.numpy")
    from helpers import run_cli

    rng = np.random.default_rng(0)
    path = tmp_path / "m.safetensors"
    safetensors.save_file({"c1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                           "c2.weight": rng.standard_normal((2, 4, 3, 3)).astype(np.float32)}, str(path))
    code, out, err = run_cli(capsys, "prune", path, "--target", "0.8", "-o", tmp_path / "p.json")
    assert code == 0, err
    flat = " ".join(out.split())
    assert "(target 80 % by params: out of reach" in flat
    assert "note: target 80% of conv weights is out of reach: this plan removes the most it may, 75.0%" in flat
    assert "'keep: model output' (c2) keeps 10.0%" in flat
    assert any("out of reach" in n for n in PrunePlan.from_json(tmp_path / "p.json").notes)
