"""The labelled lineage evidence set: real pretrained CNNs of the corpus and real derivations of them.

Deterministic (fixed seeds, fixed data, one torch thread) and cached: the first run downloads the corpus files
(tests/corpus.py), reads Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``; scikit-learn's digits where it is missing), trains with torch on
CPU for a minute or two and writes every model file under ``--cache``; later runs reuse the files.

Bases: MTCNN's P-Net, R-Net and O-Net (facenet-pytorch ``.pt``), YOLOv8n (nudenet's ONNX) and, as unrelated
real models, PP-OCR's ONNX, MediaPipe's TFLite and FER's Keras net. Derivations (each a real file, read back
through filterdb's readers):

- ``ft`` / ``ft-wd``: 60 SGD steps on Fashion-MNIST with a new 1x1 conv head, without / with weight decay 5e-4;
- ``ft-wd-cont``: ``ft-wd`` trained 50 more steps (a chain: grandparent → parent → child);
- ``mag50-ft``: 50 % of each convolution zeroed by magnitude, then 50 masked fine-tune steps; ``mag30``: 30 %
  zeroed, no training;
- ``chan40-ft``: 40 % of the channels of each inner convolution removed by L1 norm, then 40 fine-tune steps;
  ``chan60``: 60 % removed, no training;
- ``trunc``: the first two convolutions, frozen, and a new trained 1x1 head (a re-headed truncated backbone);
- ``bn`` → ``bn.onnx``: the net with batch norm after each convolution, fine-tuned, then exported by torch's
  ONNX exporter (which folds batch norm into the convolutions);
- ``bf16`` / ``fp16``: the weights cast and saved as bfloat16 / float16; ``fp16-f32``: float16-rounded values
  stored as float32; ``int8``: symmetric per-channel int8 values stored as float32 (a static int8 export);
- ``scratch1`` / ``scratch2``: the same architecture trained from scratch on the same data (hard negatives).

YOLOv8n (no torch module to train) gets the derivations that need no gradient: ``mag50``, ``fp16-f32``,
``bf16-f32``, and its conv weights saved as safetensors in name order (another layer order than the ONNX graph).

Each labelled pair is ``Pair(a, b, relation, parent, kind)``: relation identical / same-weights / derived /
unrelated; parent "a", "b" or None; kind the derivation class reported per row by bench/bench_lineage.py.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
FASHION_LABELS = Path("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz")
SET_VERSION = 1


@dataclass(frozen=True)
class Pair:
    a: str  # file name under the cache folder (or a corpus file)
    b: str
    relation: str
    parent: str | None  # "a" | "b" | None
    kind: str  # the derivation class


def _data(n: int = 2048) -> tuple[Any, Any]:
    import torch

    if FASHION.exists():
        with gzip.open(FASHION) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
        with gzip.open(FASHION_LABELS) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    else:  # scikit-learn's digits (8x8), upsampled below like Fashion-MNIST
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = (digits.images[:n] * 16).astype(np.uint8), digits.target[:n]
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 255.0
    x = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
    return (x - 0.5).repeat(1, 3, 1, 1) / 0.5, torch.tensor(labels.astype(np.int64))


def _backbone_keys(state: dict[str, Any]) -> list[str]:
    """The conv layers with kernels larger than 1x1 (MTCNN's heads are 1x1 convs or dense layers)."""
    return [k[: -len(".weight")] for k, v in state.items()
            if k.endswith(".weight") and v.ndim == 4 and v.shape[-1] > 1]


class Net:
    """A generic MTCNN-like net from a state dict: conv → PReLU (→ max-pool for all but the last two) → head."""

    def __init__(self, state: dict[str, Any], convs: list[str], head: str | None, bn: bool = False):
        import torch

        self.state = {k: v.detach().clone().float() for k, v in state.items()}
        self.convs, self.head, self.bn = convs, head, bn
        if bn:
            for c in convs:
                n = self.state[c + ".weight"].shape[0]
                self.state.setdefault(c + "_bn.weight", torch.ones(n))
                self.state.setdefault(c + "_bn.bias", torch.zeros(n))
                self.state.setdefault(c + "_bn.running_mean", torch.zeros(n))
                self.state.setdefault(c + "_bn.running_var", torch.ones(n))

    def params(self, frozen: tuple[str, ...] = ()) -> list[Any]:
        out = []
        for k, v in self.state.items():
            if "running" in k or k.split(".")[0] in frozen:
                continue
            v.requires_grad_(True)
            out.append(v)
        return out

    def forward(self, x: Any, train: bool) -> Any:
        import torch.nn.functional as F

        s = self.state
        for i, c in enumerate(self.convs):
            x = F.conv2d(x, s[c + ".weight"], s.get(c + ".bias"))
            if self.bn:
                x = F.batch_norm(x, s[c + "_bn.running_mean"], s[c + "_bn.running_var"], s[c + "_bn.weight"],
                                 s[c + "_bn.bias"], training=train, momentum=0.1)
            prelu = c.replace("conv", "prelu")
            x = F.prelu(x, s[prelu + ".weight"]) if prelu + ".weight" in s else F.relu(x)
            if i < len(self.convs) - 1 and x.shape[-1] >= 4:
                x = F.max_pool2d(x, 2, ceil_mode=True)
        assert self.head is not None
        x = F.conv2d(x, s[self.head + ".weight"], s.get(self.head + ".bias"))
        return x.mean(dim=(2, 3))

    def saved(self) -> dict[str, Any]:
        return {k: v.detach().clone().contiguous() for k, v in self.state.items()}


def _new_head(state: dict[str, Any], convs: list[str], seed: int, classes: int = 10) -> dict[str, Any]:
    """The backbone (convs and their PReLUs) with a new 1x1 conv head: the old heads are dropped (a re-head)."""
    import torch

    torch.manual_seed(seed)
    keep = set(convs) | {c.replace("conv", "prelu") for c in convs}
    conv = torch.nn.Conv2d(state[convs[-1] + ".weight"].shape[0], classes, 1)
    return {**{k: v for k, v in state.items() if k.split(".")[0] in keep},
            "head.weight": conv.weight.detach().clone(), "head.bias": conv.bias.detach().clone()}


def _train(net: Net, steps: int, seed: int, *, lr: float = 0.01, wd: float = 0.0, masks: dict[str, Any] | None = None,
           frozen: tuple[str, ...] = ()) -> Net:
    import torch

    torch.manual_seed(seed)
    x, y = _data()
    optimiser = torch.optim.SGD(net.params(frozen), lr=lr, momentum=0.9, weight_decay=wd)
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (64,))
        loss = torch.nn.functional.cross_entropy(net.forward(x[idx], True), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if masks:
            with torch.no_grad():
                for k, m in masks.items():
                    net.state[k].mul_(m)
    for v in net.state.values():
        v.requires_grad_(False)
    return net


def _magnitude(state: dict[str, Any], convs: list[str], share: float) -> tuple[dict[str, Any], dict[str, Any]]:
    out, masks = dict(state), {}
    for c in convs:
        w = state[c + ".weight"]
        cut = w.abs().flatten().kthvalue(max(1, int(share * w.numel()))).values
        masks[c + ".weight"] = (w.abs() > cut).float()
        out[c + ".weight"] = w * masks[c + ".weight"]
    return out, masks


def _channel_prune(state: dict[str, Any], convs: list[str], share: float) -> dict[str, Any]:
    """Remove ``share`` of the output channels (smallest L1) of every conv but the last, and the next conv's inputs."""
    out = dict(state)
    for i, c in enumerate(convs[:-1]):
        w = out[c + ".weight"]
        keep = w.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[: max(1, round((1 - share) * w.shape[0]))]
        keep = keep.sort().values
        out[c + ".weight"] = w[keep]
        for extra in (c + ".bias", c.replace("conv", "prelu") + ".weight"):
            if extra in out:
                out[extra] = out[extra][keep]
        nxt = convs[i + 1] + ".weight"
        out[nxt] = out[nxt][:, keep]
    return out


def _fold(net: Net) -> dict[str, Any]:
    import torch

    s, out = net.state, {}
    for c in net.convs:
        scale = s[c + "_bn.weight"] / torch.sqrt(s[c + "_bn.running_var"] + 1e-5)
        out[c + ".weight"] = s[c + ".weight"] * scale[:, None, None, None]
    return out


def _export_onnx(net: Net, path: Path) -> None:
    import torch

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = torch.nn.ModuleList()
            self.bns = torch.nn.ModuleList()
            self.prelus = torch.nn.ModuleList()
            s = net.state
            for c in net.convs:
                w = s[c + ".weight"]
                conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[-1])
                conv.weight.data, conv.bias.data = w.clone(), s[c + ".bias"].clone()
                bn = torch.nn.BatchNorm2d(w.shape[0])
                for f in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, f).data = s[c + "_bn." + f].clone()
                prelu = torch.nn.PReLU(w.shape[0])
                prelu.weight.data = s[c.replace("conv", "prelu") + ".weight"].clone()
                self.convs.append(conv)
                self.bns.append(bn)
                self.prelus.append(prelu)
            head = s[net.head + ".weight"]
            self.head = torch.nn.Conv2d(head.shape[1], head.shape[0], 1)
            self.head.weight.data, self.head.bias.data = head.clone(), s[net.head + ".bias"].clone()

        def forward(self, x: Any) -> Any:
            for i, (conv, bn, prelu) in enumerate(zip(self.convs, self.bns, self.prelus)):
                x = prelu(bn(conv(x)))
                if i < len(self.convs) - 1 and x.shape[-1] >= 4:
                    x = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
            return self.head(x).mean(dim=(2, 3))

    module = Module().eval()
    torch.onnx.export(module, (torch.zeros(1, 3, 48, 48),), str(path), dynamo=False, do_constant_folding=True)


