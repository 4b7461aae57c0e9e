"""filterdb prune: channel scores against scipy's pivoted QR, the plan's invariants (targets met, coupled ratios
equal, parameter counts recomputed by slicing the weights), JSON round trips, free pruning that leaves a real
torch module's outputs unchanged, and plans from a module, its state_dict and its ONNX export agreeing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

from filterdb import ModelInfo, ModelRecord
from filterdb.errors import UsageError
from filterdb.prune import PlanSettings, PrunePlan, channel_scores, prune_plan
from filterdb.readers import make_layer
from helpers import run_cli


def _record(*layers) -> ModelRecord:
    return ModelRecord(ModelInfo(source="test", format="onnx"), tuple(layers))


def _chain(seed: int = 0, widths=(3, 32, 48, 64, 10)) -> ModelRecord:
    rng = np.random.default_rng(seed)
    layers = [make_layer(f"c{i}", "Conv", rng.standard_normal((o, i_, 3, 3)).astype(np.float32))
              for i, (i_, o) in enumerate(zip(widths[:-1], widths[1:]))]
    return _record(*layers)


def test_importance_is_the_pivoted_qr_residual_of_scipy() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((24, 8, 3, 3))
    w[5] = 3 * w[2] + 1e-3 * rng.standard_normal(w[2].shape)  # nearly a copy of channel 2, but stronger
    scores = channel_scores(w)
    _, r, pivots = scipy.linalg.qr(w.reshape(24, -1).T, mode="economic", pivoting=True)
    expected = np.zeros(24)
    expected[pivots] = np.abs(np.diag(r)) / np.abs(r[0, 0])
    np.testing.assert_allclose(scores.importance, expected, rtol=1e-6, atol=1e-9)
    assert scores.order.tolist() == pivots.tolist()
    assert scores.duplicate_of[2] == 5 and scores.duplicate_of[5] == -1  # the weaker copy points at the stronger


def test_zero_channels_are_found_by_the_sparsity_rule() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((10, 4, 3, 3))
    w[[1, 7]] = 0.0
    w[3] = 0.005 * np.abs(w).max() * np.sign(rng.standard_normal(w[3].shape))  # every |w| 0.5 % of the max
    scores = channel_scores(w)
    assert np.flatnonzero(scores.zero).tolist() == [1, 3, 7]
    assert all(scores.importance[[1, 3, 7]] == 0.0)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_the_plan_meets_its_target_and_its_counts_are_the_sliced_weights(target: float) -> None:
    record = _chain()
    plan = prune_plan(record, target=target)
    weights = {layer.name: layer.weight for layer in record.layers}
    kept_out = {lp.name: np.setdiff1d(np.arange(lp.out_channels), lp.remove) for lp in plan.layers}
    names = [layer.name for layer in record.layers]
    left = 0
    for i, name in enumerate(names):  # slice each weight: its kept outputs, and the inputs its producer kept
        w = weights[name][kept_out[name]]
        if i > 0:
            w = w[:, kept_out[names[i - 1]]]
        left += w.size
    total = sum(w.size for w in weights.values())
    assert plan.params_total == total
    assert plan.params_removed == total - left
    assert target <= plan.reduction <= target + 0.05
    assert plan.layers[-1].ratio == 0.0 and plan.layers[-1].reason == "keep: model output"


def _sliced_removed(record: ModelRecord, remove: dict[str, set[int]]) -> float:
    """Share of a chain's weights gone when each layer loses ``remove[name]``: the weights sliced by hand."""
    names = [layer.name for layer in record.layers]
    left = total = 0
    for i, layer in enumerate(record.layers):
        w = layer.weight[np.setdiff1d(np.arange(layer.weight.shape[0]), sorted(remove[layer.name]))]
        if i > 0:
            w = w[:, np.setdiff1d(np.arange(layer.weight.shape[1]), sorted(remove[names[i - 1]]))]
        left += w.size
        total += layer.weight.size
    return 1 - left / total


@pytest.mark.parametrize("allocation", ["share", "uniform", "global"])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_the_plan_removes_no_more_than_the_target_needs(allocation: str, target: float) -> None:
    """Keeping back any one removed channel would miss the target: the plan does not overshoot."""
    record = _chain()
    plan = prune_plan(record, target=target, settings=PlanSettings(allocation=allocation))
    remove = {lp.name: set(lp.remove) for lp in plan.layers}
    assert _sliced_removed(record, remove) == pytest.approx(plan.reduction) and plan.reduction >= target
    for lp in plan.layers:
        if lp.remove:
            fewer = dict(remove, **{lp.name: set(lp.remove[1:])})
            assert _sliced_removed(record, fewer) < target, (lp.name, target)


def test_duplicated_channels_go_first_and_are_named() -> None:
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 3, 3, 3))
    w1[8:] = w1[:8] * 0.5
    record = _record(make_layer("c1", "Conv", w1), make_layer("c2", "Conv", rng.standard_normal((8, 16, 3, 3))))
    # the 8 copies are half of c1's outputs and of c2's inputs: half the weights; the share rule takes them first
    plan = prune_plan(record, target=0.5, settings=PlanSettings(allocation="share"))
    first = plan.layers[0]
    assert sorted(first.remove) == list(range(8, 16)) and first.reason == "redundant channels"
    assert plan.reduction == 0.5
    # at 30 % the plan keeps some of the copies back rather than overshoot: 5 of 16 channels (31.25 %)
    fewer = prune_plan(record, target=0.3, settings=PlanSettings(allocation="share")).layers[0]
    assert len(fewer.remove) == 5 and set(fewer.remove) <= set(range(8, 16))
    assert plan.redundant_params > 0 and plan.free_params == 0


