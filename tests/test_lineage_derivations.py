"""Lineage on real derivations: a small torch CNN trained on scikit-learn's digits, then derived the ways real
models are (fine-tuned with weight decay, magnitude-pruned, cast to bfloat16, exported to ONNX with batch norm
folded, truncated and re-headed, trained again from scratch). The truth is known by construction; the relation,
the parent and the abstentions are asserted, and `compare`, `similar` and `lineage` must agree on each pair.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from filterdb.lineage import compare, lineage, similar  # noqa: E402
from filterdb.store import model_data, put_model_data

ROOT = Path(__file__).resolve().parents[1]
CONVS = [("c1", 1, 16), ("c2", 16, 32), ("c3", 32, 32)]


def _digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32), torch.tensor(d.target)


def _forward(state: dict[str, Any], x: Any, *, train: bool, convs: list[str]) -> Any:
    f = torch.nn.functional
    for name in convs:
        x = f.conv2d(x, state[name + ".weight"], padding=1)
        x = f.batch_norm(x, state[name + "_bn.running_mean"], state[name + "_bn.running_var"],
                         state[name + "_bn.weight"], state[name + "_bn.bias"], training=train)
        x = f.relu(x)
    return f.conv2d(x, state["head.weight"], state["head.bias"]).mean(dim=(2, 3))


def _init(seed: int, convs: list[tuple[str, int, int]] = CONVS) -> dict[str, Any]:
    torch.manual_seed(seed)
    state = {}
    for name, cin, cout in convs:
        state[name + ".weight"] = torch.nn.Conv2d(cin, cout, 3, bias=False).weight.detach().clone()
        state[name + "_bn.weight"], state[name + "_bn.bias"] = torch.ones(cout), torch.zeros(cout)
        state[name + "_bn.running_mean"], state[name + "_bn.running_var"] = torch.zeros(cout), torch.ones(cout)
    head = torch.nn.Conv2d(convs[-1][2], 10, 1)
    state["head.weight"], state["head.bias"] = head.weight.detach().clone(), head.bias.detach().clone()
    return state


def _train(state: dict[str, Any], steps: int, seed: int, *, lr: float = 0.05, wd: float = 0.0,
           masks: dict[str, Any] | None = None, frozen: tuple[str, ...] = ()) -> dict[str, Any]:
    state = {k: v.detach().clone() for k, v in state.items()}
    convs = sorted({k.split(".")[0] for k in state if k.startswith("c") and "_bn" not in k})
    params = [v.requires_grad_(True) for k, v in state.items() if "running" not in k and k.split(".")[0] not in frozen]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    x, y = _digits()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(_forward(state, x[idx], train=True, convs=convs), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for k, m in (masks or {}).items():
                state[k].mul_(m)
    return {k: v.detach().clone() for k, v in state.items()}


def _save(state: dict[str, Any], path: Path) -> str:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


class _Module(torch.nn.Module):
    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList()
        self.bns = torch.nn.ModuleList()
        for name, cin, cout in CONVS:
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            conv.weight.data = state[name + ".weight"].clone()
            bn = torch.nn.BatchNorm2d(cout)
            for f in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, f).data = state[f"{name}_bn.{f}"].clone()
            self.convs.append(conv)
            self.bns.append(bn)
        self.head = torch.nn.Conv2d(CONVS[-1][2], 10, 1)
        self.head.weight.data, self.head.bias.data = state["head.weight"].clone(), state["head.bias"].clone()

    def forward(self, x: Any) -> Any:
        for conv, bn in zip(self.convs, self.bns):
            x = torch.relu(bn(conv(x)))
        return self.head(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("derivations")
    parent = _train(_init(0), 150, 0)
    paths = {"parent": _save(parent, root / "parent.safetensors")}
    # a fine-tune with weight decay 5e-4 (its norms shrink): 50 steps, the same head
    paths["ft-wd"] = _save(_train(parent, 50, 1, lr=0.01, wd=5e-4), root / "ft-wd.safetensors")
    # 50 small SGD steps: every weight moves by ~1e-4 relative, inside bfloat16's tolerance, off its grid
    paths["ft-small"] = _save(_train(parent, 50, 2, lr=1e-4), root / "ft-small.safetensors")
    # magnitude pruning (50 % of each conv zeroed) and 20 masked fine-tune steps
    masks = {}
    pruned = dict(parent)
    for name, _, _ in CONVS:
        w = parent[name + ".weight"]
        masks[name + ".weight"] = (w.abs() > w.abs().flatten().median()).float()
        pruned[name + ".weight"] = w * masks[name + ".weight"]
    paths["mag50"] = _save(_train(pruned, 20, 3, lr=0.01, masks=masks), root / "mag50.safetensors")
    paths["bf16"] = _save({k: v.bfloat16() for k, v in parent.items()}, root / "bf16.safetensors")
    # the first two convolutions, frozen, with a new trained head
    short = {k: v for k, v in parent.items() if k.split(".")[0].split("_")[0] in ("c1", "c2")}
    head = _init(9, CONVS[:2])
    short["head.weight"], short["head.bias"] = head["head.weight"], head["head.bias"]
    paths["trunc"] = _save(_train(short, 30, 4, frozen=("c1", "c2")), root / "trunc.safetensors")
    # torch's ONNX exporter folds batch norm into the convolutions
    onnx_path = root / "parent.onnx"
    torch.onnx.export(_Module(parent).eval(), (torch.zeros(1, 1, 8, 8),), str(onnx_path), dynamo=False)
    paths["onnx"] = str(onnx_path)
    paths["scratch"] = _save(_train(_init(7), 150, 7), root / "scratch.safetensors")
    # siblings: two fine-tunes of the parent on the two halves of the classes, each with a new head
    for k, classes in enumerate(((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))):
        child = dict(parent)
        h = _init(20 + k)
        child["head.weight"], child["head.bias"] = h["head.weight"], h["head.bias"]
        paths[f"sib{k}"] = _save(_train(child, 60, 20 + k, lr=0.02), root / f"sib{k}.safetensors")
    return paths


def test_weight_decay_fine_tune_is_derived_and_the_norm_alone_names_no_parent(zoo):
    result = compare(zoo["parent"], zoo["ft-wd"])
    assert result.relation == "derived"
    # weight decay shrank the child's norms, which the old rule read as "less trained": no parent now
    assert result.parent is None, result.evidence
    assert any(s.kind == "norm" and s.child is None for s in result.signals)


def test_fifty_small_sgd_steps_are_not_the_same_weights(zoo):
    a = compare(zoo["parent"], zoo["ft-small"])
    assert a.relation == "derived", a.evidence
    assert compare(zoo["parent"], zoo["bf16"]).relation == "same-weights"  # the real bfloat16 copy is


def test_magnitude_pruned_copy_is_the_child(zoo):
    result = compare(zoo["mag50"], zoo["parent"])
    assert result.relation == "derived"
    assert result.parent == "b" and result.parent_confidence >= 0.9
    assert [s.kind for s in result.signals if s.child is not None] == ["zeros"]


def test_bfloat16_copy_is_the_child(zoo):
    result = compare(zoo["bf16"], zoo["parent"])
    assert (result.relation, result.parent) == ("same-weights", "b")
    assert any(s.kind == "precision" and s.child == "a" for s in result.signals)


def test_onnx_export_folds_batch_norm_the_export_is_the_child_by_the_format_prior(zoo):
    from filterdb.lineage import ModelWeights, weights_of
    from filterdb.lineage._direction import STRENGTH

    result = compare(zoo["parent"], zoo["onnx"])
    assert result.relation == "same-weights", result.evidence
    # the weights do not show which side was folded; folding cannot be undone and exporters do it, so the ONNX
    # file is named the child, at the prior's strength (below 0.9: never a "sure" parent on this alone)
    assert {s.kind for s in result.signals} >= {"scales", "export"}
    assert (result.parent, result.parent_confidence) == ("a", STRENGTH["export"])
    # the same folded weights in a training format: nothing tells the two apart
    folded = weights_of(zoo["onnx"])
    as_training = ModelWeights("folded.safetensors", folded.layers, "f" * 64, format="safetensors")
    again = compare(weights_of(zoo["parent"]), as_training)
    assert again.relation == "same-weights" and again.parent is None, again.evidence
    assert any(s.kind == "scales" for s in again.signals)


def test_truncated_re_headed_backbone_is_the_child_not_a_pruned_parent(zoo):
    result = compare(zoo["parent"], zoo["trunc"])
    assert result.relation == "derived"
    assert result.parent == "a", result.evidence
    assert not any(s.kind == "channels" for s in result.signals)


def test_scratch_training_of_the_same_architecture_is_unrelated(zoo):
    assert compare(zoo["parent"], zoo["scratch"]).relation == "unrelated"


def test_order_of_the_pair_changes_nothing(zoo):
    ab, ba = compare(zoo["parent"], zoo["mag50"]), compare(zoo["mag50"], zoo["parent"])
    assert (ab.relation, ab.score, ab.parent_confidence) == (ba.relation, ba.score, ba.parent_confidence)
    assert ab.parent_name == ba.parent_name


@pytest.fixture(scope="module")
def store(zoo, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from filterdb import open_store
    from filterdb.ingest import ingest

    root = tmp_path_factory.mktemp("store") / "zoo.fdb"
    from filterdb import init_store

    init_store(root, dtype="float32")
    ingest(root, [zoo[k] for k in ("parent", "mag50", "bf16", "scratch", "trunc")])
    return open_store(root)


def _name(zoo: dict[str, str], key: str) -> str:
    return Path(zoo[key]).name  # ingest names a model after its file


def test_similar_and_lineage_give_compare_s_relation_score_and_parent(zoo, store):
    from filterdb.lineage import weights_from_store

    parent = _name(zoo, "parent")
    for key in ("mag50", "bf16", "trunc"):
        expected = compare(weights_from_store(store, parent), weights_from_store(store, _name(zoo, key)))
        found = {m.model: m for m in similar(store, parent, top=None).matches}[_name(zoo, key)]
        assert (found.relation, found.score, found.parent) == (expected.relation, expected.score,
                                                              expected.parent_name)
        file_result = compare(zoo["parent"], zoo[key])  # the files, named by their paths
        assert (file_result.relation, file_result.score, Path(file_result.parent_name or "").name) == \
            (expected.relation, expected.score, expected.parent_name or "")
    forest = lineage(store)
    assert sorted(forest.families[0]) == sorted(_name(zoo, k) for k in ("bf16", "mag50", "parent", "trunc"))
    edges = {(e.parent, e.child): e for e in forest.edges}
    assert edges[(parent, _name(zoo, "mag50"))].directed
    assert edges[(parent, _name(zoo, "bf16"))].relation == "same-weights"
    assert (_name(zoo, "scratch"),) in forest.families


def test_siblings_without_their_parent_are_siblings_not_an_edge(zoo, tmp_path):
    from filterdb import init_store
    from filterdb.ingest import ingest

    root = tmp_path / "sib.fdb"
    init_store(root, dtype="float32")
    ingest(root, [zoo["sib0"], zoo["sib1"]])
    result = compare(zoo["sib0"], zoo["sib1"])
    assert result.relation == "derived" and result.parent is None, result.evidence
    forest = lineage(root)
    assert [(e.relation, e.directed) for e in forest.edges] == [("siblings", False)]


def test_a_damaged_fingerprint_is_rebuilt(zoo, store):
    sha = str(store.sql("SELECT sha256 FROM models WHERE model = ?", [_name(zoo, "parent")])["sha256"].iloc[0])
    put_model_data(store, sha, "fingerprint", {"version": np.array(2, dtype=np.int32), "shapes": np.zeros((3, 5)),
                                              "channels": np.zeros(7)})
    matches = similar(store, _name(zoo, "parent"), top=None).matches
    assert {m.model for m in matches} >= {_name(zoo, "mag50"), _name(zoo, "bf16")}
    from filterdb.lineage import Fingerprint

    assert Fingerprint.from_arrays(model_data(store, sha, "fingerprint") or {}) is not None  # rebuilt


def test_aliases_are_identical_models(zoo, tmp_path):
    import shutil

    from filterdb.ingest import ingest

    copy = tmp_path / "copy-of-parent.safetensors"
    shutil.copy(zoo["parent"], copy)
    root = tmp_path / "alias.fdb"
    ingest(root, [zoo["parent"], zoo["mag50"]], create=True)
    ingest(root, [str(copy)])  # the same bytes under another name: an alias of the stored model
    names = [m.model for m in similar(root, _name(zoo, "parent"), top=None).matches if m.relation == "identical"]
    assert names == [copy.name]
    forest = lineage(root)
    assert sorted(forest.families[0]) == sorted([copy.name, _name(zoo, "mag50"), _name(zoo, "parent")])


def test_the_ingest_path_loads_no_plotting(zoo):
    code = ("import sys, filterdb.ingest\nfrom filterdb.lineage import fingerprint, weights_of\n"
            f"fingerprint(weights_of({zoo['parent']!r}))\n"
            "bad = [m for m in ('matplotlib', 'filterdb.plotting') if m in sys.modules]\n"
            "assert not bad, bad\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr


def test_the_study_s_families_carry_compare_s_relation_score_and_parent(zoo, store):
    """lineage_of (the study's families) proposes pairs from stored fingerprints and decides each with the full
    comparison: its edges say what compare says of the same pair on the stored weights."""
    from filterdb.lineage import lineage_of, stored_fingerprints, weights_from_store

    prints, missing = stored_fingerprints(store)
    assert not missing
    forest = lineage_of(prints, store)
    assert sorted(forest.families[0]) == sorted(_name(zoo, k) for k in ("bf16", "mag50", "parent", "trunc"))
    assert (_name(zoo, "scratch"),) in forest.families
    for edge in forest.edges:
        expected = compare(weights_from_store(store, edge.parent), weights_from_store(store, edge.child))
        assert edge.score == pytest.approx(expected.score, abs=1e-4)
        assert edge.relation in (expected.relation, "siblings")
        if edge.directed:
            assert expected.parent_name == edge.parent
        else:
            assert expected.parent is None
    # past the bound, candidates stay related on the fingerprint alone: the same families, no direction
    bounded = lineage_of(prints, store, max_pairs=0)
    assert sorted(map(sorted, bounded.families)) == sorted(map(sorted, forest.families))
    assert not any(e.directed for e in bounded.edges if e.relation == "derived")


def test_a_plain_truncation_names_no_parent_a_small_new_head_does(zoo):
    """Half the layers cut off, nothing added: as well explained by an extension of the short model as by a
    truncation of the long one, so `added` does not decide (it named the full model the child before). A new
    head (one layer more, a small part of the model) still decides."""
    from filterdb.lineage import ModelWeights, weights_of

    full = weights_of(zoo["parent"])
    assert len(full.layers) >= 4
    cut = ModelWeights("cut", full.layers[: len(full.layers) // 2], "c" * 64)
    result = compare(full, cut)
    assert result.relation == "derived" and result.parent is None, result.evidence
    assert [(s.kind, s.child) for s in result.signals if s.kind == "added"] == [("added", None)]
    head = np.random.default_rng(0).normal(size=(10, full.layers[-1].weight.shape[0], 1, 1)).astype(np.float32)
    from filterdb.lineage._weights import ConvWeight

    longer = ModelWeights("re-headed", (*full.layers, ConvWeight("new_head", head)), "d" * 64)
    extended = compare(full, longer)
    assert extended.parent == "a" and any(s.kind == "added" and s.child == "b" for s in extended.signals)
