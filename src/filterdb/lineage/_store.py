"""``similar`` and ``lineage``: a store's models ranked against one model, and the store's families.

Both run on fingerprints (:mod:`._fingerprint`), cached in ``STORE/lineage/<sha256>.npz``: a store made before
fingerprints existed gets them computed once, on first use (``progress`` is called per model).
:func:`fingerprint_model` is the hook for ingest: called with a model's weights and the store, it writes the
fingerprint right away.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from ._fingerprint import Fingerprint, FingerprintStack, fingerprint, score_stack
from ._weights import LineageError, ModelWeights, weights_from_store, weights_of

__all__ = ["Match", "Similar", "Edge", "Lineage", "similar", "lineage", "store_fingerprints",
           "fingerprint_model", "FP_DERIVED", "FP_SAME"]

FP_DERIVED = 0.2  # fingerprint score at least this: derived (family benchmark: derived >= 0.30, unrelated <= 0.12)
FP_SAME = 0.9997  # lowest per-layer channel similarity at least this, same shapes: same weights
FINGERPRINT_DIR = "lineage"

Progress = Callable[[int, int, str], None]  # (done, total, model name)


@dataclass(frozen=True)
class Match:
    """One model of the store and its relation to the query."""

    model: str
    relation: str  # identical | same-weights | derived | unrelated
    score: float
    parent: str | None  # the name of the likely parent of the two (None: no direction)
    parent_confidence: float


@dataclass(frozen=True)
class Similar:
    """The store's models ranked by their relation to one model."""

    query: str
    matches: tuple[Match, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "matches": [asdict(m) for m in self.matches]}

    def to_json(self, **kwargs: Any) -> str:
        """``{"query", "matches": [{"model", "relation", "score", "parent", "parent_confidence"}, ...]}``."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_frame(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame([asdict(m) for m in self.matches], columns=list(Match.__dataclass_fields__))


@dataclass(frozen=True)
class Edge:
    """parent → child inside a family."""

    parent: str
    child: str
    relation: str
    score: float
    confidence: float  # of the direction: 0.5 = a guess


@dataclass(frozen=True)
class Lineage:
    """A store's families (models that share weights) as a forest of directed edges."""

    families: tuple[tuple[str, ...], ...]  # every model once; singletons are families of one
    edges: tuple[Edge, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"families": [list(f) for f in self.families], "edges": [asdict(e) for e in self.edges]}

    def to_json(self, **kwargs: Any) -> str:
        """``{"families": [[model, ...], ...], "edges": [{"parent", "child", "relation", "score", ...}]}``."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """The edges as a DataFrame, with each edge's family index."""
        import pandas as pd

        family_of = {m: i for i, fam in enumerate(self.families) for m in fam}
        rows = [{"family": family_of[e.parent], **asdict(e)} for e in self.edges]
        return pd.DataFrame(rows, columns=["family", *Edge.__dataclass_fields__])

    def figure(self, *, theme: str = "light"):  # type: ignore[no-untyped-def]
        """The families drawn as trees (matplotlib Figure); see :func:`filterdb.lineage.lineage_figure`."""
        from ._figure import lineage_figure

        return lineage_figure(self, theme=theme)


def _fingerprint_path(store: Any, sha256: str) -> Path:
    return Path(store.root) / FINGERPRINT_DIR / f"{sha256}.npz"


def fingerprint_model(store: Any, weights: ModelWeights | Any) -> Fingerprint:
    """Compute and cache the fingerprint of a model of the store (the hook for ingest to call per model)."""
    fp = fingerprint(weights_of(weights))
    if fp.sha256:
        fp.save(_fingerprint_path(store, fp.sha256))
    return fp


def store_fingerprints(store: Any, progress: Progress | None = None) -> list[Fingerprint]:
    """Every model's fingerprint, computing (and caching) the missing ones from the stored filters."""
    rows = store.sql("SELECT model_id, model, version, sha256 FROM models ORDER BY model_id")
    if rows.shape[0] == 0:
        raise LineageError(f"{store.root}: the store holds no models; ingest some first (`filterdb ingest`)")
    names = _labels(rows)
    out = []
    total = rows.shape[0]
    for k, (model_id, sha) in enumerate(zip(rows["model_id"], rows["sha256"])):
        path = _fingerprint_path(store, str(sha))
        fp = Fingerprint.load(path) if path.exists() else None
        if fp is None:
            try:
                weights = weights_from_store(store, int(model_id))
            except LineageError:
                weights = None  # a model without convolutions has no fingerprint
            if weights is not None:
                fp = fingerprint(weights)
                try:
                    fp.save(path)
                except OSError:
                    pass  # a read-only store: the fingerprint is recomputed next time
        if fp is not None:
            out.append(Fingerprint(names[k], fp.sha256, fp.shapes, fp.hashes, fp.norms, fp.bits, fp.channels,
                                   fp.means))
        if progress is not None:
            progress(k + 1, total, names[k])
    if not out:
        raise LineageError(f"{store.root}: no model of the store has convolution layers; nothing to compare")
    return out


def _labels(rows: Any) -> list[str]:
    """Model names, with the version appended where a name has several."""
    counts = rows["model"].value_counts()
    return [str(m) if counts[m] == 1 else f"{m}@{v}" for m, v in zip(rows["model"], rows["version"])]


