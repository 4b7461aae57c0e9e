"""PyTorch readers: state_dict files, checkpoints, TorchScript archives, live modules, the torch-free loader."""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from filterdb import _read  # noqa: E402
from filterdb.errors import ModelFormatError, UnsafeFormatError  # noqa: E402
from filterdb.readers import ReadOptions, read_path, reader_for_path  # noqa: E402
from filterdb.readers import _torchfree  # noqa: E402

read_model = _read.read_model
STATE_DICT_FILES = ["pnet.pt", "rnet.pt", "onet.pt", "alex.pth", "vgg.pth", "squeeze.pth"]


class Payload:
    """A custom class: pickling an instance makes a checkpoint unsafe for weights_only."""

    def __init__(self) -> None:
        self.value = 42


class Branching(nn.Module):
    """Two parallel convs feeding an add, then one more conv."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.head(self.left(x) + self.right(x))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        x = self.a(x)
        if x.sum() > 0:
            x = self.b(x)
        return x


class MyConv(nn.Conv2d):
    """A user subclass of Conv2d with its own forward."""

    def forward(self, x):
        return super().forward(x) * 2


def _block_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import torch`` fail from here on, as on a machine without torch."""
    monkeypatch.setitem(sys.modules, "torch", None)


def _weights(record) -> dict[str, np.ndarray]:
    return {layer.name: layer.weight for layer in record.layers}


# --------------------------------------------------------------------------------------------------------
# real state_dict files


@pytest.mark.corpus
@pytest.mark.parametrize("key", STATE_DICT_FILES)
def test_corpus_state_dicts_read_with_counts(corpus_path, corpus_entry, key):
    entry = corpus_entry(key)
    record = read_model(str(corpus_path(key)))
    assert record.info.format == "pytorch"
    assert len(record.layers_2d) == entry.n_conv
    assert sum(layer.n_filters for layer in record.layers_2d if layer.kernel == (3, 3)) == entry.n_3x3
    assert [layer.conv_depth for layer in record.layers_2d] == list(range(entry.n_conv))
    assert all(layer.depth_source == "order" for layer in record.layers)
    assert all("groups unknown in a state_dict: assumed 1" in layer.notes for layer in record.layers)


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["alex.pth", "vgg.pth", "squeeze.pth"])
def test_lpips_is_a_1x1_only_negative_control(corpus_path, key):
    record = read_model(str(corpus_path(key)))
    assert record.layers_2d and {layer.kernel for layer in record.layers_2d} == {(1, 1)}


@pytest.mark.corpus
def test_state_dict_weights_equal_torch_load(corpus_path):
    path = corpus_path("onet.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    record = read_path(path)
    assert [layer.name for layer in record.layers] == ["conv1", "conv2", "conv3", "conv4"]
    for layer in record.layers:
        assert np.array_equal(layer.weight, state[f"{layer.name}.weight"].numpy())


# --------------------------------------------------------------------------------------------------------
# checkpoints and safety


def _onet_state(corpus_path) -> OrderedDict:
    return torch.load(corpus_path("onet.pt"), map_location="cpu", weights_only=True)


@pytest.mark.corpus
def test_checkpoint_dict_with_state_dict_key(corpus_path, tmp_path):
    state = _onet_state(corpus_path)
    wrapped = OrderedDict((f"module.{k}", v) for k, v in state.items())  # as nn.DataParallel saves it
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}, "state_dict": wrapped}, path)
    record = read_path(path)
    assert [layer.name for layer in record.layers] == ["conv1", "conv2", "conv3", "conv4"]
    assert np.array_equal(record.layers[1].weight, state["conv2.weight"].numpy())
    assert any("'state_dict'" in note for note in record.info.notes)


@pytest.mark.corpus
def test_nested_ema_checkpoint(corpus_path, tmp_path):
    state = _onet_state(corpus_path)
    path = tmp_path / "ema.ckpt"
    torch.save({"step": 10, "ema": {"decay": 0.999, "params": state}}, path)
    assert len(read_path(path).layers_2d) == 4