def _scratch(state: dict[str, Any], convs: list[str], seed: int) -> dict[str, Any]:
    """The same architecture, freshly initialised (torch's defaults) and trained 150 steps on the same data."""
    import torch

    torch.manual_seed(seed)
    init = {}
    for key, v in state.items():
        if key.split(".")[0] in convs and key.endswith(".weight"):
            conv = torch.nn.Conv2d(v.shape[1], v.shape[0], v.shape[-1])
            init[key], init[key[:-7] + ".bias"] = conv.weight.detach(), conv.bias.detach()
        elif key.startswith("prelu"):
            init[key] = torch.full_like(v, 0.25)
    return _train(Net(_new_head(init, convs, seed), convs, "head"), 150, seed).saved()


def _int8_per_channel(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    for k, v in state.items():
        if v.ndim == 4:
            step = v.abs().amax(dim=(1, 2, 3), keepdim=True) / 127.0
            out[k] = (v / step).round().clamp(-127, 127) * step
    return out


def build(cache: Path, log: Any = print, held_out: bool = False) -> list[Pair]:
    """Build (or reuse) every file under ``cache`` and return the labelled pairs.

    ``held_out``: the held-out set instead, never used to set a threshold or a strength: the same MTCNN
    derivations trained with other seeds (files ``ho-*``), and MediaPipe's iris landmark net derived without
    gradients (pruned, cast, truncated, re-ordered), against real independent nets.
    """
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import CORPUS  # noqa: PLC0415

    from filterdb.sources import resolve_source

    torch.set_num_threads(1)
    cache.mkdir(parents=True, exist_ok=True)
    pairs: list[Pair] = []
    made = cache / (f"pairs-heldout-v{SET_VERSION}.json" if held_out else f"pairs-v{SET_VERSION}.json")
    if made.exists():
        return [Pair(**p) for p in json.loads(made.read_text())]

    def corpus(name: str) -> str:
        path = resolve_source(CORPUS[name].spec).path
        target = cache / name
        if not target.exists():
            target.write_bytes(Path(path).read_bytes())
        return name

    def save(name: str, state: dict[str, Any]) -> str:
        torch.save({k: v.detach().clone().contiguous() for k, v in state.items()}, cache / name)
        return name

    def make(name: str, derive: Any) -> str:
        """The file ``name``, derived only when the cache lacks it (each derivation is a closure)."""
        if not (cache / name).exists():
            save(name, derive())
        return name

    def load(name: str) -> dict[str, Any]:
        return torch.load(cache / name, weights_only=True)

    for base in ("pnet", "rnet", "onet"):
        log(f"deriving from {base}{' (held-out seeds)' if held_out else ''}")
        p0 = corpus(base + ".pt")
        state = load(p0)
        convs = _backbone_keys(state)
        seed = {"pnet": 1, "rnet": 2, "onet": 3}[base] + (1000 if held_out else 0)
        stem = ("ho-" if held_out else "") + base  # file names: the held-out set's start with ho-
        # fine-tunes with a new head, without and with weight decay; a chain; siblings
        a = make(f"{stem}-ft.pt", lambda: _train(Net(_new_head(state, convs, seed), convs, "head"), 60, seed).saved())
        b = make(f"{stem}-ft-wd.pt", lambda: _train(Net(_new_head(state, convs, seed + 10), convs, "head"), 60,
                                                    seed + 10, wd=5e-4).saved())
        c = make(f"{stem}-ft-wd-cont.pt", lambda: _train(Net(load(b), convs, "head"), 50, seed + 20, lr=0.003,
                                                         wd=5e-4).saved())
        pairs += [Pair(p0, a, "derived", "a", "fine-tune"), Pair(p0, b, "derived", "a", "fine-tune wd"),
                  Pair(b, c, "derived", "a", "fine-tune wd (chain)"), Pair(p0, c, "derived", "a", "grandchild"),
                  Pair(a, b, "derived", None, "siblings")]
        # magnitude pruning, with and without masked fine-tuning
        pruned, masks = _magnitude(state, convs, 0.5)
        mag = make(f"{stem}-mag50-ft.pt", lambda: _train(Net(_new_head(pruned, convs, seed + 30), convs, "head"), 50,
                                                         seed + 30, masks=masks).saved())
        pairs.append(Pair(p0, mag, "derived", "a", "magnitude pruning + ft"))
        share = 0.4 if held_out else 0.3  # the held-out set prunes other amounts (no seed in these)
        pairs.append(Pair(p0, make(f"{stem}-mag{round(100 * share)}.pt", lambda: _magnitude(state, convs, share)[0]),
                          "derived", "a", "magnitude pruning"))
        # structured (channel) pruning
        chan_net = lambda: Net(_new_head(_channel_prune(state, convs, 0.4), convs, seed + 40), convs, "head")  # noqa: E731
        chan = make(f"{stem}-chan40-ft.pt", lambda: _train(chan_net(), 40, seed + 40).saved())
        pairs.append(Pair(p0, chan, "derived", "a", "channel pruning + ft"))
        share = 0.5 if held_out else 0.6
        pairs.append(Pair(p0, make(f"{stem}-chan{round(100 * share)}.pt", lambda: _channel_prune(state, convs, share)),
                          "derived", "a", "channel pruning"))
        # a truncated backbone, frozen, with a new trained head
        short = {k: v for k, v in state.items() if k.split(".")[0] in convs[:2]
                 or k.split(".")[0] in [c.replace("conv", "prelu") for c in convs[:2]]}
        trunc = make(f"{stem}-trunc.pt", lambda: _train(Net(_new_head(short, convs[:2], seed + 50), convs[:2], "head"),
                                                        40, seed + 50, frozen=tuple(convs[:2])).saved())
        pairs.append(Pair(p0, trunc, "derived", "a", "truncated + re-headed"))
        # batch norm inserted and fine-tuned, then exported to ONNX (the exporter folds batch norm)
        bn_name = make(f"{stem}-bn.pt", lambda: _train(Net(_new_head(state, convs, seed + 60), convs, "head", bn=True),
                                                       40, seed + 60).saved())
        if not (cache / f"{stem}-bn.onnx").exists():
            _export_onnx(Net(load(bn_name), convs, "head", bn=True), cache / f"{stem}-bn.onnx")
        pairs.append(Pair(bn_name, f"{stem}-bn.onnx", "same-weights", "a", "onnx export (bn folded)"))
        pairs.append(Pair(p0, bn_name, "derived", "a", "fine-tune"))
        # precision: casts and int8
        pairs.append(Pair(p0, make(f"{stem}-bf16.pt", lambda: {k: v.bfloat16() for k, v in state.items()}),
                          "same-weights", "a", "bfloat16 cast"))
        pairs.append(Pair(p0, make(f"{stem}-fp16.pt", lambda: {k: v.half() for k, v in state.items()}),
                          "same-weights", "a", "float16 cast"))
        pairs.append(Pair(p0, make(f"{stem}-fp16-f32.pt", lambda: {k: v.half().float() for k, v in state.items()}),
                          "same-weights", "a", "float16 values in float32"))
        pairs.append(Pair(p0, make(f"{stem}-int8.pt", lambda: _int8_per_channel(state)), "same-weights", "a",
                          "int8 per channel (float32 file)"))
        # hard negatives: the same architecture trained from scratch on the same data
        scratch = [make(f"{stem}-scratch{k}.pt", lambda k=k: _scratch(state, convs, 100 * seed + k)) for k in (1, 2)]
        pairs += [Pair(p0, scratch[0], "unrelated", None, "scratch (same architecture)"),
                  Pair(scratch[0], scratch[1], "unrelated", None, "scratch (same architecture)"),
                  Pair(a, scratch[1], "unrelated", None, "scratch (same architecture)"),
                  Pair(mag, scratch[0], "unrelated", None, "scratch (same architecture)")]
    if held_out:
        log("deriving from MediaPipe's iris landmarks")
        pairs += _iris(cache, corpus("iris_landmark.tflite"), [corpus(n) for n in (
            "face_landmark.tflite", "face_detection_short_range.tflite", "320n.onnx")])
        made.write_text(json.dumps([asdict(p) for p in pairs], indent=1))
        return pairs
    log("deriving from yolov8n")
    pairs += _yolo(cache, corpus("320n.onnx"))
    real = [corpus(n) for n in ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
                                "ch_ppocr_mobile_v2.0_cls_infer.onnx", "face_detection_short_range.tflite",
                                "face_landmark.tflite", "emotion_model.hdf5")]
    pairs += [Pair("pnet.pt", "rnet.pt", "unrelated", None, "real independent"),
              Pair("rnet.pt", "onet.pt", "unrelated", None, "real independent"),
              Pair("320n.onnx", real[0], "unrelated", None, "real independent"),
              Pair(real[0], real[2], "unrelated", None, "real independent"),
              Pair(real[3], real[4], "unrelated", None, "real independent"),
              Pair(real[1], real[3], "unrelated", None, "real independent"),
              Pair("onet.pt", real[5], "unrelated", None, "real independent"),
              Pair("pnet.pt", real[2], "unrelated", None, "real independent")]
    made.write_text(json.dumps([asdict(p) for p in pairs], indent=1))
    return pairs


