"""A model family with known lineage: small CNNs trained on sklearn's digits, their children and copies.

Ground truth for :mod:`filterdb.lineage`. For each of ``n_parents`` parents (same architecture, different
seeds and different bootstrap samples of the data: the hard negatives of each other) it writes:

- **copies** (relation ``identical`` / ``same-weights`` to the parent): the weights as float32 safetensors
  (bit-identical), float16 safetensors, int8 per-tensor quantisation (dequantised), int8 per-channel
  quantisation, batch-norm folded into the convolutions, and an ONNX export (when ``torch.onnx`` works);
- **children** (``derived``): a short fine-tune (1 epoch, small learning rate, other data), a long one that
  moves every layer, one with the first two convolutions frozen, a re-headed one (new classifier, permuted
  labels), one with 30 % of the channels of every convolution removed by L1 magnitude then fine-tuned, and a
  grandchild (the long fine-tune fine-tuned again: a chain of three generations).

Training is deterministic (fixed seeds, a fixed number of threads). :func:`family_pairs` lists the labelled
pairs. torch is imported lazily.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import missing_dependency

__all__ = ["CHILDREN", "FamilyMember", "FamilyPair", "make_family", "load_family", "family_pairs", "FAMILY_VERSION"]

FAMILY_VERSION = "1"  # the recipe's version: a cache of another version is rebuilt

_BATCH = 64
CHILDREN = ("ft-short", "ft-long", "ft-frozen", "rehead", "pruned", "ft-long-ft")


@dataclass(frozen=True)
class FamilyMember:
    """One file of the family."""

    name: str  # unique name, e.g. "p0-ft-long"
    path: str  # the file written
    root: int  # index of the parent this member descends from (its family)
    kind: str  # "parent", "copy" or "child"
    parent: str | None  # the member it was made from (None for a parent)
    relation: str  # relation to `parent`: "identical", "same-weights", "derived" ("" for a parent)
    weights: str = ""  # copies with the same tag hold bit-identical conv weights ("fp32" = the parent's)


@dataclass(frozen=True)
class FamilyPair:
    """Two members and the relation the ground truth says they have."""

    a: str
    b: str
    relation: str  # "identical" | "same-weights" | "derived" | "unrelated"
    parent: str | None  # which of a / b is the parent, for a parent → child pair (None otherwise)
    hard_negative: bool = False  # unrelated with the same architecture


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise missing_dependency("torch", "training the lineage family", "torch") from e
    return torch


def _net(torch: Any, widths: tuple[int, int, int]) -> Any:
    nn = torch.nn

    class Net(nn.Module):  # type: ignore[name-defined]  # torch is imported at run time, not typed here
        def __init__(self) -> None:
            super().__init__()
            c1, c2, c3 = widths
            self.conv1, self.bn1 = nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
            self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2)
            self.conv3, self.bn3 = nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3)
            self.fc = nn.Linear(c3, 10)

        def forward(self, x: Any) -> Any:
            relu, pool = nn.functional.relu, nn.functional.max_pool2d
            x = relu(self.bn1(self.conv1(x)))
            x = pool(relu(self.bn2(self.conv2(x))), 2)
            x = relu(self.bn3(self.conv3(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


def _data(torch: Any) -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return (torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8),
            torch.tensor(labels, dtype=torch.long))


def _fit(torch: Any, model: Any, x: Any, y: Any, *, epochs: float, seed: int, lr: float,
         frozen: tuple[str, ...] = ()) -> None:
    """Adam on a bootstrap sample (seeded) of the data; ``frozen`` name prefixes are not trained."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randint(0, len(x), (len(x),), generator=generator)
    x, y = x[sample], y[sample]
    params = [p for n, p in model.named_parameters() if not n.startswith(frozen)]
    optimiser = torch.optim.Adam(params, lr=lr)
    steps = max(1, round(epochs * len(x) / _BATCH))
    model.train()
    for name, module in model.named_modules():  # frozen layers keep their batch-norm statistics too
        if name and frozen and name.startswith(frozen):
            module.eval()
    for step in range(steps):
        batch = torch.randint(0, len(x), (_BATCH,), generator=generator)
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimiser.step()
    model.eval()


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _prune(torch: Any, model: Any, share: float) -> Any:
    """A physically smaller copy: the ``share`` of each conv's output channels with the smallest L1 norm removed."""
    state = _state(model)
    keep = {}
    for name in ("conv1", "conv2", "conv3"):
        norms = state[f"{name}.weight"].abs().sum(dim=(1, 2, 3))
        n_keep = len(norms) - round(share * len(norms))
        keep[name] = torch.sort(torch.argsort(norms, descending=True)[:n_keep]).values
    small = _net(torch, (len(keep["conv1"]), len(keep["conv2"]), len(keep["conv3"])))
    new = {}
    previous = None
    for i, name in enumerate(("conv1", "conv2", "conv3"), 1):
        w = state[f"{name}.weight"][keep[name]]
        new[f"{name}.weight"] = (w[:, previous] if previous is not None else w).contiguous()
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            v = state[f"bn{i}.{p}"]
            new[f"bn{i}.{p}"] = v if v.ndim == 0 else v[keep[name]].contiguous()
        previous = keep[name]
    new["fc.weight"] = state["fc.weight"][:, previous].contiguous()
    new["fc.bias"] = state["fc.bias"]
    small.load_state_dict(new)
    return small