@pytest.mark.corpus
def test_custom_object_checkpoint_refused_without_trust(corpus_path, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"payload": Payload(), "state_dict": _onet_state(corpus_path)}, path)
    with pytest.raises(UnsafeFormatError, match=r"unsafe\.pt: .*arbitrary Python objects.*--trust-pickle"):
        read_path(path)
    record = read_path(path, ReadOptions(trust_pickle=True))
    assert len(record.layers_2d) == 4


def test_pickled_module_refused_then_read_with_graph_depth(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(Branching(), path)
    with pytest.raises(UnsafeFormatError, match="trust_pickle=True"):
        read_path(path)
    record = read_path(path, ReadOptions(trust_pickle=True))
    assert [layer.conv_depth for layer in record.layers] == [0, 0, 1]
    assert record.layers[0].depth_source == "graph"


def test_state_dict_shape_and_name_rules(tmp_path):
    state = OrderedDict([
        ("stem.conv.weight", torch.randn(8, 3, 3, 3)),
        ("stem.bn.weight", torch.randn(8)),
        ("stem.bn.running_mean", torch.zeros(8)),
        ("dw.weight", torch.randn(8, 1, 3, 3)),
        ("audio_conv.weight", torch.randn(4, 2, 5)),  # 3-D with "conv" in the name: Conv1d
        ("layerscale.weight", torch.randn(1, 1, 8)),  # 3-D without: not a conv
        ("video.conv3d.weight", torch.randn(2, 2, 3, 3, 3)),
        ("up.deconv.weight", torch.randn(8, 4, 2, 2)),
        ("fc.weight", torch.randn(10, 8)),
        ("steps", torch.tensor(3)),
        ("half_conv.weight", torch.randn(4, 4, 3, 3).bfloat16()),
    ])
    path = tmp_path / "rules.bin"
    torch.save(state, path)
    layers = {layer.name: layer for layer in read_path(path).layers}
    assert list(layers) == ["stem.conv", "dw", "audio_conv", "video.conv3d", "up.deconv", "half_conv"]
    assert layers["audio_conv"].op_type == "Conv1d" and layers["audio_conv"].conv_depth is None
    assert layers["video.conv3d"].op_type == "Conv3d"
    assert layers["up.deconv"].kind == "transpose" and layers["up.deconv"].op_type == "ConvTranspose2d"
    assert any("depthwise" in note for note in layers["dw"].notes)
    assert layers["half_conv"].storage_dtype == "bfloat16"
    assert np.array_equal(layers["half_conv"].weight, state["half_conv.weight"].float().numpy())
    assert [layers[n].conv_depth for n in ("stem.conv", "dw", "up.deconv", "half_conv")] == [0, 1, 2, 3]


def test_file_without_any_state_dict(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "names": ["a", "b"]}, path)
    with pytest.raises(ModelFormatError, match=r"meta\.pt: no state_dict"):
        read_path(path)


# --------------------------------------------------------------------------------------------------------
# the torch-free loader


@pytest.mark.corpus
@pytest.mark.parametrize("key", STATE_DICT_FILES)
def test_torchfree_loader_is_bit_identical_on_legacy_corpus(corpus_path, key):
    path = corpus_path(key)
    expected = torch.load(path, map_location="cpu", weights_only=True)
    got = _torchfree.load(path)
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == str(tensor.dtype).removeprefix("torch.")
        assert got[name].array.dtype == tensor.numpy().dtype
        assert np.array_equal(got[name].array, tensor.numpy())


