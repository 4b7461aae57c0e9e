"""``similar`` and ``lineage``: a store's models ranked against one model, and the store's families.

Both run on fingerprints (:mod:`._fingerprint`), cached in ``STORE/lineage/<sha256>.npz``: a store made before
fingerprints existed gets them computed once, on first use (``progress`` is called per model).
:func:`fingerprint_model` is the hook for ingest: called with a model's weights and the store, it writes the
fingerprint right away.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeAlias, cast

import numpy as np

from ._fingerprint import Fingerprint, FingerprintScores, FingerprintStack, fingerprint, score_stack
from ._weights import LineageError, ModelWeights, weights_from_store, weights_of

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..store import Store

__all__ = ["Match", "Similar", "Edge", "Lineage", "similar", "lineage", "store_fingerprints", "stored_fingerprints",
           "fingerprint_model", "FP_DERIVED", "FP_SAME"]

FP_DERIVED = 0.2  # fingerprint score at least this: derived (family benchmark: derived >= 0.28, unrelated <= 0.17)
FP_SAME = 0.9997  # lowest per-layer channel similarity at least this, same shapes: same weights
FINGERPRINT_DIR = "lineage"

Progress = Callable[[int, int, str], None]  # (done, total, model name)
StoreLike: TypeAlias = "Store | str | os.PathLike[str]"  # a store, or the path to open it read-only


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

    def to_frame(self) -> pd.DataFrame:
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

    def to_frame(self) -> pd.DataFrame:
        """The edges as a DataFrame, with each edge's family index."""
        import pandas as pd

        family_of = {m: i for i, fam in enumerate(self.families) for m in fam}
        rows = [{"family": family_of[e.parent], **asdict(e)} for e in self.edges]
        return pd.DataFrame(rows, columns=["family", *Edge.__dataclass_fields__])

    def figure(self, *, theme: str = "light") -> Figure:
        """The families drawn as trees (matplotlib Figure); see :func:`filterdb.lineage.lineage_figure`."""
        from ._figure import lineage_figure

        return lineage_figure(self, theme=theme)


def _fingerprint_path(store: Store, sha256: str) -> Path:
    from ..store import check_sha256, own_dir  # the store's rules: a real folder, a 64-hex file name

    root = Path(store.root)
    return own_dir(root, FINGERPRINT_DIR) / f"{check_sha256(root, sha256)}.npz"


def fingerprint_model(store: Store, weights: Fingerprint | ModelWeights | Any) -> Fingerprint:
    """Cache the fingerprint of a model of the store, computing it unless one is given (ingest's hook)."""
    fp = weights if isinstance(weights, Fingerprint) else fingerprint(weights_of(weights))
    if fp.sha256:
        fp.save(_fingerprint_path(store, fp.sha256))
    return fp


def store_fingerprints(store: Store, progress: Progress | None = None) -> list[Fingerprint]:
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


def stored_fingerprints(store: Store) -> tuple[list[Fingerprint], list[str]]:
    """(the fingerprints stored for the store's models, the names of the models without one): never computes one
    (the study's families; :func:`store_fingerprints` computes the missing ones)."""
    rows = store.sql("SELECT model_id, model, version, sha256 FROM models ORDER BY model_id")
    names = _labels(rows)
    found, missing = [], []
    for name, sha in zip(names, rows["sha256"]):
        text = str(sha)
        valid = len(text) == 64 and all(c in "0123456789abcdef" for c in text)  # never a path outside lineage/
        path = _fingerprint_path(store, text)
        fp = Fingerprint.load(path) if valid and path.exists() else None
        if fp is None:
            missing.append(name)
        else:
            found.append(Fingerprint(name, fp.sha256, fp.shapes, fp.hashes, fp.norms, fp.bits, fp.channels, fp.means))
    return found, missing


def _labels(rows: pd.DataFrame) -> list[str]:
    """Model names, with the version appended where a name has several."""
    counts = rows["model"].value_counts()
    return [str(m) if counts[m] == 1 else f"{m}@{v}" for m, v in zip(rows["model"], rows["version"])]


def _relation(scores: FingerprintScores, j: int) -> str:
    if scores.identical[j]:
        return "identical"
    if scores.same_shapes[j] and scores.closeness[j] >= FP_SAME:
        return "same-weights"
    return "derived" if scores.score[j] >= FP_DERIVED else "unrelated"


def _query_weights(store: Store, model: Any, trust_pickle: bool) -> ModelWeights | None:
    """The query's weights (None for a bare fingerprint: its matches cannot be confirmed)."""
    if isinstance(model, Fingerprint):
        return None
    if isinstance(model, str) and not os.path.exists(model) and ":" not in model:
        try:
            return weights_from_store(store, model)  # a name of the store
        except LineageError as e:
            raise LineageError(f"{model!r} is neither a model file nor a model of the store: {e}") from e
    return weights_of(model, trust_pickle=trust_pickle)


def _confirmer(store: Store) -> Callable[[ModelWeights | str, str], bool]:
    """Confirm a fingerprint's "derived" with the full comparison (docs/lineage.md): fingerprints are a compact
    filter that unrelated real models can pass near its threshold; the channel matching of :func:`compare`,
    on the weights rebuilt from the store, decides. Weights are read once per model (a few at a time)."""
    from functools import lru_cache

    from ._compare import compare_weights

    load = lru_cache(maxsize=16)(lambda sha: weights_from_store(store, sha))

    def confirm(a: ModelWeights | str, b_sha: str) -> bool:
        if not b_sha or (isinstance(a, str) and not a):
            return True  # nothing to read back: keep the fingerprint's word
        first = load(a) if isinstance(a, str) else a
        return compare_weights(first, load(b_sha)).relation != "unrelated"

    return confirm


