"""``prune_plan``: read a model, score every layer's channels, choose per-layer ratios that meet a target.

The ratios come from one global rule (docs/prune.md): each prunable layer keeps the fewest channels whose
greedy novelty (the pivoted-QR residual of ``_scores``) holds a share ``tau`` of the layer's novelty
energy, with ``tau`` the same for every layer and found by bisection so that the removed parameters (or
multiply-accumulates) meet the target. A layer whose channels repeat each other loses many; a layer whose
every channel adds a new direction loses few. Near-zero channels have no novelty and go first.

Coupling: the channels a layer removes also leave the inputs of the layers that consume them. Without a
graph (state_dicts, safetensors) the consumer is taken to be the next layer in order whose input channels
equal this layer's outputs; a depthwise layer follows its producer's ratio exactly. The integration for
PyTorch modules (``filterdb.integrations.torch_pruning``) follows the module's real graph instead.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import UsageError
from ..types import ConvLayer, ModelRecord
from ._plan import TOO_WIDE_REASON, UNTOUCHED, LayerPlan, PrunePlan
from ._scores import STRATEGIES, ChannelScores, layer_scores, unpaired_scores
from ._shuffle import SHUFFLE_REASON, shufflenet_chain

if TYPE_CHECKING:
    from ..check import Thresholds

__all__ = ["prune_plan", "PlanSettings"]


@dataclass(frozen=True)
class PlanSettings:
    """The thresholds of a plan (documented in docs/prune.md)."""

    zero_eps: float = 0.01  # a channel is near-zero when every |w| ≤ this × the layer's max |w|
    duplicate_cos: float = 0.95  # |cosine| at which a channel repeats a kept one
    max_ratio: float = 0.9  # never remove more than this share of one layer's channels
    min_channels: int = 1  # never keep fewer channels than this
    protect_outputs: bool = True  # a layer no other conv consumes may be a model output: left alone
    # a layer with more output channels is left alone, unscored: its scores need O x O matrices (8,192: 0.5 GB
    # each in float64), and O comes from an untrusted file (torchvision's widest classification conv has 7,392)
    max_channels: int = 8192
    # how channels are ranked: one of prune._scores.STRATEGIES. The default is the one bench/bench_prune.py
    # measured best (docs/prune.md, "Measured"): compensated, ahead before fine-tuning on every net
    strategy: str = "compensated"
    # per-layer ratios: "share" (one importance-energy share τ), "uniform" (one ratio) or "global" (one
    # threshold on importances relative to their layer's mean). The bench's choice (docs/prune.md, "Measured"):
    # uniform is the only one within 0.5 points of the best baseline after fine-tuning in all 9 cells, and ahead
    # of share and global before fine-tuning in 8 and 7 of 9
    allocation: str = "uniform"


def prune_plan(model: Any, target: float = 0.5, by: Literal["params", "flops"] = "params", *,
               input_shape: Sequence[int] | None = None, free_only: bool = False,
               settings: PlanSettings = PlanSettings(), **read_options: Any) -> PrunePlan:
    """A data-free prune plan: per conv layer, which output channels to remove and why.

    Parameters
    ----------
    model : path, source name, ModelRecord, torch.nn.Module or keras.Model
        Anything :func:`filterdb.read_model` reads, or a record it returned.
    target : float
        Share of the conv parameters (or multiply-accumulates) to remove, in (0, 1).
    by : {"params", "flops"}
        What ``target`` counts. ``"flops"`` needs ``input_shape`` and layer strides.
    input_shape : sequence of int, optional
        (channels, height, width) of one input, for FLOP counts.
    free_only : bool, default False
        Remove only the near-zero channels (``target`` is then ignored): the plan that costs nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from filterdb import ModelInfo, ModelRecord
    >>> from filterdb.readers import make_layer
    >>> rng = np.random.default_rng(0)
    >>> w1 = rng.standard_normal((8, 3, 3, 3)); w1[4:] = w1[:4]            # channels 4..7 repeat 0..3
    >>> w2 = rng.standard_normal((4, 8, 3, 3))
    >>> record = ModelRecord(ModelInfo(source="demo", format="onnx"),
    ...                      (make_layer("c1", "Conv", w1), make_layer("c2", "Conv", w2)))
    >>> plan = prune_plan(record, target=0.3, settings=PlanSettings(allocation="share"))
    >>> plan.layers[0].reason, sorted(plan.layers[0].remove)
    ('redundant channels', [4, 5, 6, 7])
    >>> sorted(prune_plan(record, target=0.3).layers[0].remove)  # uniform, the default: 3 of 8 meet the target
    [5, 6, 7]
    """
    if not 0.0 < float(target) < 1.0:
        raise UsageError(f"target must be a share between 0 and 1 (exclusive), got {target!r}")
    if by not in ("params", "flops"):
        raise UsageError(f"by must be 'params' or 'flops', got {by!r}")
    record = model if isinstance(model, ModelRecord) else _read(model, read_options)
    layers = _as_read([layer for layer in record.layers if layer.weight.ndim >= 3])
    if not layers:
        raise UsageError(f"{record.info.source}: no convolution layers to prune")
    shape = _input_shape(input_shape)
    flops = _layer_flops(layers, shape) if shape is not None else None
    if by == "flops" and flops is None:
        raise UsageError("--by flops needs the input shape (--input-shape C,H,W)")
    if settings.allocation not in ("share", "uniform", "global"):
        raise UsageError(f"unknown allocation {settings.allocation!r}: 'share', 'uniform' or 'global'")
    if settings.strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {settings.strategy!r}: one of {', '.join(STRATEGIES)}")
    graph = _chain(layers, settings)
    from threadpoolctl import threadpool_limits

    # One BLAS thread, as for the metrics (metrics.layer_metric_columns): a layer's Gram matrix is at most a few
    # thousand channels square, and on a busy machine OpenBLAS's spinning threads made ResNet-50's scores five to
    # ten times slower than one thread (docs/prune.md, "Speed").
    # The layers are scored in parallel instead, one per core: numpy and LAPACK release the GIL, each layer's
    # scores depend on its weights alone, so the result is the same in any order.
    consumers = [layers[c[0]].weight if c else None for c in graph.consumers]  # the strategy hook (_scores)

    def score(i: int) -> ChannelScores:
        if _out_channels(layers[i]) > settings.max_channels:  # left alone (_chain): no O x O matrix is allocated
            return unpaired_scores(layers[i].weight, zero_eps=settings.zero_eps)
        return layer_scores([layers[i].weight], [consumers[i]], settings.strategy,
                            zero_eps=settings.zero_eps, duplicate_cos=settings.duplicate_cos)[0]

    with threadpool_limits(1, user_api="blas"):
        workers = min(len(layers), os.cpu_count() or 1, 8)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            # the largest Gram matrices first (cost O²·D), and the low-diversity verdicts beside them: no worker
            # is left with one big layer at the end while the others wait
            by_cost = sorted(range(len(layers)), key=lambda i: -layers[i].weight.shape[0] * layers[i].weight.size)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                diversity = pool.submit(_low_diversity, record)
                scored = dict(zip(by_cost, pool.map(score, by_cost)))
                low_diversity = diversity.result()
            scores = [scored[i] for i in range(len(layers))]
        else:
            scores = [score(i) for i in range(len(layers))]
            low_diversity = _low_diversity(record)
    params = [float(layer.weight.size) for layer in layers]
    if free_only:
        keep = _follow([max(settings.min_channels, _out_channels(layer) - s.n_zero) if graph.prunable[i]
                        else _out_channels(layer) for i, (layer, s) in enumerate(zip(layers, scores))], graph)
    else:
        keep = _allocate(layers, scores, graph, flops if by == "flops" and flops else params, float(target), settings)
    plan = _assemble(record, layers, scores, graph, keep, low_diversity, flops, shape, float(target), by, settings)
    notes = plan.notes if free_only else plan.notes + _out_of_reach(plan, settings)
    return dataclasses.replace(plan, strategy="free-only" if free_only else settings.strategy, notes=notes)


def _out_of_reach(plan: PrunePlan, settings: PlanSettings) -> tuple[str, ...]:
    """A note when the target is more than the plan may remove (the allocation then removes all it may): the
    share it reaches, and what the layers it may not touch keep, by reason, so that the shortfall is explained
    in the plan itself and not only by a smaller number."""
    if plan.reduction >= plan.target - 1e-9:
        return ()
    flops = plan.by == "flops" and bool(plan.flops_total)
    total = float((plan.flops_total if flops else plan.params_total) or 1)
    held: dict[str, list[LayerPlan]] = {}
    for lp in plan.layers:
        if lp.reason in UNTOUCHED:
            held.setdefault(lp.reason, []).append(lp)
    parts, kept_total = [], 0.0
    for reason, lps in held.items():
        kept = sum(((lp.flops or 0) - (lp.flops_removed or 0)) if flops else lp.params - lp.params_removed
                   for lp in lps) / total
        kept_total += kept
        names = ", ".join(lp.name for lp in lps[:3]) + (f" and {len(lps) - 3} more" if len(lps) > 3 else "")
        many = len(lps) > 1
        parts.append(f"{len(lps)} layer{'s' if many else ''} '{reason}' ({names}) keep{'' if many else 's'} {kept:.1%}")
    rest = max(0.0, 1.0 - plan.reduction - kept_total)
    parts.append(f"the layers it may prune keep {rest:.1%}, each at the most it may lose "
                 f"({settings.max_ratio:.0%} of its channels, at least {settings.min_channels} kept)")
    measure = "multiply-accumulates" if flops else "weights"
    hint = (". 'Model output' is a guess from the file (no conv takes those channels: a classifier's last conv "
            "feeds a linear layer, a concatenation hides its consumers); where the real outputs are left to "
            "plan_pruner's ignored_layers, PlanSettings(protect_outputs=False) plans those layers too"
            if "keep: model output" in held and settings.protect_outputs else "")
    return (f"target {plan.target:.0%} of conv {measure} is out of reach: this plan removes the most it may, "
            f"{plan.reduction:.1%}. Of the conv {measure}, " + "; ".join(parts) + hint +
            " (docs/prune.md, 'Coupling')",)


def _read(model: Any, options: dict[str, Any]) -> ModelRecord:
    from .._read import read_model

    return read_model(model, **options)


@dataclass(frozen=True)
class _Chain:
    """Which layers the plan may prune, and who consumes whose channels (layer indices)."""

    prunable: tuple[bool, ...]
    reason: tuple[str | None, ...]  # why a layer is left alone
    consumers: tuple[tuple[int, ...], ...]  # layers whose inputs are this layer's outputs
    follows: tuple[int, ...]  # depthwise layer -> the producer whose channels it carries, else -1
    notes: tuple[str, ...] = ()  # what the plan says about the couplings it assumed


def _out_channels(layer: ConvLayer) -> int:
    w = layer.weight.shape
    return int(w[1] * layer.groups) if layer.kind == "transpose" else int(w[0])


def _in_channels(layer: ConvLayer) -> int:
    w = layer.weight.shape
    return int(w[0]) if layer.kind == "transpose" else int(w[1] * layer.groups)


def _as_read(layers: Sequence[ConvLayer]) -> list[ConvLayer]:
    """Layers as the plan reads them: a state_dict cannot say that an (O, 1, k, k) weight right after a layer
    with O outputs is depthwise (groups are not stored), so such a layer is taken to be one."""
    out = list(layers)
    for i in range(1, len(out)):
        layer = out[i]
        if (layer.depth_source == "order" and layer.kind == "conv" and layer.weight.ndim == 4
                and layer.weight.shape[1] == 1 and layer.weight.shape[0] > 1
                and _out_channels(out[i - 1]) == layer.weight.shape[0]):
            out[i] = dataclasses.replace(layer, kind="depthwise", groups=int(layer.weight.shape[0]),
                                         notes=layer.notes + ("taken as depthwise (groups not stored)",))
    return out


def _chain(layers: Sequence[ConvLayer], settings: PlanSettings) -> _Chain:
    """Consumers by order: the next layer whose input channels match (the file has no graph to follow); for
    torchvision's ShuffleNetV2, recognised by its layer names, its real couplings (prune._shuffle)."""
    n = len(layers)
    consumers: list[list[int]] = [[] for _ in range(n)]
    follows = [-1] * n
    shuffle = shufflenet_chain([layer.name for layer in layers], [tuple(layer.weight.shape) for layer in layers])
    if shuffle is not None:
        consumers, follows = [list(c) for c in shuffle.consumers], list(shuffle.follows)
    # the next layer with matching inputs, found by bisection in the layers grouped by input channels: a scan per
    # layer would be quadratic in a file's layer count
    by_inputs: dict[int, list[int]] = {}
    for j, layer in enumerate(layers):
        by_inputs.setdefault(_in_channels(layer), []).append(j)
    for i, layer in enumerate(layers if shuffle is None else ()):
        readers = by_inputs.get(_out_channels(layer), [])
        k = bisect.bisect_right(readers, i)
        if k < len(readers):
            j = readers[k]
            consumers[i].append(j)
            if layers[j].kind == "depthwise":
                follows[j] = i
    prunable, reason = [], []
    for i, layer in enumerate(layers):
        why: str | None = None
        if layer.kind == "transpose" or layer.weight.ndim != 4:
            why = "keep: not a prunable kind"
        elif _out_channels(layer) > settings.max_channels:
            why = TOO_WIDE_REASON
        elif shuffle is not None and i in shuffle.shuffled:
            why = SHUFFLE_REASON
        elif follows[i] >= 0:
            why = None  # carries its producer's channels (a depthwise conv; in a state_dict, also one stored as conv)
        elif layer.kind == "grouped":
            why = "keep: coupling not understood"
        elif layer.kind == "depthwise":
            why = None if follows[i] >= 0 else "keep: coupling not understood"
        elif settings.protect_outputs and not consumers[i]:
            why = "keep: model output"
        elif any(layers[j].kind == "grouped" for j in consumers[i]):
            why = "keep: coupling not understood"
        prunable.append(why is None and follows[i] < 0 and layer.kind != "depthwise")
        reason.append(why)
    notes = () if shuffle is None else (
        "torchvision's ShuffleNetV2 layout was recognised from the layer names: a branch's output and the next "
        "block's input cross a channel shuffle and are kept (keep: channel shuffle); each branch2's inner "
        "channels and the stem's outputs are planned",)
    return _Chain(tuple(prunable), tuple(reason), tuple(tuple(c) for c in consumers), tuple(follows), notes)


