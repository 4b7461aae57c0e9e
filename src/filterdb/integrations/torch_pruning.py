"""Apply a :class:`filterdb.prune.PrunePlan` to a ``torch.nn.Module`` with Torch-Pruning (``filterdb[prune]``).

>>> from filterdb.integrations.torch_pruning import plan_pruner        # doctest: +SKIP
>>> pruner = plan_pruner(model, plan, example_inputs=torch.randn(1, 3, 224, 224))
>>> pruner.step()                                                      # the model is now smaller

The plan's layer names come from whatever file it was made from (the module itself, a saved state_dict,
an ONNX export); :func:`map_layers` matches them onto the module's conv layers by name, and by order and
weight shape where names differ. Torch-Pruning's dependency graph then keeps coupled layers (residual
adds, depthwise pairs, concatenations) consistent: a group of coupled layers is pruned at the largest
ratio the plan allows all of its members, with the plan's channel scores summed over the group.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import UsageError, missing_dependency
from ..prune import PrunePlan
from ._compensate import compensated_step, compensating  # the compensated strategy (docs/prune.md, "Strategies")

__all__ = ["plan_pruner", "PlanImportance", "map_layers", "pruning_ratios", "compensated_step"]


def _tp() -> Any:
    try:
        import torch_pruning
    except ImportError as e:  # pragma: no cover - the extra is installed where this module is used
        raise missing_dependency("torch_pruning", "prune", "applying a prune plan to a torch module") from e
    return torch_pruning


def _normal(name: str) -> str:
    """'/features/features.0/Conv' and 'features.0.weight' both → 'features.0'."""
    name = re.sub(r"\.(weight|bias)$", "", name)
    parts = [p for p in re.split(r"[/]", name) if p and not re.fullmatch(r"Conv(_\d+)?|conv2d", p)]
    return parts[-1] if parts else name


def map_layers(module: Any, plan: PrunePlan) -> dict[str, Any]:
    """Plan layer name → the module's ``nn.Conv*`` it names: by name first, then by order and weight shape.

    Raises :class:`~filterdb.errors.UsageError` naming the plan layers that match no conv of the module.
    """
    import torch.nn as nn

    convs = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    by_name = {name: m for name, m in convs}
    mapping: dict[str, Any] = {}
    for lp in plan.layers:
        key = _normal(lp.name)
        if key in by_name and _out_channels(by_name[key]) == lp.out_channels:
            mapping[lp.name] = by_name[key]
    left = [lp for lp in plan.layers if lp.name not in mapping]
    if left:  # names differ (a TFLite or Keras file): align the rest by order, shapes must agree one by one
        used = {id(m) for m in mapping.values()}
        free = [m for _, m in convs if id(m) not in used]
        if len(free) != len(left) or any(_out_channels(m) != lp.out_channels for m, lp in zip(free, left)):
            names = ", ".join(lp.name for lp in left[:5])
            raise UsageError(f"the plan's layers {names}{' …' if len(left) > 5 else ''} match no conv layer of the "
                             "module by name, and the remaining layers differ in order or shape: make the plan "
                             "from this module (or its state_dict / ONNX export)")
        mapping.update({lp.name: m for lp, m in zip(left, free)})
    return mapping


def _out_channels(conv: Any) -> int:
    return int(conv.out_channels)


class PlanImportance:
    """A Torch-Pruning importance that ranks channels by the plan's data-free scores (summed over a coupled
    group's conv layers); groups with no planned layer get ``None`` and are left alone."""

    def __init__(self, plan: PrunePlan, mapping: Mapping[str, Any]) -> None:
        self.scores = {id(mapping[lp.name]): np.asarray(lp.importance, dtype=np.float64)
                       for lp in plan.layers if lp.name in mapping}

    def __call__(self, group: Any) -> Any:
        import torch

        tp = _tp()
        total = None
        for i, (dep, idxs) in enumerate(group):
            layer = dep.layer
            if dep.pruning_fn != tp.prune_conv_out_channels or id(layer) not in self.scores:
                continue
            scores = self.scores[id(layer)]
            root = group[i].root_idxs
            if total is None:
                total = np.zeros(max(root) + 1 if len(root) else 0)
            np.add.at(total, np.asarray(root), scores[np.asarray(idxs)])
        return None if total is None else torch.as_tensor(total, dtype=torch.float32)