def _yolo(cache: Path, name: str) -> list[Pair]:
    import onnx
    from onnx import numpy_helper

    def rewrite(target: str, change: Any) -> str:
        model = onnx.load(str(cache / name))
        for init in model.graph.initializer:
            w = numpy_helper.to_array(init)
            if w.ndim == 4:
                init.CopyFrom(numpy_helper.from_array(change(w).astype(np.float32), init.name))
        onnx.save(model, str(cache / target))
        return target

    def magnitude(w: np.ndarray) -> np.ndarray:
        return np.where(np.abs(w) > np.quantile(np.abs(w), 0.5), w, 0.0)

    def bf16(w: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)

    pairs = [Pair(name, rewrite("320n-mag50.onnx", magnitude), "derived", "a", "magnitude pruning"),
             Pair(name, rewrite("320n-fp16-f32.onnx", lambda w: w.astype(np.float16)), "same-weights", "a",
                  "float16 values in float32"),
             Pair(name, rewrite("320n-bf16-f32.onnx", bf16), "same-weights", "a", "bfloat16 values in float32")]
    # the conv weights as a safetensors file in name order: the same tensors in another layer order
    from safetensors.numpy import save_file

    model = onnx.load(str(cache / name))
    tensors = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4}
    save_file({k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)}, str(cache / "320n.safetensors"))
    pairs.append(Pair(name, "320n.safetensors", "identical", None, "another format, another layer order"))
    return pairs


