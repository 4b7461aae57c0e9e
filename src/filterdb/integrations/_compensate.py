"""Data-free compensation of removed channels, applied group by group while Torch-Pruning prunes (torch only).

Removing an output channel ``c`` of a conv deletes its activation ``a_c`` from every layer that reads it.
Two corrections need no data (docs/prune.md, "compensated"):

- **merge**: when ``c`` nearly repeats a kept channel ``k`` of the same layer — the cosine of their effective
  filters (the conv weights and bias with the following batch norm folded in) is at least ``duplicate_cos`` —
  then ``a_c ≈ s · a_k`` after a ReLU (``s`` > 0 the ratio of their effective norms, and ReLU commutes with a
  positive scale), so the consumer's input weights of ``c``, times ``s``, are added to those of ``k``. An
  exact (positively scaled) copy is merged with no change to the outputs.
- **mean**: what is not merged is replaced by its mean. A batch norm's running statistics say that its
  output ``y_c`` has mean ``β_c`` and standard deviation ``|γ_c|`` on the training data; taking ``y_c``
  Gaussian, ``E[relu(y_c)] = β Φ(β/|γ|) + |γ| φ(β/|γ|)``. These moments are carried along Torch-Pruning's
  graph to each consumer's input (a ReLU rectifies them, a residual addition sums them as independent
  branches, pooling and reshapes pass them on), so the consumer of a residual sum and the consumer of one
  branch each get their own. The consumer's bias (or, without one, the running mean of the batch norm after
  it) absorbs ``Σ_c E[a_c] · Σ_kernel W_next[:, c]``. An input whose path reaches no batch norm (or holds an
  operation not listed) has no data-free mean, and is only merged.

Approximations, stated where they are made: Gaussian batch-norm outputs, independent residual branches;
zero padding and max-pooling's rise of the mean are ignored (the mean is taken over the whole kernel).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Compensation", "compensated_step", "compensating", "compensate_group", "relu_gaussian_mean",
           "relu_gaussian_moments"]


@dataclass
class Compensation:
    """What one compensated pruning step did."""

    groups: int = 0  # groups pruned
    merged: int = 0  # removed channels merged into a kept twin
    folded: int = 0  # removed channels whose mean went into a bias or a running mean
    uncompensated: int = 0  # removed channels left as plain removal (no batch norm, or a coupling not followed)


def relu_gaussian_mean(mean: Any, std: Any) -> Any:
    """``E[max(0, Y)]`` for ``Y ~ N(mean, std²)``, elementwise on tensors (``std`` = 0 gives ``max(0, mean)``)."""
    return relu_gaussian_moments(mean, std * std)[0]


def compensated_step(pruner: Any, *, duplicate_cos: float = 0.95) -> Compensation:
    """``pruner.step()`` of a Torch-Pruning pruner, with every group compensated (see the module doc)."""
    return _compensate_groups(pruner.step(interactive=True), pruner.DG, duplicate_cos)


def compensating(pruner: Any, *, duplicate_cos: float = 0.95) -> Any:
    """Make ``pruner.step()`` compensated (what a plan of the compensated strategy asks for); it then returns
    the :class:`Compensation`. ``step(interactive=True)`` still yields the plain groups."""
    plain = pruner.step

    def step(interactive: bool = False) -> Any:
        if interactive:
            return plain(interactive=True)
        return _compensate_groups(plain(interactive=True), pruner.DG, duplicate_cos)

    pruner.step = step
    return pruner


def _compensate_groups(groups: Iterable[Any], graph: Any, duplicate_cos: float) -> Compensation:
    report = Compensation()
    for group in groups:
        compensate_group(group, graph, duplicate_cos=duplicate_cos, report=report)
    return report


def compensate_group(group: Any, graph: Any, *, duplicate_cos: float = 0.95,
                     report: Compensation | None = None) -> Compensation:
    """Prune one Torch-Pruning group (``group.prune()``) and compensate its consumers."""
    import torch

    report = report if report is not None else Compensation()
    with torch.no_grad():
        roles = _roles(group)
        actions = _actions(roles, graph, duplicate_cos, report)
        group.prune()
        for consumer, removed, kept, merges, means, old_columns in actions:
            _apply(consumer, removed, merges, means, old_columns, graph)
    report.groups += 1
    return report


@dataclass
class _Roles:
    producers: list[tuple[Any, list[int], list[int]]]  # conv, its removed out-channels, their root indices
    norms: list[tuple[Any, list[int], list[int]]]  # batch norm, removed channels, root indices
    consumers: list[tuple[Any, list[int], list[int]]]  # conv (groups 1) or linear, removed in-channels, roots
    other: int  # members of a kind not followed (depthwise, concatenations' parameters, ...)


def _roles(group: Any) -> _Roles:
    import torch.nn as nn

    roles = _Roles([], [], [], 0)
    for item in group.items:
        dep, idxs = item.dep, [int(i) for i in item.idxs]
        roots = [int(i) for i in getattr(item, "root_idxs", idxs)]
        module, name = dep.target.module, getattr(dep.handler, "__name__", "")
        if isinstance(module, nn.Conv2d) and module.groups == 1 and name == "prune_out_channels":
            roles.producers.append((module, idxs, roots))
        elif isinstance(module, nn.BatchNorm2d) and name == "prune_out_channels":
            roles.norms.append((module, idxs, roots))
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and name == "prune_in_channels" and (
                isinstance(module, nn.Linear) or module.groups == 1):
            roles.consumers.append((module, idxs, roots))
        elif isinstance(module, nn.Conv2d) and module.groups > 1:
            roles.other += 1
    return roles


def _actions(roles: _Roles, graph: Any, duplicate_cos: float, report: Compensation) -> list[tuple[Any, ...]]:
    """Per consumer: (module, removed in-channels, kept in-channels, merges [(removed, position of its twin
    among the kept inputs, scale)], the mean of each removed input or None, the removed inputs' weights) —
    all read before the group is pruned."""
    twins = _twins(roles, duplicate_cos)  # removed channel -> (kept channel, scale)
    actions = []
    for module, idxs, _ in roles.consumers:
        size = module.in_channels if hasattr(module, "in_channels") else module.in_features
        moments = _input_moments(graph, module)
        input_mean = moments[0].tolist() if moments is not None and len(moments[0]) == size else None
        removed = set(idxs)
        kept = [i for i in range(size) if i not in removed]
        merges, means = [], []
        for i in idxs:
            twin = twins.get(i)
            mean = input_mean[i] if input_mean is not None else None
            if twin is not None and twin[0] < size and twin[0] not in removed:
                k, scale = twin
                merges.append((i, kept.index(k), scale))
                means.append(None if input_mean is None else mean - scale * input_mean[k])
                report.merged += 1
            else:
                means.append(mean)
                if mean is None:
                    report.uncompensated += 1
                else:
                    report.folded += 1
        # the removed inputs' weights, before pruning, in the rows the consumer keeps: a residual can couple a
        # conv's outputs to its own inputs (MobileNetV3's first block: 16 → 16 around a 1x1), so the same group
        # removes some of its rows too
        gone_rows = {r for producer, out_idxs, _ in roles.producers if producer is module for r in out_idxs}
        rows = [r for r in range(module.weight.shape[0]) if r not in gone_rows]
        old_columns = module.weight.detach()[rows][:, idxs].clone()
        actions.append((module, idxs, kept, merges, means, old_columns))
    return actions


_PASS_THROUGH = ("MaxPool", "AvgPool", "AdaptiveAvgPool", "Mean", "View", "Reshape", "Flatten", "Clone", "Dropout",
                 "Contiguous", "Identity")


def _input_moments(graph: Any, consumer: Any) -> tuple[Any, Any] | None:
    """Mean and variance per input channel of ``consumer``, data-free, along Torch-Pruning's graph: a batch
    norm's output is N(β, γ²); a ReLU maps a Gaussian's moments to the rectified ones; an addition sums means
    and variances (independent branches); pooling, reshapes and the like pass them on (max-pooling's rise of
    the mean is ignored). None where the path holds anything else."""
    node = graph.module2node.get(consumer) if graph is not None else None
    if node is None or len(node.inputs) != 1:
        return None
    return _moments(node.inputs[0], 0)


def _moments(node: Any, depth: int) -> tuple[Any, Any] | None:
    import torch
    import torch.nn as nn

    if depth > 64:
        return None
    module = node.module
    if isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        gamma = module.weight.detach().double() if module.weight is not None else torch.ones(n, dtype=torch.float64)
        beta = module.bias.detach().double() if module.bias is not None else torch.zeros(n, dtype=torch.float64)
        return beta.clone(), gamma * gamma
    name = type(module).__name__ + str(getattr(module, "_grad_fn", ""))
    inputs = list(node.inputs)
    if isinstance(module, nn.ReLU) or "Relu" in name:
        if len(inputs) != 1:
            return None
        given = _moments(inputs[0], depth + 1)
        return None if given is None else relu_gaussian_moments(*given)
    if "AddBackward" in name and len(inputs) == 2:
        a, b = _moments(inputs[0], depth + 1), _moments(inputs[1], depth + 1)
        if a is None or b is None or a[0].shape != b[0].shape:
            return None
        return a[0] + b[0], a[1] + b[1]
    if any(word in name for word in _PASS_THROUGH) and len(inputs) == 1:
        return _moments(inputs[0], depth + 1)
    return None


def relu_gaussian_moments(mean: Any, var: Any) -> tuple[Any, Any]:
    """Mean and variance of ``max(0, Y)`` for ``Y ~ N(mean, var)``, elementwise."""
    import torch

    std = torch.sqrt(var.clamp(min=0))
    safe = torch.where(std > 0, std, torch.ones_like(std))
    z = mean / safe
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    first = torch.where(std > 0, mean * cdf + std * pdf, mean.clamp(min=0))
    second = torch.where(std > 0, (mean * mean + var) * cdf + mean * std * pdf, mean.clamp(min=0) ** 2)
    return first, (second - first * first).clamp(min=0)


def _twins(roles: _Roles, duplicate_cos: float) -> dict[int, tuple[int, float]]:
    """For a plain chain (one conv, its batch norm, consumers indexed like the conv's outputs): each removed
    channel's nearest kept channel by effective-filter cosine, when at least ``duplicate_cos``."""
    import torch

    if len(roles.producers) != 1 or len(roles.norms) > 1 or roles.other:
        return {}
    conv, removed, roots = roles.producers[0]
    if any(r != i for i, r in zip(removed, roots)):
        return {}
    out = conv.out_channels
    for module, _, _ in roles.consumers:
        if (module.in_channels if hasattr(module, "in_channels") else module.in_features) != out:
            return {}  # the consumer does not index the conv's channels one to one (a flatten, a concat)
    weight = conv.weight.detach().double().reshape(out, -1)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(out, dtype=torch.float64)
    if roles.norms:
        bn = roles.norms[0][0]
        if bn.num_features != out or bn.running_var is None or bn.running_mean is None:
            return {}
        gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(out, dtype=torch.float64)
        beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(out, dtype=torch.float64)
        scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        weight, bias = weight * scale[:, None], (bias - bn.running_mean.double()) * scale + beta
    effective = torch.cat([weight, bias[:, None]], dim=1)
    norms = effective.norm(dim=1)
    gone = set(removed)
    keep = torch.tensor([c for c in range(out) if c not in gone], dtype=torch.long)
    if keep.numel() == 0:
        return {}
    gone_list = [c for c in removed if norms[c] != 0]
    if not gone_list:
        return {}
    # one product for all removed channels: indexing the kept rows per channel copied the whole kept matrix
    # once per removed channel (wide_resnet50_2's step took minutes)
    index = torch.tensor(gone_list, dtype=torch.long)
    cos = (effective[index] @ effective[keep].T) / (norms[index][:, None] * norms[keep][None, :]).clamp(min=1e-30)
    best = cos.argmax(dim=1)  # the first of equal maxima, as before
    best_cos = cos.gather(1, best[:, None])[:, 0]
    twins: dict[int, tuple[int, float]] = {}
    for c, value, b in zip(gone_list, best_cos.tolist(), best.tolist()):
        if value >= duplicate_cos:
            k = int(keep[b])
            twins[c] = (k, float(norms[c] / norms[k]))
    return twins


def _apply(consumer: Any, removed: Sequence[int], merges: Iterable[tuple[int, int, float]],
           means: Sequence[float | None], old_columns: Any, graph: Any) -> None:
    """Fold merges and means into a consumer already pruned (its weight holds only the kept inputs);
    ``old_columns`` are its weights of the removed inputs, in the order of ``removed``."""
    import torch
    import torch.nn as nn

    weight = consumer.weight
    delta = torch.zeros(weight.shape[0], dtype=torch.float64)
    for column, mean in enumerate(means):
        slab = old_columns[:, column].double()  # (out, *kernel) or (out,)
        if mean is not None:
            delta += slab.reshape(slab.shape[0], -1).sum(dim=1) * mean
    for i, position, scale in merges:
        column = list(removed).index(i)
        weight[:, position] += (scale * old_columns[:, column]).to(weight.dtype)
    if not bool(delta.any()):
        return
    if consumer.bias is not None:
        consumer.bias += delta.to(consumer.bias.dtype)
        return
    follower = _following_norm(consumer, graph) if isinstance(consumer, nn.Conv2d) else None
    if follower is not None and follower.running_mean is not None:
        follower.running_mean -= delta.to(follower.running_mean.dtype)  # BN((z - d) + d) with μ' = μ - d
    else:
        consumer.bias = nn.Parameter(delta.to(weight.dtype))


def _following_norm(conv: Any, graph: Any) -> Any:
    """The batch norm that reads exactly this conv's output, from Torch-Pruning's dependency graph."""
    import torch.nn as nn

    node = graph.module2node.get(conv) if graph is not None else None
    if node is None or len(node.outputs) != 1:
        return None
    module = node.outputs[0].module
    return module if isinstance(module, nn.BatchNorm2d) and module.num_features == conv.out_channels else None