def pruning_ratios(module: Any, plan: PrunePlan, example_inputs: Any, mapping: Mapping[str, Any]) -> dict[Any, float]:
    """Per conv module the plan's ratio, made equal across each coupled group (the smallest member ratio)."""
    tp = _tp()
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=example_inputs)
    ratio = {id(mapping[lp.name]): lp.ratio for lp in plan.layers if lp.name in mapping}
    out: dict[Any, float] = {}
    for group in graph.get_all_groups(root_module_types=[type(m) for m in mapping.values()]):
        members = [dep.layer for dep, _ in group
                   if dep.pruning_fn == tp.prune_conv_out_channels and id(dep.layer) in ratio]
        if not members:
            continue
        shared = min(ratio[id(m)] for m in members)  # the ratio every member can take
        if shared > 0:
            out[group[0][0].target.module] = shared
    return out


def plan_pruner(module: Any, plan: PrunePlan, example_inputs: Any, *, ignored_layers: Iterable[Any] = (),
                match_params: bool = True, max_ratio: float = 0.95, **pruner_options: Any) -> Any:
    """A Torch-Pruning ``MetaPruner`` that applies ``plan`` to ``module`` when its ``step()`` is called.

    Parameters
    ----------
    module : torch.nn.Module
        The model to prune (in place, by ``pruner.step()``).
    plan : PrunePlan
        Made by :func:`filterdb.prune_plan` from this module or from a file of its weights.
    example_inputs : torch.Tensor
        One input batch, for tracing the module's graph.
    ignored_layers : modules of ``module`` to leave alone (e.g. a detection head), besides the plan's own.
    match_params : bool, default True
        Scale all ratios by one factor, found on copies of the module, so that the pruned module loses the
        plan's share of conv weights ± 2 %: a coupled group prunes at its smallest member's ratio, so
        without this the module would lose less than planned.
    max_ratio : float
        No group loses more than this share of its channels.
    **pruner_options : passed to ``torch_pruning.pruner.MetaPruner`` (``round_to``, ...).
    """
    names = {id(m): name for name, m in module.named_modules()}
    unknown = [m for m in ignored_layers if id(m) not in names]
    if unknown:
        raise UsageError("ignored_layers must be modules of the module being pruned")
    ignored = [names[id(m)] for m in ignored_layers]
    scale = 1.0
    if match_params:
        target = plan.params_removed / plan.params_total if plan.params_total else 0.0
        scale = _matching_scale(module, plan, example_inputs, ignored, target, max_ratio, pruner_options)
    pruner = _pruner(module, plan, example_inputs, ignored, scale, max_ratio, pruner_options)
    if plan.strategy == "compensated":  # hook: step() merges and folds the removed channels (_compensate.py)
        compensating(pruner, duplicate_cos=plan.settings.get("duplicate_cos", 0.95))
    return pruner


def _pruner(module: Any, plan: PrunePlan, example_inputs: Any, ignored: list[str], scale: float,
            max_ratio: float, options: Mapping[str, Any]) -> Any:
    tp = _tp()
    mapping = map_layers(module, plan)
    ratios = pruning_ratios(module, plan, example_inputs, mapping)
    modules = dict(module.named_modules())
    planned_zero = [m for name, m in mapping.items() if m not in ratios
                    and next(lp for lp in plan.layers if lp.name == name).ratio == 0.0]
    return tp.pruner.MetaPruner(
        module, example_inputs, importance=PlanImportance(plan, mapping), pruning_ratio=0.0,
        pruning_ratio_dict={m: min(max_ratio, r * scale) for m, r in ratios.items()},
        ignored_layers=[modules[name] for name in ignored] + planned_zero, **options)


def conv_params(model: Any) -> int:
    """Weights of all convolution layers of a module (what a plan's ``params_total`` counts)."""
    import torch.nn as nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd))


def _matching_scale(module: Any, plan: PrunePlan, example_inputs: Any, ignored: list[str], target: float,
                    max_ratio: float, options: Mapping[str, Any]) -> float:
    """The ratio scale at which a copy of ``module`` loses ``target`` of its conv weights (bisection)."""
    before = conv_params(module)

    def removed(scale: float) -> float:
        clone = copy.deepcopy(module)
        _pruner(clone, plan, example_inputs, ignored, scale, max_ratio, options).step()
        return 1 - conv_params(clone) / before

    tolerance = 0.02 * target
    tried: dict[float, float] = {}

    def reached(scale: float) -> float:
        if scale not in tried:
            tried[scale] = removed(scale)
        return tried[scale]

    lo, hi = 0.0, 1.0
    while reached(hi) < target and hi < 16:  # ratios are capped at max_ratio, so this ends
        lo, hi = hi, hi * 2
    for _ in range(16):  # channels come in whole numbers: stop when close enough, else keep the closest
        if abs(reached(hi) - target) <= tolerance:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if reached(mid) < target else (lo, mid)
    return min(tried, key=lambda scale: abs(tried[scale] - target))