def _producers(graph: _Chain) -> list[int]:
    producer = [-1] * len(graph.consumers)
    for i, consumers in enumerate(graph.consumers):
        for j in consumers:
            producer[j] = i
    return producer


def _remaining(sizes: Sequence[float], keep: Sequence[int], out: Sequence[int], graph: _Chain,
               producer: Sequence[int]) -> np.ndarray:
    """What is left of each layer's size (weights or MACs) when layer i keeps ``keep[i]`` of ``out[i]``
    output channels: its own outputs and the inputs its producer kept (a depthwise layer only the latter)."""
    left = np.empty(len(sizes))
    for j, size in enumerate(sizes):
        own = 1.0 if graph.follows[j] >= 0 else keep[j] / out[j]
        p = producer[j]
        inputs = keep[p] / out[p] if p >= 0 else 1.0
        left[j] = size * own * inputs
    return left


def _allocate(layers: Sequence[ConvLayer], scores: Sequence[ChannelScores], graph: _Chain, sizes: Sequence[float],
              target: float, settings: PlanSettings) -> list[int]:
    """Channels to keep per layer: one novelty-energy share ``tau`` for all layers, bisected to the target."""
    out = [_out_channels(layer) for layer in layers]
    producer = _producers(graph)
    total = float(sum(sizes))
    energies = []
    for s in scores:
        ordered = np.sort(s.importance)[::-1] ** 2
        cumulative = np.cumsum(ordered)
        energies.append(cumulative / cumulative[-1] if cumulative.size and cumulative[-1] > 0 else None)

    # "global": one threshold on importances scaled by their layer's mean (Torch-Pruning's global pruning
    # with the strategy's scores): a layer of many equal channels and a layer of few strong ones compare
    relative = [s.importance / s.importance.mean() if s.importance.size and s.importance.mean() > 0
                else np.zeros(len(s.importance)) for s in scores]
    top = max((float(r.max()) for r in relative if r.size), default=0.0)

    def keep_for(tau: float) -> list[int]:
        keep = []
        for i, n in enumerate(out):
            if not graph.prunable[i]:
                keep.append(n)
                continue
            floor = max(settings.min_channels, math.ceil((1 - settings.max_ratio) * n))
            energy = energies[i]
            if settings.allocation == "uniform":  # the same share of channels kept in every layer
                k = math.ceil(tau * n)
            elif settings.allocation == "global":  # every channel above one threshold, whatever its layer
                k = int((relative[i] >= (1 - tau) * top).sum()) if tau < 1 else n
            else:
                k = floor if energy is None else int(np.searchsorted(energy, tau - 1e-12) + 1)
            keep.append(min(n, max(floor, k)))
        return _follow(keep, graph)

    def removed(tau: float) -> float:
        return total - float(_remaining(sizes, keep_for(tau), out, graph, producer).sum())

    if removed(0.0) < target * total:
        return keep_for(0.0)  # out of reach within max_ratio: remove all that is allowed (the plan says so)
    lo, hi = 0.0, 1.0  # tau = 0 keeps each layer's floor, tau = 1 every channel with any novelty
    for _ in range(50):
        mid = (lo + hi) / 2
        if removed(mid) >= target * total:
            lo = mid
        else:
            hi = mid
    return _give_back(keep_for(lo), scores, graph, sizes, out, producer, target * total)


