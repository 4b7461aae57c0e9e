"""A store's families as a forest: copies under one representative, classes joined by a spanning tree.

Built from the pairwise :class:`~filterdb.lineage.Comparison` results alone (docs/lineage.md, "lineage"), so an
edge's relation, score and direction are the ones ``compare`` gives for that pair.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ._compare import Comparison

__all__ = ["Edge", "Lineage", "forest"]

_COPY = ("identical", "same-weights")


@dataclass(frozen=True)
class Edge:
    """parent → child inside a family; ``directed`` False: the two are related, which is the parent unknown."""

    parent: str  # for an undirected edge: the first of the two
    child: str
    relation: str  # identical | same-weights | derived | siblings (closest to each other, no direction)
    score: float
    confidence: float  # of the direction: 0.5 = unknown
    directed: bool = True


@dataclass(frozen=True)
class Lineage:
    """A store's families (models that share weights) as a forest of edges."""

    families: tuple[tuple[str, ...], ...]  # every model (and alias) once; singletons are families of one
    edges: tuple[Edge, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"families": [list(f) for f in self.families], "edges": [asdict(e) for e in self.edges]}

    def to_json(self, **kwargs: Any) -> str:
        """``{"families": [[model, ...], ...], "edges": [{"parent", "child", "relation", "score", ...}]}``."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_frame(self) -> pd.DataFrame:
        """The edges as a DataFrame, with each edge's family index."""
        import pandas as pd

        family_of = {m: i for i, fam in enumerate(self.families) for m in fam}
        rows = [{"family": family_of[e.parent], **asdict(e)} for e in self.edges]
        return pd.DataFrame(rows, columns=["family", *Edge.__dataclass_fields__])


def _components(n: int, links: list[tuple[int, int]]) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    rows = [i for i, _ in links]
    cols = [j for _, j in links]
    graph = csr_matrix((np.ones(len(links)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def forest(names: list[str], results: dict[tuple[int, int], Comparison],
           aliases: dict[str, list[str]] | None = None) -> Lineage:
    """The families and edges from pairwise comparisons (``results[(i, j)]`` with i < j; absent: unrelated)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    n = len(names)
    related = {k: r for k, r in results.items() if r.relation != "unrelated"}
    family = _components(n, list(related))
    klass = _components(n, [k for k, r in related.items() if r.relation in _COPY])
    n_classes = int(klass.max()) + 1 if n else 0
    # a class's representative: the member no copy comparison names as a child (highest precision), then by name
    child_in_copy = {names.index(r.child_name) for r in related.values() if r.relation in _COPY and r.child_name}
    reps = [min(map(int, np.flatnonzero(klass == c)), key=lambda k: (k in child_in_copy, names[k]))
            for c in range(n_classes)]
    edges: list[Edge] = []
    for c, rep in enumerate(reps):
        for k in map(int, np.flatnonzero(klass == c)):
            if k == rep:
                continue
            r = related.get((min(rep, k), max(rep, k)))
            relation = r.relation if r is not None and r.relation in _COPY else "same-weights"
            directed = r is not None and r.parent_name == names[rep]
            edges.append(Edge(names[rep], names[k], relation, 1.0 if r is None else r.score,
                              r.parent_confidence if directed and r is not None else 0.5, directed))
    # derived links between classes: the best score, and the direction every named member pair agrees on
    best: dict[tuple[int, int], float] = {}
    votes: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for (i, j), r in related.items():
        ci, cj = int(klass[i]), int(klass[j])
        if ci == cj:
            continue
        key = (min(ci, cj), max(ci, cj))
        best[key] = max(best.get(key, 0.0), r.score)
        if r.parent_name is not None:
            votes.setdefault(key, []).append((int(klass[names.index(r.parent_name)]), r.parent_confidence))
    direction: dict[tuple[int, int], tuple[int, float]] = {}
    for key, vs in votes.items():
        parents = {p for p, _ in vs}
        if len(parents) == 1:
            direction[key] = (parents.pop(), max(c for _, c in vs))
    weight = np.zeros((n_classes, n_classes))
    for (ci, cj), s in best.items():  # a named parent is preferred to a closer pair without direction
        weight[ci, cj] = 3.0 - s - (1.0 if (ci, cj) in direction else 0.0)
    tree = minimum_spanning_tree(csr_matrix(weight)).tocoo() if n_classes else None
    nearest = {c: max((s for k, s in best.items() if c in k), default=0.0) for c in range(n_classes)}
    for ci, cj in zip(tree.row, tree.col) if tree is not None else ():
        key = (min(int(ci), int(cj)), max(int(ci), int(cj)))
        score = round(best[key], 4)
        if key in direction:
            parent, confidence = direction[key]
            child = key[1] if parent == key[0] else key[0]
            edges.append(Edge(names[reps[parent]], names[reps[child]], "derived", score, confidence, True))
        else:
            mutual = best[key] >= nearest[key[0]] and best[key] >= nearest[key[1]]
            edges.append(Edge(names[reps[key[0]]], names[reps[key[1]]], "siblings" if mutual else "derived", score,
                              0.5, False))
    members = [[names[k] for k in np.flatnonzero(family == f)] for f in range(int(family.max()) + 1 if n else 0)]
    for group in members:
        for model in list(group):
            for alias in (aliases or {}).get(model, []):
                group.append(alias)
                edges.append(Edge(model, alias, "identical", 1.0, 0.5, False))
    families = sorted((tuple(g) for g in members), key=lambda f: (-len(f), f))
    index = {m: k for k, f in enumerate(families) for m in f}
    edges.sort(key=lambda e: (index[e.parent], e.relation not in ("derived", "siblings"), e.parent, e.child))
    return Lineage(tuple(families), tuple(edges))