def _iris(cache: Path, name: str, others: list[str]) -> list[Pair]:
    """MediaPipe's iris landmark net (TFLite, 81 convolutions, no torch module) derived without gradients; each
    derivation is a safetensors file of its convolutions (read back in PyTorch layout by filterdb's reader)."""
    from safetensors.numpy import save_file

    from filterdb.lineage import weights_of

    layers = [np.ascontiguousarray(layer.weight, dtype=np.float32) for layer in weights_of(str(cache / name)).layers]
    n = len(layers)

    def write(target: str, tensors: list[np.ndarray], order: list[int] | None = None) -> str:
        if not (cache / target).exists():
            order = order or list(range(len(tensors)))  # the file's names fix the layer order it is read in
            save_file({f"conv{order[k]:03d}.weight": np.ascontiguousarray(t) for k, t in enumerate(tensors)},
                      str(cache / target))
        return target

    def magnitude(share: float) -> list[np.ndarray]:
        return [np.where(np.abs(w) > np.quantile(np.abs(w), share), w, 0.0).astype(np.float32) for w in layers]

    def channels(share: float) -> list[np.ndarray]:
        """``share`` of each layer's output channels removed (smallest L1), and the matching inputs of the next
        layer where it reads as many inputs as this one has outputs; a depthwise layer keeps the channels its
        input kept. Only the convolution weights are written (no graph), which is all lineage reads."""
        out: list[np.ndarray] = []
        kept: np.ndarray | None = None
        outputs = -1
        for w in layers:
            if kept is not None and w.shape[1] == 1 and w.shape[0] == outputs:
                out.append(w[kept])  # depthwise: its channels are its input's
                continue
            if kept is not None and w.shape[1] == outputs and outputs > 1:
                w = w[:, kept]
            l1 = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
            kept = np.sort(np.argsort(-l1, kind="stable")[: max(1, round((1 - share) * w.shape[0]))])
            outputs = w.shape[0]
            out.append(w[kept])
        return out

    def int8(w: np.ndarray) -> np.ndarray:
        step = np.abs(w).reshape(w.shape[0], -1).max(axis=1).reshape(-1, *([1] * (w.ndim - 1))) / 127.0
        step = np.where(step > 0, step, 1.0)
        return (np.clip(np.round(w / step), -127, 127) * step).astype(np.float32)

    def bf16(w: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)

    mag50 = write("iris-mag50.safetensors", magnitude(0.5))
    fp16 = write("iris-fp16-f32.safetensors", [w.astype(np.float16).astype(np.float32) for w in layers])
    chan = write("iris-chan60.safetensors", channels(0.6))
    pairs = [Pair(name, write("iris.safetensors", layers), "identical", None, "another format, another layer order"),
             Pair(name, write("iris-reordered.safetensors", layers, list(range(n))[::-1]), "identical", None,
                  "another format, another layer order"),
             Pair(name, mag50, "derived", "a", "magnitude pruning"),
             Pair(name, write("iris-mag30.safetensors", magnitude(0.3)), "derived", "a", "magnitude pruning"),
             Pair(name, chan, "derived", "a", "channel pruning"),
             Pair(name, write("iris-trunc.safetensors", layers[: n // 2]), "derived", "a", "truncated"),
             Pair(name, fp16, "same-weights", "a", "float16 values in float32"),
             Pair(name, write("iris-bf16-f32.safetensors", [bf16(w) for w in layers]), "same-weights", "a",
                  "bfloat16 values in float32"),
             Pair(name, write("iris-int8.safetensors", [int8(w) for w in layers]), "same-weights", "a",
                  "int8 per channel (float32 file)"),
             Pair(mag50, chan, "derived", None, "siblings")]
    pairs += [Pair(name, other, "unrelated", None, "real independent") for other in others]
    pairs.append(Pair(chan, others[0], "unrelated", None, "real independent"))
    return pairs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "filterdb" / "lineage-pairs")
    parser.add_argument("--held-out", action="store_true", help="the held-out set (other seeds, MediaPipe's iris)")
    args = parser.parse_args()
    for p in build(args.cache, held_out=args.held_out):
        print(p.kind, p.a, p.b, p.relation, p.parent, sep="\t")