def _give_back(keep: list[int], scores: Sequence[ChannelScores], graph: _Chain, sizes: Sequence[float],
               out: Sequence[int], producer: Sequence[int], goal: float) -> list[int]:
    """Keep back single channels while the removal still meets ``goal``. One step of ``tau`` moves many
    layers at once (with the uniform allocation every layer's ``ceil`` turns together, with the share rule a
    layer's duplicates all go together): the bisection's answer can remove several points more than the
    target (52.7 % for 50 % on bench/bench_prune.py's VGG). In each pass every layer may keep back one
    channel, the layers whose next channel is the most important against their mean first; passes repeat
    while any channel comes back."""
    readers: list[list[int]] = [[] for _ in out]  # the layers whose inputs are layer i's channels
    for r, p in enumerate(producer):
        if p >= 0:
            readers[p].append(r)
    led: list[list[int]] = [[] for _ in out]  # the depthwise layers that keep layer i's channels
    for f, leader in enumerate(graph.follows):
        if leader >= 0:
            led[leader].append(f)
    kept = _follow(list(keep), graph)

    def own(j: int) -> float:
        return 1.0 if graph.follows[j] >= 0 else kept[j] / out[j]

    def gain(i: int) -> float:  # the weights that come back when layer i keeps one more channel: its neighbours only
        p = producer[i]
        back = sizes[i] * (kept[p] / out[p] if p >= 0 else 1.0) / out[i]
        back += sum(sizes[r] * own(r) for r in readers[i]) / out[i]
        return back + sum(sum(sizes[r] * own(r) for r in readers[f]) / out[f] for f in led[i])

    def removed() -> float:  # exact, O(layers): only where the running sum is too close to the goal to trust
        return float(sum(sizes)) - float(_remaining(sizes, kept, out, graph, producer).sum())

    now, margin = removed(), 1e-9 * float(sum(sizes))
    relative = [s.importance / s.importance.mean() if s.importance.size and s.importance.mean() > 0
                else np.zeros(len(s.importance)) for s in scores]
    while True:  # each pass is linear in the layers and their couplings
        candidates = sorted((-float(relative[i][scores[i].order[kept[i]]]), i) for i in range(len(out))
                            if graph.prunable[i] and kept[i] < out[i])
        changed = False
        for _, i in candidates:
            after = now - gain(i)
            if after < goal - margin:
                continue
            for j in (i, *led[i]):
                kept[j] += 1
            if after < goal + margin:
                after = removed()
                if after < goal:
                    for j in (i, *led[i]):
                        kept[j] -= 1
                    continue
            now, changed = after, True
        if not changed:
            return kept