def test_a_depthwise_layer_follows_its_producer() -> None:
    rng = np.random.default_rng(4)
    record = _record(make_layer("expand", "Conv", rng.standard_normal((32, 8, 1, 1))),
                     make_layer("dw", "Conv", rng.standard_normal((32, 1, 3, 3)), groups=32),
                     make_layer("project", "Conv", rng.standard_normal((16, 32, 1, 1))),
                     make_layer("head", "Conv", rng.standard_normal((4, 16, 1, 1))))
    plan = prune_plan(record, target=0.4)
    expand, dw = plan.layers[0], plan.layers[1]
    assert dw.kind == "depthwise" and dw.coupled_with == ("expand",) and expand.coupled_with == ("dw",)
    assert expand.ratio > 0 and dw.ratio == expand.ratio and dw.remove == expand.remove


def test_a_grouped_layer_is_left_alone_and_named() -> None:
    rng = np.random.default_rng(5)
    record = _record(make_layer("c1", "Conv", rng.standard_normal((16, 4, 3, 3))),
                     make_layer("g", "Conv", rng.standard_normal((16, 4, 3, 3)), groups=4),
                     make_layer("c3", "Conv", rng.standard_normal((8, 16, 3, 3))))
    plan = prune_plan(record, target=0.3)
    assert dict(plan.untouched)["g"] == "keep: coupling not understood"
    assert plan.layers[0].reason == "keep: coupling not understood"  # its channels feed the grouped layer


def test_json_round_trip(tmp_path) -> None:
    plan = prune_plan(_chain(), target=0.5, input_shape=(3, 32, 32))
    path = tmp_path / "plan.json"
    plan.to_json(path)
    assert PrunePlan.from_json(path) == plan
    assert PrunePlan.from_json(plan.to_json()) == plan
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["headline"] == plan.headline()


def test_from_json_refuses_what_is_not_a_plan(tmp_path) -> None:
    with pytest.raises(UsageError, match="not a filterdb prune plan"):
        PrunePlan.from_json('{"format": 1, "layers": [{"name": 1}]}')
    with pytest.raises(UsageError, match="format 9"):
        PrunePlan.from_json('{"format": 9}')


def test_flops_need_an_input_shape_and_count_macs() -> None:
    rng = np.random.default_rng(6)
    record = _record(make_layer("c1", "Conv", rng.standard_normal((8, 3, 3, 3)), stride=(1, 1)),
                     make_layer("c2", "Conv", rng.standard_normal((16, 8, 3, 3)), stride=(2, 2)))
    with pytest.raises(UsageError, match="input shape"):
        prune_plan(record, target=0.5, by="flops")
    plan = prune_plan(record, target=0.2, by="flops", input_shape=(3, 32, 32))
    assert plan.layers[0].flops == 8 * 3 * 9 * 32 * 32 and plan.layers[1].flops == 16 * 8 * 9 * 16 * 16
    assert plan.flops_total == plan.layers[0].flops + plan.layers[1].flops


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_target_outside_zero_one_is_a_usage_error(bad: float) -> None:
    with pytest.raises(UsageError, match="target"):
        prune_plan(_chain(), target=bad)


def test_cli_prints_a_plan_and_writes_json(tmp_path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv_a", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["y"], name="conv_b", pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    code, out, err = run_cli(capsys, "prune", path, "--target", "0.4", "--json", "-o", tmp_path / "p.json")
    assert code == 0, err
    plan = PrunePlan.from_json(out)
    assert plan == PrunePlan.from_json(tmp_path / "p.json")
    assert [lp.name for lp in plan.layers] == ["conv_a", "conv_b"]
    code, out, err = run_cli(capsys, "prune", path)
    assert code == 0 and "conv_a" in out and "keep: model output" in out
    code, out, err = run_cli(capsys, "prune", path, "--by", "flops")
    assert code == 2 and "input shape" in err


def test_a_layer_too_wide_to_score_is_left_alone_without_its_gram_matrix() -> None:
    """A file can declare any width: 40,000 output channels of 1x1x1 weights are 160 kB, their Gram matrix 12.8
    GB. The layer is named and kept, and the plan's memory stays linear in the weights (numpy reports its
    allocations to tracemalloc)."""
    import tracemalloc

    rng = np.random.default_rng(7)
    wide = rng.standard_normal((40_000, 1, 1, 1)).astype(np.float32)
    record = _record(make_layer("c0", "Conv", rng.standard_normal((8, 3, 3, 3))),
                     make_layer("wide", "Conv", wide), make_layer("head", "Conv", rng.standard_normal((4, 40_000, 1, 1))))
    tracemalloc.start()
    try:
        plan = prune_plan(record, target=0.3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, peak
    by_name = {lp.name: lp for lp in plan.layers}
    assert by_name["wide"].reason == "keep: too wide to score" and by_name["wide"].ratio == 0.0
    assert ("wide", "keep: too wide to score") in plan.untouched
    assert plan.reduction < 0.3  # the rest cannot reach 30 %: the plan says so instead of scoring the wide layer
    narrow = prune_plan(_record(make_layer("c0", "Conv", wide[:64].reshape(64, 1, 1, 1).repeat(9, 1)),
                                make_layer("c1", "Conv", rng.standard_normal((8, 64, 1, 1)))),
                        target=0.3, settings=PlanSettings(max_channels=32))
    assert narrow.layers[0].reason == "keep: too wide to score" and narrow.layers[0].ratio == 0.0