def _relation(scores: Any, j: int) -> str:
    if scores.identical[j]:
        return "identical"
    if scores.same_shapes[j] and scores.closeness[j] >= FP_SAME:
        return "same-weights"
    return "derived" if scores.score[j] >= FP_DERIVED else "unrelated"


def _query_fingerprint(store: Any, model: Any, trust_pickle: bool) -> Fingerprint:
    if isinstance(model, Fingerprint):
        return model
    if isinstance(model, str) and not os.path.exists(model) and ":" not in model:
        return fingerprint(weights_from_store(store, model))  # a name of the store
    return fingerprint(weights_of(model, trust_pickle=trust_pickle))


def similar(store: Any, model: Any, *, top: int | None = 10, include_unrelated: bool = False,
            trust_pickle: bool = False, progress: Progress | None = None) -> Similar:
    """The models of ``store`` ranked by their relation to ``model`` (best first).

    Parameters
    ----------
    store : Store or path
        A filterdb store (:func:`filterdb.open_store`).
    model : path, source name, live model, or the name of a model of the store
        The query; it need not be in the store (a name of the store is looked up there).
    top : int or None
        At most this many matches (None: all).
    include_unrelated : bool
        Also list unrelated models (by score).

    Examples
    --------
    >>> similar(open_store("zoo.fdb"), "resnet18-finetuned.pt").to_frame()  # doctest: +SKIP
    """
    store = _open(store)
    query = _query_fingerprint(store, model, trust_pickle)
    prints = store_fingerprints(store, progress)
    return similar_in(query, FingerprintStack.of(prints), top=top, include_unrelated=include_unrelated)


def similar_in(query: Fingerprint, stack: FingerprintStack, *, top: int | None = 10,
               include_unrelated: bool = False) -> Similar:
    """:func:`similar` against fingerprints already loaded (the query itself, by name and hash, is left out)."""
    scores = score_stack(query, stack)
    rank = np.lexsort((-scores.score, -scores.closeness, ~scores.identical))
    matches = []
    for j in rank:
        if stack.names[j] == query.name and stack.shas[j] == query.sha256:
            continue
        relation = _relation(scores, j)
        if relation == "unrelated" and not include_unrelated:
            continue
        side = int(scores.parent[j])
        parent = None if relation in ("identical", "unrelated") or side == 0 else (
            query.name if side > 0 else stack.names[j])
        score = 1.0 if relation == "identical" else round(float(scores.score[j]), 4)
        matches.append(Match(stack.names[j], relation, score, parent, round(float(scores.parent_confidence[j]), 3)))
        if top is not None and len(matches) >= top:
            break
    return Similar(query.name, tuple(matches))


def _open(store: Any) -> Any:
    if hasattr(store, "sql") and hasattr(store, "root"):
        return store
    from ..store import open_store

    return open_store(store)


def lineage(store: Any, *, progress: Progress | None = None) -> Lineage:
    """The families of a store and their parent → child edges, from the models' fingerprints.

    Families are the connected groups of related models (identical, same-weights or derived); inside each, the
    edges form a maximum spanning tree of the pairwise scores, each edge pointing from the likely parent.
    """
    prints = store_fingerprints(_open(store), progress)
    return lineage_of(prints)


def lineage_of(prints: list[Fingerprint]) -> Lineage:
    """:func:`lineage` on fingerprints already computed."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    stack = FingerprintStack.of(prints)
    n = len(stack)
    strength = np.zeros((n, n))
    raw = np.zeros((n, n))
    relation = np.empty((n, n), dtype=object)
    side = np.zeros((n, n), dtype=np.int8)
    confidence = np.full((n, n), 0.5)
    for i, fp in enumerate(prints):
        scores = score_stack(fp, stack)
        for j in range(n):
            if i == j:
                continue
            rel = _relation(scores, j)
            relation[i, j] = rel
            side[i, j] = scores.parent[j]
            confidence[i, j] = scores.parent_confidence[j]
            raw[i, j] = float(scores.score[j])
            if rel != "unrelated":
                bonus = {"identical": 2.0, "same-weights": 1.5}.get(rel, 0.0)
                strength[i, j] = max(strength[i, j], float(scores.score[j]) + bonus)
    strength = np.maximum(strength, strength.T)
    raw = np.maximum(raw, raw.T)
    n_families, label = connected_components(csr_matrix(strength > 0), directed=False)
    families = [tuple(stack.names[k] for k in np.flatnonzero(label == f)) for f in range(n_families)]
    # maximum spanning tree = minimum spanning tree of (cap - strength) over the related pairs
    cost = np.where(strength > 0, 4.0 - strength, 0.0)
    tree = minimum_spanning_tree(csr_matrix(cost)).tocoo()
    edges = []
    for i, j in zip(tree.row, tree.col):
        parent_side = side[i, j]  # +1: i (the query) is the parent
        p, c = (i, j) if parent_side >= 0 else (j, i)
        rel = str(relation[i, j])
        edges.append(Edge(stack.names[p], stack.names[c], rel,
                          1.0 if rel == "identical" else round(float(raw[i, j]), 4),
                          round(float(confidence[i, j]), 3)))
    edges.sort(key=lambda e: (label[stack.names.index(e.parent)], e.parent, e.child))
    families.sort(key=lambda f: (-len(f), f))
    return Lineage(tuple(families), tuple(edges))