def _follow(keep: list[int], graph: _Chain) -> list[int]:
    """A depthwise layer keeps exactly the channels its producer keeps."""
    for j, i in enumerate(graph.follows):
        if i >= 0:
            keep[j] = keep[i]
    return keep


def _low_diversity(record: ModelRecord, thresholds: Thresholds | None = None) -> set[str]:
    """Layers with the low-diversity verdict of ``filterdb check`` (check.judge_layers on the normalised
    variance entropy), from that one metric: the rest of the check (orthogonality, norms, the clean entropy) was
    two thirds of a ResNet-50 plan's time and says nothing here. tests/test_prune_speed.py checks the set
    against check_model's verdicts."""
    from ..check import Thresholds, judge_layers
    from ..metrics import _normalised, variance_entropy

    t = thresholds or Thresholds()
    if t.entropy != "all":  # the clean variant needs the sparse filters removed first: the whole check does that
        from ..check import check_model

        report = check_model(record, t)
        return {layer.name for layer, verdicts in zip(record.layers, report.verdicts)
                if any(v.kind == "low-diversity" for v in verdicts)}
    names, n_filters, kernels, entropy = [], [], [], []
    for layer in record.layers:
        kernel = tuple(int(k) for k in layer.weight.shape[2:])
        if len(kernel) != 2 or kernel[0] * kernel[1] <= 1:
            continue
        n = int(layer.weight.shape[0] * layer.weight.shape[1])
        h = variance_entropy(layer.weight.reshape(n, kernel[0] * kernel[1]))
        names.append(layer.name)
        n_filters.append(n)
        kernels.append(kernel)
        entropy.append(_normalised(h, n, kernel)[0])
    if not names:
        return set()
    judged = judge_layers({"n_filters": np.array(n_filters), "kernel": kernels, "sparsity": np.zeros(len(names)),
                           "variance_entropy_norm": np.array(entropy)}, t)
    return {name for name, kinds in zip(names, judged.kinds()) if "low-diversity" in kinds}