def similar(store: StoreLike, model: Any, *, top: int | None = 10, include_unrelated: bool = False,
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
    weights = _query_weights(store, model, trust_pickle)
    query = model if weights is None else fingerprint(weights)
    prints = store_fingerprints(store, progress)
    confirm = None if weights is None else functools.partial(_confirmer(store), weights)
    return similar_in(query, FingerprintStack.of(prints), top=top, include_unrelated=include_unrelated,
                      confirm=confirm)


def similar_in(query: Fingerprint, stack: FingerprintStack, *, top: int | None = 10,
               include_unrelated: bool = False, confirm: Callable[[str], bool] | None = None) -> Similar:
    """:func:`similar` against fingerprints already loaded (the query itself, by name and hash, is left out).

    ``confirm(sha256)``, if given, is asked about each model the fingerprints call derived; False makes it
    unrelated."""
    scores = score_stack(query, stack)
    rank = np.lexsort((-scores.score, ~scores.identical))
    matches = []
    for j in rank:
        if stack.names[j] == query.name and stack.shas[j] == query.sha256:
            continue
        relation = _relation(scores, j)
        if relation == "derived" and confirm is not None and not confirm(str(stack.shas[j])):
            relation = "unrelated"
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


def _open(store: StoreLike) -> Store:
    if hasattr(store, "sql") and hasattr(store, "root"):  # a Store, or a view that reads like one (the report's)
        return cast("Store", store)
    from ..store import open_store

    return open_store(store)


def lineage(store: StoreLike, *, progress: Progress | None = None) -> Lineage:
    """The families of a store and their parent → child edges, from the models' fingerprints.

    Families are the connected groups of related models (identical, same-weights or derived); inside each, the
    edges form a maximum spanning tree of the pairwise scores, each edge pointing from the likely parent.
    """
    store = _open(store)
    prints = store_fingerprints(store, progress)
    check = _confirmer(store)
    return lineage_of(prints, confirm=lambda i, j: check(prints[i].sha256, prints[j].sha256))


def lineage_of(prints: list[Fingerprint], *, confirm: Callable[[int, int], bool] | None = None) -> Lineage:
    """:func:`lineage` on fingerprints already computed.

    Copies first: models that are identical or same-weights form one class, whose representative is the copy
    of highest precision (ties: the first by name); each other copy hangs under it. The classes are then joined
    by a maximum spanning tree of their derived scores, each edge pointing from the likely parent.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    stack = FingerprintStack.of(prints)
    n = len(stack)
    relation = np.full((n, n), "unrelated", dtype=object)
    raw = np.zeros((n, n))
    side = np.zeros((n, n), dtype=np.int8)
    confidence = np.full((n, n), 0.5)
    for i, fp in enumerate(prints):
        scores = score_stack(fp, stack)
        for j in range(n):
            if i != j:
                relation[i, j] = _relation(scores, j)
                raw[i, j] = 1.0 if relation[i, j] == "identical" else float(scores.score[j])
                side[i, j] = scores.parent[j]
                confidence[i, j] = scores.parent_confidence[j]
    if confirm is not None:  # the full comparison decides each pair the fingerprints call derived
        for i, j in zip(*np.nonzero(np.triu((relation == "derived") | (relation.T == "derived"), 1))):
            if not confirm(int(i), int(j)):
                relation[i, j] = relation[j, i] = "unrelated"
    copy = np.isin(relation, ["identical", "same-weights"])
    copy = copy | copy.T
    related = copy | (relation != "unrelated") | (relation.T != "unrelated")
    n_families, family_label = connected_components(csr_matrix(related), directed=False)
    n_classes, class_label = connected_components(csr_matrix(copy), directed=False)
    bits = np.where(stack.bits > 0, stack.bits, 255).min(axis=1)
    reps = [min(np.flatnonzero(class_label == c), key=lambda k: (-int(bits[k]), stack.names[k])) for c in range(n_classes)]
    edges = []
    for c, rep in enumerate(reps):
        for k in np.flatnonzero(class_label == c):
            if k != rep:
                edges.append(Edge(stack.names[rep], stack.names[k], str(relation[rep, k]) if relation[rep, k] in
                                  ("identical", "same-weights") else "same-weights", round(float(raw[rep, k]), 4),
                                  round(float(confidence[rep, k]), 3)))
    # derived edges between classes: the strongest score between their members
    strength = np.zeros((n_classes, n_classes))
    for i in range(n):
        for j in range(n):
            ci, cj = class_label[i], class_label[j]
            if ci != cj and relation[i, j] == "derived" and raw[i, j] > strength[ci, cj]:
                strength[ci, cj] = raw[i, j]
    strength = np.maximum(strength, strength.T)
    tree = minimum_spanning_tree(csr_matrix(np.where(strength > 0, 2.0 - strength, 0.0))).tocoo()
    for ci, cj in zip(tree.row, tree.col):
        i, j = reps[ci], reps[cj]
        # direction: the vote of every member pair, so that one odd copy (folded batch norm) cannot flip it
        votes = side[np.ix_(class_label == ci, class_label == cj)].astype(float)
        lean = float(votes.mean()) if votes.size else 0.0
        p, c = (i, j) if lean >= 0 else (j, i)
        edges.append(Edge(stack.names[p], stack.names[c], "derived", round(float(strength[ci, cj]), 4),
                          round(0.5 + 0.5 * abs(lean), 3)))
    index = {name: k for k, name in enumerate(stack.names)}
    families = [tuple(stack.names[k] for k in np.flatnonzero(family_label == f)) for f in range(n_families)]
    families.sort(key=lambda f: (-len(f), f))
    edges.sort(key=lambda e: (family_label[index[e.parent]], e.relation != "derived", e.parent, e.child))
    return Lineage(tuple(families), tuple(edges))
