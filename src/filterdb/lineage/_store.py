"""``similar`` and ``lineage`` on a store: candidates from fingerprints, every relation from :func:`compare`.

Fingerprints (:mod:`._fingerprint`) are the store's per-model data of kind ``fingerprint``
(:func:`filterdb.store.put_model_data`); a store made before them gets them computed once, on first use
(``progress`` is called per model), and a damaged one is rebuilt. They only propose candidates: each candidate
pair is decided by :func:`filterdb.lineage.compare_weights` on the weights rebuilt from the store, so
``compare``, ``similar``, ``lineage`` and the report give one relation, score and parent per pair
(:func:`relate`). Stores of at most :data:`EXHAUSTIVE_MODELS` models (or ``exhaustive=True``) compare every pair
with a layer shape in common, so nothing is lost to the fingerprint threshold.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeAlias, cast

import numpy as np

from ._compare import Comparison, compare_weights
from ._fingerprint import Fingerprint, FingerprintStack, fingerprint, score_stack
from ._forest import Edge, Lineage, forest
from ._weights import LineageError, ModelWeights, weights_from_store, weights_of

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["Match", "Similar", "Edge", "Lineage", "similar", "lineage", "lineage_of", "store_fingerprints",
           "stored_fingerprints", "fingerprint_model", "relate", "FP_DERIVED", "EXHAUSTIVE_MODELS"]

FP_DERIVED = 0.3  # fingerprint score at least this: a candidate (between 0.19 and 0.37 on the tuning set; docs/lineage.md)
MAX_CONFIRMED = 256  # lineage_of: candidate pairs decided by the full comparison (the rest: fingerprint only)
EXHAUSTIVE_MODELS = 200  # stores up to this size compare every pair with a layer shape in common
FINGERPRINT_KIND = "fingerprint"

Progress = Callable[[int, int, str], None]  # (done, total, model name)
StoreLike: TypeAlias = "Store | str | os.PathLike[str]"  # a store, or the path to open it read-only


@dataclass(frozen=True)
class Match:
    """One model of the store and its relation to the query (the same as ``compare`` gives for the pair)."""

    model: str
    relation: str  # identical | same-weights | derived | unrelated
    score: float
    parent: str | None  # the name of the likely parent of the two (None: no direction, or unknown)
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


def relate(wa: ModelWeights, wb: ModelWeights) -> Comparison:
    """The one function that decides a pair's relation, score and parent (compare, similar, lineage, report)."""
    return compare_weights(wa, wb)


# ---- fingerprints as the store's per-model data ---------------------------------------------------------------

def _read_fingerprint(store: Store, sha256: str) -> Fingerprint | None:
    """The stored fingerprint, or None when there is none or it is damaged (then it is rebuilt)."""
    from ..store import StoreError, model_data

    try:
        arrays = model_data(store, sha256, FINGERPRINT_KIND)
    except (StoreError, OSError, ValueError):
        return None
    return None if arrays is None else Fingerprint.from_arrays(arrays)


def _write_fingerprint(store: Store, sha256: str, fp: Fingerprint) -> None:
    from ..store import put_model_data

    put_model_data(store, sha256, FINGERPRINT_KIND, fp.to_arrays())


def fingerprint_model(store: Store, weights: Fingerprint | ModelWeights | Any) -> Fingerprint:
    """Keep the fingerprint of a model of the store, computing it unless one is given (ingest's hook)."""
    fp = weights if isinstance(weights, Fingerprint) else fingerprint(weights_of(weights))
    if fp.sha256:
        _write_fingerprint(store, fp.sha256, fp)
    return fp


def _model_rows(store: Store) -> pd.DataFrame:
    rows = store.sql("SELECT * FROM models ORDER BY model_id")
    if rows.shape[0] == 0:
        raise LineageError(f"{store.root}: the store holds no models; ingest some first (`filterdb ingest`)")
    return rows


def store_fingerprints(store: Store, progress: Progress | None = None) -> list[Fingerprint]:
    """Every model's fingerprint, computing (and keeping) the missing or damaged ones from the stored filters."""
    rows = _model_rows(store)
    names = _labels(rows)
    out = []
    total = rows.shape[0]
    for k, (model_id, sha) in enumerate(zip(rows["model_id"], rows["sha256"])):
        fp = _read_fingerprint(store, str(sha))
        if fp is None:
            try:
                weights = weights_from_store(store, int(model_id))
            except LineageError:
                weights = None  # a model without convolutions has no fingerprint
            if weights is not None:
                fp = fingerprint(weights)
                try:
                    _write_fingerprint(store, str(sha), fp)
                except OSError:
                    pass  # a store that cannot be written: the fingerprint is recomputed next time
        if fp is not None:
            out.append(fp.renamed(names[k]))
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
        valid = len(text) == 64 and all(c in "0123456789abcdef" for c in text)  # the store refuses others too
        fp = _read_fingerprint(store, text) if valid else None
        if fp is None:
            missing.append(name)
        else:
            found.append(fp.renamed(name))
    return found, missing