def _input_shape(shape: Sequence[int] | None) -> tuple[int, ...] | None:
    if shape is None:
        return None
    values = tuple(int(v) for v in shape)
    if len(values) != 3 or min(values) <= 0:
        raise UsageError(f"input shape must be three positive sizes C,H,W, got {shape!r}")
    return values


def _layer_flops(layers: Sequence[ConvLayer], shape: tuple[int, ...]) -> list[int] | None:
    """MACs per layer along the chain from the input shape; None when a stride is unknown."""
    height, width = shape[1], shape[2]
    out = []
    for layer in layers:
        if layer.stride is None or layer.kind == "transpose":
            return None
        sh, sw = (layer.stride + layer.stride)[:2] if len(layer.stride) == 1 else layer.stride[:2]
        height, width = max(1, math.ceil(height / sh)), max(1, math.ceil(width / sw))
        out.append(int(layer.weight.size * height * width))
    return out


def _assemble(record: ModelRecord, layers: Sequence[ConvLayer], scores: Sequence[ChannelScores], graph: _Chain,
              keep: list[int], low_diversity: set[str], flops: list[int] | None, shape: tuple[int, ...] | None,
              target: float, by: Literal["params", "flops"], settings: PlanSettings) -> PrunePlan:
    out = [_out_channels(layer) for layer in layers]
    producer = _producers(graph)
    params = [float(layer.weight.size) for layer in layers]
    left = _remaining(params, keep, out, graph, producer)
    flops_left = _remaining(flops, keep, out, graph, producer) if flops else None
    plans = []
    for i, (layer, s) in enumerate(zip(layers, scores)):
        source = graph.follows[i] if graph.follows[i] >= 0 else i
        removed = tuple(int(c) for c in scores[source].order[keep[i]:][::-1]) if graph.prunable[source] else ()
        zero = sum(1 for c in removed if scores[source].zero[c])
        duplicate = sum(1 for c in removed if scores[source].duplicate_of[c] >= 0 and not scores[source].zero[c])
        reason = graph.reason[i] or _reason(removed, zero, duplicate, layer.name in low_diversity)
        if graph.follows[i] >= 0:
            coupled: tuple[str, ...] = (layers[graph.follows[i]].name,)
        else:
            coupled = tuple(layers[j].name for j in graph.consumers[i] if graph.follows[j] == i)
        plans.append(LayerPlan(
            name=layer.name, kind=layer.kind, out_channels=out[i], ratio=round(1 - keep[i] / out[i], 6),
            remove=removed, reason=reason, importance=tuple(s.importance.tolist()), n_zero=s.n_zero,
            n_duplicate=s.n_duplicate, coupled_with=coupled, params=int(layer.weight.size),
            params_removed=int(round(params[i] - left[i])), flops=flops[i] if flops else None,
            flops_removed=int(round(flops[i] - flops_left[i])) if flops and flops_left is not None else None))
    free = _removed_if(params, graph, producer, out, [o - (s.n_zero if graph.prunable[i] else 0)
                                                       for i, (o, s) in enumerate(zip(out, scores))])
    cheap = _removed_if(params, graph, producer, out, [
        o - (int(((s.duplicate_of >= 0) | s.zero).sum()) if graph.prunable[i] else 0)
        for i, (o, s) in enumerate(zip(out, scores))])
    notes = ("no graph is read: a layer's consumer is the next layer with matching input channels, and a layer no "
             "conv consumes is kept as a possible model output; filterdb.integrations.torch_pruning follows a "
             "module's real graph",) + graph.notes
    return PrunePlan(
        model=record.info.source, target=target, by=by, layers=tuple(plans), params_total=int(sum(params)),
        params_removed=int(sum(lp.params_removed for lp in plans)), free_params=int(round(free)),
        redundant_params=int(round(cheap - free)), flops_total=int(sum(flops)) if flops else None,
        flops_removed=int(sum(lp.flops_removed or 0 for lp in plans)) if flops else None, input_shape=shape,
        notes=notes, settings={"zero_eps": settings.zero_eps, "duplicate_cos": settings.duplicate_cos,
                               "max_ratio": settings.max_ratio, "allocation": settings.allocation})


def _removed_if(sizes: Sequence[float], graph: _Chain, producer: Sequence[int], out: Sequence[int],
                keep: list[int]) -> float:
    return float(sum(sizes)) - float(_remaining(sizes, _follow(list(keep), graph), out, graph, producer).sum())


def _reason(removed: tuple[int, ...], zero: int, duplicate: int, low_diversity: bool) -> str:
    if not removed:
        return "keep: healthy and small"
    if zero * 2 >= len(removed):
        return "near-zero filters"
    if duplicate * 2 >= len(removed):
        return "redundant channels"
    return "low diversity" if low_diversity else "least novel channels"