def _conv_weights(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k.startswith("conv")}


def _quantise(torch: Any, w: Any, per_channel: bool) -> Any:
    dims = tuple(range(1, w.ndim))
    scale = (w.abs().amax(dim=dims, keepdim=True) if per_channel else w.abs().max()) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.clamp(torch.round(w / scale), -127, 127) * scale).to(torch.float32)


def _bn_folded(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for i in (1, 2, 3):
        gamma, var = state[f"bn{i}.weight"], state[f"bn{i}.running_var"]
        factor = gamma / (var + 1e-5).sqrt()
        out[f"conv{i}.weight"] = (state[f"conv{i}.weight"] * factor.reshape(-1, 1, 1, 1)).contiguous()
        out[f"conv{i}.bias"] = (state[f"bn{i}.bias"] - state[f"bn{i}.running_mean"] * factor).contiguous()
    return out


def _write_copies(torch: Any, model: Any, stem: Path, root: int, parent: str) -> list[FamilyMember]:
    from safetensors.torch import save_file

    state = _state(model)
    convs = _conv_weights(state)
    members = []

    def add(name: str, path: Path, relation: str, tag: str) -> None:
        members.append(FamilyMember(name, str(path), root, "copy", parent, relation, tag))

    path = stem.with_name(stem.name + ".safetensors")
    save_file(convs, str(path))
    add(parent + "-st", path, "identical", "fp32")
    path = stem.with_name(stem.name + "-fp16.safetensors")
    save_file({k: v.half() for k, v in convs.items()}, str(path))
    add(parent + "-fp16", path, "same-weights", "fp16")
    for per_channel, tag in ((False, "int8"), (True, "int8pc")):
        path = stem.with_name(f"{stem.name}-{tag}.pt")
        torch.save({k: _quantise(torch, v, per_channel) for k, v in convs.items()}, path)
        add(f"{parent}-{tag}", path, "same-weights", tag)
    path = stem.with_name(stem.name + "-bnfold.pt")
    folded = _bn_folded(state)
    torch.save(folded, path)
    add(parent + "-bnfold", path, "same-weights", "bnfold")
    path = stem.with_name(stem.name + ".onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False)
        add(parent + "-onnx", path, "same-weights", "bnfold" if _onnx_equals(path, folded) else "onnx")
    except Exception:  # noqa: BLE001 - an exporter failure only costs the optional ONNX copy
        path.unlink(missing_ok=True)
    return members


def _onnx_equals(path: Path, folded: dict[str, Any]) -> bool:
    """Whether the exporter folded batch norm exactly as :func:`_bn_folded` did (read with onnx itself)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.dims and len(t.dims) == 4]
    ours = [v.numpy() for k, v in folded.items() if k.endswith(".weight")]
    return len(weights) == len(ours) and all(w.shape == o.shape and np.array_equal(w, o) for w, o in zip(weights, ours))


def make_family(out_dir: str | os.PathLike[str], *, n_parents: int = 4, epochs: float = 6.0,
                copies: bool = True, threads: int | None = 1, width: int = 1,
                children: tuple[str, ...] = CHILDREN) -> list[FamilyMember]:
    """Train the family into ``out_dir`` and return its members (parents, copies, children).

    Parameters
    ----------
    out_dir : path
        Folder for the files (created).
    n_parents : int
        Independent parents (seeds 0, 1, ...), each with its copies and children.
    epochs : float
        Epochs of a parent's training; the children's fine-tunes scale with it (a few seconds at 6).
    copies : bool
        Write the format/precision copies of each parent.
    threads : int or None
        torch threads while training (restored afterwards); 1 by default: tiny convolutions gain nothing from
        more, and on a busy machine the threads of a parallel region wait for each other.
    width : int
        Channel multiplier (16·w, 32·w, 64·w channels).
    children : tuple of str
        Which children to make (default all of :data:`CHILDREN`; "ft-long-ft" needs "ft-long").
    """
    torch = _torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # subnormal Adam moments make x86 arithmetic several times slower
    widths = (16 * width, 32 * width, 64 * width)
    members: list[FamilyMember] = []
    try:
        x, y = _data(torch)
        for root in range(n_parents):
            base = 1000 * (root + 1)
            torch.manual_seed(base)
            parent = _net(torch, widths)
            _fit(torch, parent, x, y, epochs=epochs, seed=base + 1, lr=0.01)
            pname = f"p{root}"

            def save(name: str, model: Any, of: str | None, kind: str = "child", relation: str = "derived") -> None:
                path = out / f"{name}.pt"
                torch.save(_state(model), path)
                members.append(FamilyMember(name, str(path), root, kind, of, relation))

            save(pname, parent, None, "parent", "")
            if copies:
                members.extend(_write_copies(torch, parent, out / pname, root, pname))

            def child(tag: str, *, of: Any = parent, epochs_: float, lr: float, seed: int, **kw: Any) -> Any:
                model = _net(torch, widths)
                model.load_state_dict(_state(of))
                _fit(torch, model, x, y, epochs=epochs_, seed=base + seed, lr=lr, **kw)
                return model

            if "ft-short" in children:
                save(f"{pname}-ft-short", child("short", epochs_=epochs / 6, lr=1e-3, seed=11), pname)
            if "ft-long" in children:
                long = child("long", epochs_=epochs * 1.5, lr=3e-3, seed=12)
                save(f"{pname}-ft-long", long, pname)
            if "ft-frozen" in children:
                save(f"{pname}-ft-frozen", child("frozen", epochs_=epochs / 2, lr=3e-3, seed=13,
                                                 frozen=("conv1", "bn1", "conv2", "bn2")), pname)
            if "rehead" in children:
                rehead = _net(torch, widths)
                rehead.load_state_dict(_state(parent))
                torch.manual_seed(base + 14)
                rehead.fc.reset_parameters()
                _fit(torch, rehead, x, (y + 3) % 10, epochs=epochs / 2, seed=base + 14, lr=2e-3)
                save(f"{pname}-rehead", rehead, pname)
            if "pruned" in children:
                pruned = _prune(torch, parent, 0.3)
                _fit(torch, pruned, x, y, epochs=epochs / 2, seed=base + 15, lr=2e-3)
                save(f"{pname}-pruned", pruned, pname)
            if "ft-long-ft" in children and "ft-long" in children:
                grand = _net(torch, widths)
                grand.load_state_dict(_state(long))
                _fit(torch, grand, x, y, epochs=epochs / 2, seed=base + 16, lr=2e-3)
                save(f"{pname}-ft-long-ft", grand, f"{pname}-ft-long")
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)
    manifest = out / "family.json"
    manifest.write_text(json.dumps({"version": FAMILY_VERSION, "members": [asdict(m) for m in members]}, indent=1))
    return members


def load_family(out_dir: str | os.PathLike[str]) -> list[FamilyMember] | None:
    """The members written by :func:`make_family` into out_dir (None if missing or of another recipe version)."""
    manifest = Path(out_dir) / "family.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != FAMILY_VERSION:
        return None
    return [FamilyMember(**m) for m in data["members"]]


def family_pairs(members: list[FamilyMember]) -> list[FamilyPair]:
    """Every labelled pair of the family (each unordered pair once; a → b with a listed first)."""
    by_name = {m.name: m for m in members}

    def ancestors(m: FamilyMember) -> list[str]:
        chain = []
        while m.parent is not None:
            chain.append(m.parent)
            m = by_name[m.parent]
        return chain

    pairs = []
    for a, b in itertools.combinations(members, 2):
        if a.root != b.root:
            pairs.append(FamilyPair(a.name, b.name, "unrelated", None, hard_negative=True))
            continue
        if (a.kind == "copy" or a.kind == "parent") and b.kind == "copy":
            tag_a = "fp32" if a.kind == "parent" else a.weights
            pairs.append(FamilyPair(a.name, b.name, "identical" if tag_a == b.weights else "same-weights", None))
        elif a.kind == "copy" or b.kind == "copy":
            continue  # a copy and a child: derived, but the parent pair already covers it
        elif a.name in ancestors(b):
            pairs.append(FamilyPair(a.name, b.name, "derived", "a"))
        elif b.name in ancestors(a):
            pairs.append(FamilyPair(a.name, b.name, "derived", "b"))
        else:
            pairs.append(FamilyPair(a.name, b.name, "derived", None))  # siblings: a common parent
    return pairs
