"""Layer depth from a model graph (docs/reference.md §2).

Readers build a small predecessor map of their graph; these helpers turn it into longest-path levels
and then into ``conv_depth`` / ``conv_depth_norm`` for the conv layers.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Hashable, Iterable, Mapping, Sequence, TypeVar

from .errors import UsageError
from .types import ConvLayer

__all__ = ["longest_path_levels", "with_graph_depth", "with_order_depth"]

Node = TypeVar("Node", bound=Hashable)


def longest_path_levels(predecessors: Mapping[Node, Iterable[Node]]) -> dict[Node, int]:
    """Longest-path level of every node of a DAG.

    ``predecessors[n]`` lists the nodes whose outputs ``n`` consumes (graph inputs and constants are
    simply not listed). A node without predecessors has level 0; otherwise its level is one more than
    the largest level of its predecessors, so parallel branches share a level. Predecessors that are
    not nodes of the map are ignored; nodes on a cycle (malformed graphs) get the level reached before
    the cycle.
    """
    preds = {node: [p for p in ps if p in predecessors and p != node] for node, ps in predecessors.items()}
    successors: dict[Node, list[Node]] = {node: [] for node in preds}
    indegree = {node: len(ps) for node, ps in preds.items()}
    for node, ps in preds.items():
        for p in ps:
            successors[p].append(node)
    level = {node: 0 for node in preds}
    queue = deque(node for node, d in indegree.items() if d == 0)
    while queue:
        node = queue.popleft()
        for nxt in successors[node]:
            level[nxt] = max(level[nxt], level[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                queue.append(nxt)
    return level


def _ranks(levels: Sequence[int | None], layers: Sequence[ConvLayer]) -> tuple[dict[int, int], int]:
    distinct = sorted({lv for lv, layer in zip(levels, layers) if lv is not None and layer.spatial_ndim == 2})
    return {lv: i for i, lv in enumerate(distinct)}, len(distinct)


def with_graph_depth(layers: Sequence[ConvLayer], levels: Sequence[int | None]) -> tuple[ConvLayer, ...]:
    """Set conv_depth from graph levels: the rank of a layer's level among the levels holding 2-D convs.

    Layers that are not 2-D (Conv1d/3d) or have no level get ``conv_depth=None``. With a single such
    level conv_depth_norm is 0 (the original code divided by zero there).
    """
    if len(levels) != len(layers):
        raise UsageError(f"with_graph_depth got {len(levels)} levels for {len(layers)} layers; "
                         "give one level (or None) per layer, in the same order")
    rank, n_levels = _ranks(levels, layers)
    out = []
    for layer, lv in zip(layers, levels):
        if layer.spatial_ndim != 2 or lv is None:
            out.append(dataclasses.replace(layer, conv_depth=None, conv_depth_norm=None, depth_source="graph"))
            continue
        depth = rank[lv]
        norm = depth / (n_levels - 1) if n_levels > 1 else 0.0
        out.append(dataclasses.replace(layer, conv_depth=depth, conv_depth_norm=norm, depth_source="graph"))
    return tuple(out)


def with_order_depth(layers: Sequence[ConvLayer]) -> tuple[ConvLayer, ...]:
    """Depth from the order of the layers, for formats without a graph (a bare state_dict)."""
    levels: list[int | None] = []
    position = 0
    for layer in layers:
        levels.append(position if layer.spatial_ndim == 2 else None)
        position += layer.spatial_ndim == 2
    return tuple(dataclasses.replace(layer, depth_source="order") for layer in with_graph_depth(layers, levels))