@pytest.mark.corpus
def test_torchfree_loader_is_bit_identical_on_zip_format(corpus_path, tmp_path):
    state = _onet_state(corpus_path)
    base = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    state["strided_view"] = base[2:, ::2]  # storage offset and non-unit strides
    state["bf16"] = torch.randn(4, 3, 3, 3).bfloat16()
    state["half"] = torch.randn(4, 3).half()
    state["steps"] = torch.tensor(7)
    path = tmp_path / "zipped.pt"
    torch.save(state, path)
    got = _torchfree.load(path)
    for name, tensor in state.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert np.array_equal(got[name].array, want), name
        assert got[name].array.shape == tuple(tensor.shape)


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["pnet.pt", "squeeze.pth"])
def test_reader_without_torch_matches_reader_with_torch(corpus_path, monkeypatch, key):
    path = corpus_path(key)
    with_torch = read_path(path)
    _block_torch(monkeypatch)
    without = read_path(path)
    assert [(layer.name, layer.conv_depth) for layer in without.layers] == [
        (layer.name, layer.conv_depth) for layer in with_torch.layers
    ]
    for a, b in zip(without.layers, with_torch.layers):
        assert np.array_equal(a.weight, b.weight)
    assert without.info.n_parameters == with_torch.info.n_parameters


@pytest.mark.corpus
def test_reader_without_torch_refuses_custom_objects(corpus_path, monkeypatch, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"payload": Payload(), "state_dict": _onet_state(corpus_path)}, path)
    _block_torch(monkeypatch)
    with pytest.raises(UnsafeFormatError, match=r"unsafe\.pt: .*Payload.*refused"):
        read_path(path)


# --------------------------------------------------------------------------------------------------------
# TorchScript


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_matches_live_module(tmp_path, how):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8, stride=2),
                          nn.ConvTranspose2d(8, 4, 2, stride=2)).eval()
    compiled = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.randn(1, 3, 16, 16))
    path = tmp_path / f"{how}.pt"
    compiled.save(str(path))
    assert reader_for_path(path).format == "torchscript"
    record = read_path(path)
    live = read_model(model)
    assert record.info.format == "torchscript"
    assert [(lr.name, lr.kind, lr.groups, lr.stride, lr.conv_depth) for lr in record.layers] == [
        (lr.name, lr.kind, lr.groups, lr.stride, lr.conv_depth) for lr in live.layers
    ]
    for a, b in zip(record.layers, live.layers):
        assert np.array_equal(a.weight, b.weight)


# --------------------------------------------------------------------------------------------------------
# live modules


def test_live_module_kinds_groups_and_layouts():
    model = nn.ModuleDict({
        "c1": nn.Conv1d(2, 4, 5),
        "c2": nn.Conv2d(3, 6, 3),
        "c3": nn.Conv3d(2, 4, 3),
        "grouped": nn.Conv2d(8, 12, 3, groups=4, dilation=2),
        "depthwise": nn.Conv2d(8, 16, 3, groups=8),
        "tr": nn.ConvTranspose2d(6, 4, (2, 3), groups=2, stride=2),
        "mine": MyConv(3, 5, 3),
    })
    layers = {layer.name: layer for layer in read_model(model).layers}
    assert layers["c1"].weight.shape == (4, 2, 5) and layers["c1"].op_type == "Conv1d"
    assert layers["c3"].weight.shape == (4, 2, 3, 3, 3) and layers["c3"].op_type == "Conv3d"
    assert (layers["grouped"].kind, layers["grouped"].groups, layers["grouped"].weight.shape) == ("grouped", 4,
                                                                                                 (12, 2, 3, 3))
    assert layers["grouped"].dilation == (2, 2)
    assert (layers["depthwise"].kind, layers["depthwise"].groups) == ("depthwise", 8)
    assert layers["depthwise"].weight.shape == (16, 1, 3, 3)
    tr = layers["tr"]
    assert (tr.kind, tr.groups, tr.stride, tr.weight.shape) == ("transpose", 2, (2, 2), (6, 2, 2, 3))
    assert layers["mine"].op_type == "Conv2d" and "subclass MyConv" in layers["mine"].notes
    assert np.array_equal(layers["c2"].weight, model["c2"].weight.detach().numpy())


def test_live_branches_share_a_depth():
    record = read_model(Branching())
    depth = {layer.name: layer.conv_depth for layer in record.layers}
    assert depth == {"left": 0, "right": 0, "head": 1}
    assert record.layers[-1].conv_depth_norm == 1.0
    assert all(layer.depth_source == "graph" for layer in record.layers)


