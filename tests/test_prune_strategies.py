"""The plan's strategies (novelty, energy, compensated) and allocations (share, uniform): every one meets its
target, keeps coupled layers' ratios equal, and round-trips through JSON with its name; the energy score
against a hand computation; compensated ranks an exact duplicate last; uniform gives every layer one ratio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from filterdb import ModelInfo, ModelRecord
from filterdb.errors import UsageError
from filterdb.prune import PlanSettings, PrunePlan, prune_plan
from filterdb.prune._scores import STRATEGIES, layer_scores
from filterdb.readers import make_layer
from helpers import run_cli


def _record(*layers) -> ModelRecord:
    return ModelRecord(ModelInfo(source="test", format="onnx"), tuple(layers))


def _mobile(seed: int = 0) -> ModelRecord:
    """A chain with a depthwise pair (coupled) and a 16-channel stem on one input channel (input-poor)."""
    rng = np.random.default_rng(seed)
    return _record(make_layer("stem", "Conv", rng.standard_normal((16, 1, 3, 3))),
                   make_layer("expand", "Conv", rng.standard_normal((48, 16, 1, 1))),
                   make_layer("dw", "Conv", rng.standard_normal((48, 1, 3, 3)), groups=48),
                   make_layer("project", "Conv", rng.standard_normal((32, 48, 1, 1))),
                   make_layer("c5", "Conv", rng.standard_normal((64, 32, 3, 3))),
                   make_layer("head", "Conv", rng.standard_normal((10, 64, 1, 1))))


SETTINGS = [PlanSettings(strategy=s, allocation=a) for s in STRATEGIES for a in ("share", "uniform", "global")]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.strategy}-{s.allocation}")
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_every_strategy_meets_its_target_and_keeps_coupled_ratios_equal(settings: PlanSettings, target: float) -> None:
    plan = prune_plan(_mobile(), target=target, settings=settings)
    assert plan.strategy == settings.strategy
    assert target <= plan.reduction <= target + 0.05
    layers = {lp.name: lp for lp in plan.layers}
    assert layers["dw"].ratio == layers["expand"].ratio and layers["dw"].remove == layers["expand"].remove
    assert layers["head"].ratio == 0.0  # a possible model output is left alone under every strategy
    for lp in plan.layers:  # the removed channels are the least important ones of the strategy's scores
        if lp.remove and lp.kind != "depthwise":
            kept = np.setdiff1d(np.arange(lp.out_channels), lp.remove)
            assert max(lp.importance[c] for c in lp.remove) <= min(lp.importance[c] for c in kept) + 1e-12


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.strategy}-{s.allocation}")
def test_plans_of_every_strategy_round_trip_through_json(settings: PlanSettings, tmp_path) -> None:
    plan = prune_plan(_mobile(), target=0.5, settings=settings)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    back = PrunePlan.from_json(path)
    assert back == plan and back.strategy == settings.strategy
    assert json.loads(path.read_text())["strategy"] == settings.strategy
    assert back.settings["allocation"] == settings.allocation


def test_energy_is_own_energy_times_the_consumers_input_energy_each_against_its_layer_mean() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 4, 3, 3))
    consumer = rng.standard_normal((5, 6, 3, 3))
    w[2] *= 3.0          # a strong channel ...
    consumer[:, 4] *= 0.1  # ... and one the next layer barely reads
    own = np.array([np.sum(w[c] ** 2) for c in range(6)])
    listened = np.array([np.sum(consumer[:, c] ** 2) for c in range(6)])
    expected = np.sqrt(own / own.mean() * listened / listened.mean())
    (scores,) = layer_scores([w], [consumer], "energy")
    np.testing.assert_allclose(scores.importance, expected / expected.max(), rtol=1e-12)
    assert scores.order[0] == 2 and scores.order[-1] == 4


def test_energy_does_not_zero_an_input_poor_layer() -> None:
    rng = np.random.default_rng(2)
    stem = rng.standard_normal((32, 1, 3, 3))  # 32 channels of 9 values: novelty past rank 9 says nothing
    (scores,) = layer_scores([stem], [None], "energy")
    assert (scores.importance > 0).all()


def test_compensated_ranks_an_exact_duplicate_below_everything() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 4, 3, 3))
    w[6] = 2.0 * w[1]  # channel 6 repeats channel 1 (stronger, so 1 is the copy a merge removes)
    energy, compensated = (layer_scores([w], [None], s)[0] for s in ("energy", "compensated"))
    assert compensated.duplicate_of[1] == 6
    assert compensated.importance[1] < 1e-6 < energy.importance[1]
    assert compensated.order[-1] == 1


def test_uniform_allocation_gives_every_prunable_layer_one_ratio() -> None:
    plan = prune_plan(_mobile(), target=0.5, settings=PlanSettings(strategy="energy", allocation="uniform"))
    counts = {lp.name: (lp.out_channels, lp.n_remove) for lp in plan.layers if lp.name in ("stem", "expand", "project", "c5")}
    kept_share = [(n - r) / n for n, r in counts.values()]
    assert max(kept_share) - min(kept_share) <= max(1 / n for n, _ in counts.values()) + 1e-9


def test_an_unknown_strategy_or_allocation_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown strategy"):
        prune_plan(_mobile(), settings=PlanSettings(strategy="magic"))
    with pytest.raises(UsageError, match="unknown allocation"):
        prune_plan(_mobile(), settings=PlanSettings(allocation="magic"))


def test_cli_strategy_option(tmp_path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    w1, w2 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32), rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="c1"), helper.make_node("Conv", ["h", "w2"], ["y"], name="c2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    code, out, err = run_cli(capsys, "prune", str(path), "--strategy", "energy", "--allocation", "global", "--json")
    assert code == 0, err
    assert json.loads(out)["strategy"] == "energy" and json.loads(out)["settings"]["allocation"] == "global"


def test_global_allocation_prunes_the_layer_whose_channels_are_weak_against_their_own_mean() -> None:
    """Layer a: 16 equal channels; layer b: 4 strong channels and 12 weak ones (each input slice of every
    consumer has the same norm, so only the channels' own energies differ). One global threshold on
    importances relative to the layer's mean takes b's weak channels first; uniform takes both alike."""
    rng = np.random.default_rng(6)

    def unit_inputs(w: np.ndarray) -> np.ndarray:  # every input channel's slice of norm 1
        return w / np.sqrt((w ** 2).sum(axis=(0, 2, 3), keepdims=True))

    a = rng.standard_normal((16, 3, 3, 3))
    a /= np.sqrt((a ** 2).sum(axis=(1, 2, 3), keepdims=True))  # every output channel of norm 1
    b = unit_inputs(rng.standard_normal((16, 16, 3, 3)))
    b /= np.sqrt((b ** 2).sum(axis=(1, 2, 3), keepdims=True))
    b[:4] *= 10.0
    b[4:] *= 0.5
    c = unit_inputs(rng.standard_normal((8, 16, 3, 3)))
    head = rng.standard_normal((4, 8, 1, 1))
    record = _record(*(make_layer(n, "Conv", w) for n, w in (("a", a), ("b", b), ("c", c), ("head", head))))
    ratios = {}
    for allocation in ("global", "uniform"):
        plan = prune_plan(record, target=0.2, settings=PlanSettings(strategy="energy", allocation=allocation))
        ratios[allocation] = {lp.name: lp.ratio for lp in plan.layers}
        assert plan.reduction >= 0.2
    assert ratios["global"]["b"] > ratios["global"]["a"]
    assert abs(ratios["uniform"]["b"] - ratios["uniform"]["a"]) <= 1 / 16 + 1e-9
