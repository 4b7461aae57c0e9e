"""The couplings of torchvision's ShuffleNetV2, read from its layer names (a file has no graph to follow).

Each ShuffleNetV2 block ends in ``cat(branch1, branch2)`` followed by a channel shuffle, which interleaves the
two branches' channels; a stride-1 block splits its input in two halves first and passes one half through
untouched. So the channels of a branch's output (``branch1.2``, ``branch2.5``) and of the next block's input
cross a shuffle: removing some would break the interleave, and ``plan_pruner`` leaves them alone
(filterdb.integrations.torch_pruning). What can go: each ``branch2.0``'s outputs (with its depthwise
``branch2.3`` and the inputs of ``branch2.5``) and the stem ``conv1``'s outputs (with the first block's
depthwise ``branch1.0`` and the inputs of its ``branch2.0``). The chain by order (prune._build) gets this
wrong: it links a branch output to the next layer with matching inputs, and plans channels the module's graph
cannot remove (docs/prune.md, "Coupling").

The names are the module paths of ``torchvision.models.ShuffleNetV2`` as a module, its state_dict or
safetensors file (``stage2.0.branch1.0``, ``stage2.0.branch1.0.weight``) and its ONNX export
(``/stage2/stage2.0/branch1/branch1.0/Conv``); the layout is used only when every conv layer has one of them
and the shapes agree, else the plan falls back to the chain by order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SHUFFLE_REASON", "ShuffleChain", "shufflenet_chain"]

SHUFFLE_REASON = "keep: channel shuffle"

_BRANCH = re.compile(r"(?:^|[./])stage(\d+)\.(\d+)(?:\.|/branch[12]/)branch([12])\.(\d+)(?:\.weight)?(?:/[^/]*)?$")
_STEM = re.compile(r"(?:^|[./])conv([15])\.0(?:\.weight)?(?:/[^/]*)?$")
_PARTS = {"1": (0, 2), "2": (0, 3, 5)}  # the conv positions inside torchvision's branch1 and branch2


@dataclass(frozen=True)
class ShuffleChain:
    """Consumers, depthwise followers and the layers left alone, as ``_Chain`` takes them (layer indices)."""

    consumers: tuple[tuple[int, ...], ...]
    follows: tuple[int, ...]
    shuffled: frozenset[int]  # layers whose channels cross a channel shuffle: never pruned


def _key(name: str) -> tuple[str, ...] | None:
    """('stem', '1'), ('stem', '5') or (stage, block, branch, position) for a ShuffleNetV2 layer name."""
    if (m := _BRANCH.search(name)) is not None:
        return m.group(1), m.group(2), m.group(3), m.group(4)
    if (m := _STEM.search(name)) is not None:
        return "stem", m.group(1)
    return None


def shufflenet_chain(names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> ShuffleChain | None:
    """The real coupling of a torchvision ShuffleNetV2 from its conv layers' names and weight shapes
    (``O × I/g × k × k``), or None when the layers are not that layout."""
    keys = [_key(name) for name in names]
    if not keys or any(k is None for k in keys) or len(set(keys)) != len(keys):
        return None
    at = {k: i for i, k in enumerate(keys) if k is not None}
    stem, last = at.get(("stem", "1")), at.get(("stem", "5"))
    blocks = sorted({(int(k[0]), int(k[1])) for k in at if k[0] != "stem"})
    if stem is None or last is None or not blocks:
        return None
    n = len(names)
    consumers: list[list[int]] = [[] for _ in range(n)]
    follows = [-1] * n
    shuffled: set[int] = set()
    first_stage = blocks[0][0]
    for stage, block in blocks:
        s, b = str(stage), str(block)
        branch2 = [at.get((s, b, "2", str(p))) for p in _PARTS["2"]]
        branch1 = [at.get((s, b, "1", str(p))) for p in _PARTS["1"]]
        if any(i is None for i in branch2) or any((i is None) == (block == 0) for i in branch1):
            return None  # each block has a branch2; the first block of a stage (stride 2), and only it, a branch1
        expand, depthwise, project = (int(i) for i in branch2 if i is not None)
        width = shapes[expand][0]
        if shapes[depthwise][:2] != (width, 1) or shapes[project][1] != width:
            return None  # the shapes are not ShuffleNetV2's: fall back to the chain by order
        consumers[expand].append(depthwise)
        follows[depthwise] = expand
        consumers[depthwise].append(project)
        shuffled.add(project)  # its outputs are interleaved with the other half's by the shuffle
        entry = [expand]
        if block == 0:
            down, down_project = (int(i) for i in branch1 if i is not None)
            if shapes[down][1] != 1 or shapes[down_project][1] != shapes[down][0]:
                return None
            consumers[down].append(down_project)
            shuffled.add(down_project)
            entry.append(down)
        if (stage, block) == (first_stage, 0):  # the stem feeds the first block directly (through a max pool)
            stem_out = shapes[stem][0]
            if shapes[expand][1] != stem_out or (len(entry) > 1 and shapes[entry[1]][0] != stem_out):
                return None
            for i in entry:
                consumers[stem].append(i)
                if i != expand:
                    follows[i] = stem
        elif block == 0:
            shuffled.update(i for i in entry if i != expand)  # the depthwise conv of a shuffled input
    return ShuffleChain(tuple(tuple(c) for c in consumers), tuple(follows), frozenset(shuffled))