def test_subclass_with_own_forward_is_a_graph_leaf():
    model = nn.Sequential(MyConv(3, 4, 3), nn.ReLU(), MyConv(4, 4, 3))
    assert [layer.conv_depth for layer in read_model(model).layers] == [0, 1]


def test_untraceable_module_falls_back_to_order():
    record = read_model(Untraceable())
    assert [layer.conv_depth for layer in record.layers] == [0, 1]
    assert all(layer.depth_source == "order" for layer in record.layers)
    assert any("torch.fx could not trace" in note for note in record.info.notes)


# --------------------------------------------------------------------------------------------------------
# bad input


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["pnet.pt"])
def test_truncated_legacy_file(corpus_path, tmp_path, key, monkeypatch):
    data = corpus_path(key).read_bytes()
    path = _write(tmp_path / "cut.pt", data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"cut\.pt"):
        read_path(path)
    _block_torch(monkeypatch)
    with pytest.raises(ModelFormatError, match=r"cut\.pt: .*truncated"):
        read_path(path)


def test_truncated_zip_file(tmp_path):
    full = tmp_path / "full.pt"
    torch.save({"conv.weight": torch.randn(8, 3, 3, 3)}, full)
    data = full.read_bytes()
    path = _write(tmp_path / "cut.pt", data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"cut\.pt: .*(truncated|corrupt)"):
        read_path(path)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_truncated_torchscript(tmp_path):
    full = tmp_path / "ts.pt"
    torch.jit.script(nn.Conv2d(3, 4, 3)).save(str(full))
    data = full.read_bytes()
    path = _write(tmp_path / "cut_ts.pt", data[: len(data) - 200])
    with pytest.raises(ModelFormatError, match=r"cut_ts\.pt"):
        read_path(path)


@pytest.mark.parametrize("name", ["random.pt", "random.pth", "random.bin"])
def test_random_bytes_with_torch_extension(tmp_path, name):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = _write(tmp_path / name, data)
    with pytest.raises(ModelFormatError, match=re.escape(name) + ": not a PyTorch file"):
        read_path(path)


def test_empty_file(tmp_path):
    with pytest.raises(ModelFormatError, match=r"empty\.pt: the file is empty"):
        read_path(_write(tmp_path / "empty.pt", b""))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning", "ignore::FutureWarning")
def test_torchscript_trusted_load_takes_depth_from_the_graph(tmp_path):
    """Two parallel branches: module order says depths 0, 1, 2; the graph (trusted load only) says 0, 0, 1."""
    torch.manual_seed(0)
    path = tmp_path / "branching.pt"
    torch.jit.script(Branching()).save(str(path))
    safe = read_path(path)
    trusted = read_path(path, ReadOptions(trust_pickle=True))
    assert [lr.conv_depth for lr in safe.layers] == [0, 1, 2]
    assert {lr.depth_source for lr in safe.layers} == {"order"}
    assert {lr.name: lr.conv_depth for lr in trusted.layers} == {"left": 0, "right": 0, "head": 1}
    assert any("torch.jit.load" in note for note in trusted.info.notes)
    for a, b in zip(sorted(safe.layers, key=lambda lr: lr.name), sorted(trusted.layers, key=lambda lr: lr.name)):
        assert a.name == b.name and np.array_equal(a.weight, b.weight) and a.groups == b.groups


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_of_a_real_architecture_read_as_data(tmp_path, how):
    """MobileNetV3 (nested blocks, depthwise convs, squeeze-excitation, BatchNorm buffers) read without running the
    archive: names, groups, strides, dilations, kinds, weights and parameter count equal the live module's."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small().eval()
    compiled = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.randn(1, 3, 64, 64))
    path = tmp_path / f"{how}.pt"
    compiled.save(str(path))
    record, live = read_path(path), read_model(model)
    assert [(lr.name, lr.groups, lr.stride, lr.dilation, lr.kind) for lr in record.layers] == [
        (lr.name, lr.groups, lr.stride, lr.dilation, lr.kind) for lr in live.layers]
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(record.layers, live.layers))
    assert record.info.n_parameters == live.info.n_parameters