def _labels(rows: pd.DataFrame) -> list[str]:
    """Model names, with the version appended where a name has several."""
    counts = rows["model"].value_counts()
    return [str(m) if counts[m] == 1 else f"{m}@{v}" for m, v in zip(rows["model"], rows["version"])]


def _aliases(store: Store) -> dict[str, list[str]]:
    """sha256 -> the other names the same bytes were ingested under (the store's ``aliases`` column)."""
    rows = _model_rows(store)
    if "aliases" not in rows.columns:
        return {}
    out: dict[str, list[str]] = {}
    for model, sha, names in zip(rows["model"], rows["sha256"], rows["aliases"]):
        others = [str(n) for n in (list(names) if names is not None else []) if str(n) != str(model)]
        if others:
            out[str(sha)] = sorted(set(others))
    return out


# ---- candidates -------------------------------------------------------------------------------------------------

def _shares_a_shape(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether two models have a layer that can be the same layer (kernel equal, channels within 4x)."""
    for out_a, in_a, h_a, w_a in a.shapes:
        same = b.shapes[(b.shapes[:, 2] == h_a) & (b.shapes[:, 3] == w_a)]
        if len(same) and np.any((np.minimum(same[:, 0], out_a) * 4 >= np.maximum(same[:, 0], out_a))
                                & (np.minimum(same[:, 1], in_a) * 4 >= np.maximum(same[:, 1], in_a))):
            return True
    return False


def _candidates(query: Fingerprint, stack: FingerprintStack, prints: list[Fingerprint], exhaustive: bool) -> np.ndarray:
    """Indices of the stack's models worth the full comparison with ``query``."""
    scores = score_stack(query, stack)
    keep = (scores.score >= FP_DERIVED) | scores.identical
    if exhaustive:
        keep |= np.array([_shares_a_shape(query, fp) for fp in prints])
    return np.flatnonzero(keep)


def _loader(store: Store, size: int) -> Callable[[str], ModelWeights]:
    return functools.lru_cache(maxsize=size)(lambda sha: weights_from_store(store, sha))


def _open(store: StoreLike) -> Store:
    if hasattr(store, "sql") and hasattr(store, "root"):  # a Store, or a view that reads like one (the report's)
        return cast("Store", store)
    from ..store import open_store

    return open_store(store)


# ---- similar ----------------------------------------------------------------------------------------------------

def _query_weights(store: Store, model: Any, trust_pickle: bool) -> ModelWeights:
    if isinstance(model, str) and not os.path.exists(model) and ":" not in model:
        try:
            return weights_from_store(store, model)  # a name of the store
        except LineageError as e:
            raise LineageError(f"{model!r} is neither a model file nor a model of the store: {e}") from e
    return weights_of(model, trust_pickle=trust_pickle)


def similar(store: StoreLike, model: Any, *, top: int | None = 10, include_unrelated: bool = False,
            trust_pickle: bool = False, exhaustive: bool | None = None, progress: Progress | None = None) -> Similar:
    """The models of ``store`` ranked by their relation to ``model`` (identical first, then by score).

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
    exhaustive : bool or None
        Compare every model with a layer shape in common, not only the fingerprints' candidates (None: when
        the store has at most :data:`EXHAUSTIVE_MODELS` models).

    Examples
    --------
    >>> similar(open_store("zoo.fdb"), "resnet18-finetuned.pt").to_frame()  # doctest: +SKIP
    """
    store = _open(store)
    weights = _query_weights(store, model, trust_pickle)
    query = fingerprint(weights)
    prints = store_fingerprints(store, progress)
    stack = FingerprintStack.of(prints)
    full = len(prints) <= EXHAUSTIVE_MODELS if exhaustive is None else exhaustive
    load = _loader(store, 16)
    aliases = _aliases(store)
    matches: list[Match] = []
    for j in _candidates(query, stack, prints, full):
        fp = prints[j]
        if fp.name == weights.name and fp.sha256 == (weights.sha256 or ""):
            matches += [Match(alias, "identical", 1.0, None, 0.5) for alias in aliases.get(fp.sha256, [])]
            continue
        result = relate(weights, load(fp.sha256).renamed(fp.name))
        if result.relation == "unrelated" and not include_unrelated:
            continue
        matches.append(Match(fp.name, result.relation, result.score, result.parent_name, result.parent_confidence))
        if result.relation == "identical":
            matches += [Match(alias, "identical", 1.0, None, 0.5) for alias in aliases.get(fp.sha256, [])]
    if include_unrelated:
        seen = {m.model for m in matches}
        matches += [Match(p.name, "unrelated", 0.0, None, 0.5) for p in prints
                    if p.name not in seen and not (p.name == weights.name and p.sha256 == (weights.sha256 or ""))]
    matches.sort(key=lambda m: (m.relation != "identical", -m.score, m.model))
    return Similar(weights.name, tuple(matches[:top] if top is not None else matches))


# ---- lineage ----------------------------------------------------------------------------------------------------

def lineage(store: StoreLike, *, exhaustive: bool | None = None, progress: Progress | None = None) -> Lineage:
    """The families of a store and their parent → child edges.

    Every candidate pair (fingerprints, or every pair with a layer shape in common on small stores) is decided
    by :func:`relate`; families are the connected groups of related models, copies hang under their highest
    precision member, and the copy classes are joined by a spanning tree that prefers pairs with a named
    parent. A tree edge without direction evidence between two models closer to each other than to anything
    else is reported as siblings (a shared unknown parent), not as parent and child.
    """
    store = _open(store)
    prints = store_fingerprints(store, progress)
    stack = FingerprintStack.of(prints)
    full = len(prints) <= EXHAUSTIVE_MODELS if exhaustive is None else exhaustive
    load = _loader(store, len(prints) if full else 32)
    results: dict[tuple[int, int], Comparison] = {}
    for i, fp in enumerate(prints):
        for j in _candidates(fp, stack, prints, full):
            if j > i and (i, int(j)) not in results:
                other = prints[j]
                results[(i, int(j))] = relate(load(fp.sha256).renamed(fp.name), load(other.sha256).renamed(other.name))
    names = [p.name for p in prints]
    aliases = _aliases(store)
    return forest(names, results, {p.name: aliases.get(p.sha256, []) for p in prints})


def _unconfirmed(a: str, b: str, score: float) -> Comparison:
    """A fingerprint candidate left undecided (past ``max_pairs``): related, direction unknown."""
    return Comparison(a, b, "derived", round(score, 4), None, 0.5, (), 0, 0,
                      (f"fingerprint score {score:.3f} >= {FP_DERIVED}; not confirmed by the full comparison "
                       "(more candidate pairs than the bound)",))


def lineage_of(prints: list[Fingerprint], store: StoreLike, *, max_pairs: int = MAX_CONFIRMED,
               progress: Progress | None = None) -> Lineage:
    """Families of many models from their fingerprints, each candidate pair confirmed by :func:`relate`.

    For the study of a large store: fingerprints (already computed) propose the candidate pairs (score at
    least :data:`FP_DERIVED`, or the same layer bytes), and ``max_pairs`` of them (first a spanning tree of the
    candidates, the closest links, then the others by fingerprint score) are decided by the full comparison on the weights read back from ``store``, so their
    relation, score and parent are the ones ``compare`` and ``filterdb lineage`` give. Candidates past the
    bound stay related with the fingerprint's score and no direction. No pair outside the candidates is
    compared (:func:`lineage` compares every same-architecture pair of a small store).
    """
    store = _open(store)
    stack = FingerprintStack.of(prints)
    n = len(stack)
    score = np.zeros((n, n))
    identical = np.zeros((n, n), dtype=bool)
    for i, fp in enumerate(prints):
        scores = score_stack(fp, stack)
        score[i], identical[i] = scores.score, scores.identical
    score, identical = np.maximum(score, score.T), identical | identical.T  # one score per pair, either way
    rows, cols = np.nonzero(np.triu((score >= FP_DERIVED) | identical, k=1))
    closeness = np.where(identical[rows, cols], 2.0, score[rows, cols])
    # a spanning tree of the candidates first (every family's closest links), then the rest by score: within the
    # bound, each family is joined by confirmed pairs before any family gets a second link
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    tree = minimum_spanning_tree(csr_matrix((3.0 - closeness, (rows, cols)), shape=(n, n))).tocoo()
    in_tree = {(min(int(i), int(j)), max(int(i), int(j))) for i, j in zip(tree.row, tree.col)}
    first = np.array([(int(i), int(j)) not in in_tree for i, j in zip(rows, cols)], dtype=bool)
    order = np.lexsort((cols, rows, -closeness, first))
    load = _loader(store, min(n, 32))
    results: dict[tuple[int, int], Comparison] = {}
    for rank, k in enumerate(order):
        i, j = int(rows[k]), int(cols[k])
        if rank < max_pairs:
            results[(i, j)] = relate(load(prints[i].sha256).renamed(prints[i].name),
                                     load(prints[j].sha256).renamed(prints[j].name))
        else:
            results[(i, j)] = _unconfirmed(prints[i].name, prints[j].name, float(score[i, j]))
        if progress is not None:
            progress(rank + 1, len(order), f"{prints[i].name} / {prints[j].name}")
    aliases = _aliases(store)
    return forest([p.name for p in prints], results, {p.name: aliases.get(p.sha256, []) for p in prints})
