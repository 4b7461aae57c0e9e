"""``compare``: the relation of two models from their convolution weights alone.

Per pair of corresponding convolutions, the output channels of the two models are matched by the cosine of
their flattened weights (scipy's ``linear_sum_assignment``). Cosine is blind to a per-channel scale, so batch-norm
folding, per-channel quantisation scales and float16 rounding keep it at ~1; the matching is partial, so a
pruned model's channels find their originals. The matched similarities are compared with what the same
matching finds between unrelated weights (the *chance* level: the same channels with their inputs shuffled),
which keeps the permutation symmetry of independently trained networks from looking like shared weights.
See docs/lineage.md for the method, its thresholds and their measured accuracy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._direction import Signal, direction, signals
from ._rounding import Grid, grid_of, rounds_to
from ._weights import ConvWeight, ModelWeights, weights_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Comparison", "LayerMatch", "Relation", "compare", "THRESHOLDS"]

Relation = Literal["identical", "same-weights", "derived", "unrelated"]


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds, set from the family benchmark (bench/bench_lineage.py)."""

    derived: float = 0.25  # model score (excess similarity over chance) at least this: derived
    max_hungarian: int = 2048  # larger layers are matched greedily (mutual best match)


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class LayerMatch:
    """One convolution of A paired with one of B, and how their channels match."""

    layer_a: str
    layer_b: str
    kernel: str  # "3x3"
    channels_a: int
    channels_b: int
    matched: int  # channel pairs above chance (similarity > chance + half the way to 1)
    share: float  # matched / max(channels_a, channels_b)
    similarity: float  # median |cos| of the matched channel pairs
    chance: float  # median |cos| the same matching finds with B's inputs shuffled
    exact: bool  # bit-identical weights
    rounded: bool  # equal up to float16 / bfloat16 / 8-bit rounding and a per-channel scale
    inputs: str  # how input channels were aligned: "same", "matched" (previous layer's match), "mean"


@dataclass(frozen=True)
class Comparison:
    """The relation of model A to model B, with its evidence."""

    a: str
    b: str
    relation: Relation
    score: float  # 0 (nothing shared beyond chance) .. 1 (the same weights)
    parent: Literal["a", "b"] | None  # the likely parent, for derived / same-weights pairs
    parent_confidence: float  # 0.5 = a guess .. 1 = certain
    layers: tuple[LayerMatch, ...]
    unpaired_a: int  # convolutions of A without a counterpart in B
    unpaired_b: int
    evidence: tuple[str, ...] = field(default=())  # one line per reason behind relation and parent
    signals: tuple[Signal, ...] = field(default=())  # the direction evidence, each with the side it names

    @property
    def parent_name(self) -> str | None:
        """The parent's name (None: direction unknown, or no parent for this relation)."""
        return None if self.parent is None else (self.a if self.parent == "a" else self.b)

    @property
    def child_name(self) -> str | None:
        return None if self.parent is None else (self.b if self.parent == "a" else self.a)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        out["evidence"] = list(self.evidence)
        out["signals"] = [asdict(signal) for signal in self.signals]
        return out

    def to_json(self, **kwargs: Any) -> str:
        """``{"relation", "score", "parent", "parent_confidence", "layers": [...], ...}``."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_frame(self) -> pd.DataFrame:
        """The layer matching as a pandas DataFrame (one row per paired layer)."""
        import pandas as pd

        return pd.DataFrame([asdict(layer) for layer in self.layers], columns=list(LayerMatch.__dataclass_fields__))


def compare(a: Any, b: Any, *, trust_pickle: bool = False, thresholds: Thresholds = THRESHOLDS) -> Comparison:
    """The relation of two models: identical, same-weights, derived or unrelated, and which is the parent.

    Parameters
    ----------
    a, b : path, source name, live model, ModelRecord or ModelWeights
        Anything :func:`filterdb.read_model` takes.
    trust_pickle : bool
        Allow formats whose loading runs pickle code (only for files you trust).

    Examples
    --------
    >>> result = compare("resnet.onnx", "resnet-int8.tflite")  # doctest: +SKIP
    >>> result.relation, result.score
    ('same-weights', 0.998)
    """
    wa, wb = weights_of(a, trust_pickle=trust_pickle), weights_of(b, trust_pickle=trust_pickle)
    return compare_weights(wa, wb, thresholds)


def compare_weights(wa: ModelWeights, wb: ModelWeights, thresholds: Thresholds = THRESHOLDS) -> Comparison:
    """:func:`compare` on weights already read.

    The pair is computed in one canonical order (by content hash, then name) and turned round for the caller,
    so that A against B and B against A give the same score, relation and parent.
    """
    if (wb.sha256 or "", wb.name) < (wa.sha256 or "", wa.name):
        return _swapped(_compare_ordered(wb, wa, thresholds))
    return _compare_ordered(wa, wb, thresholds)


def _swapped(c: Comparison) -> Comparison:
    """The same comparison seen from the other side (A and B exchanged)."""
    flip: dict[str, Literal["a", "b"]] = {"a": "b", "b": "a"}
    layers = tuple(replace(m, layer_a=m.layer_b, layer_b=m.layer_a, channels_a=m.channels_b, channels_b=m.channels_a)
                   for m in c.layers)
    signals = tuple(replace(s, child=flip[s.child] if s.child else None) for s in c.signals)
    parent = flip[c.parent] if c.parent else None
    return Comparison(c.b, c.a, c.relation, c.score, parent, c.parent_confidence, layers, c.unpaired_b, c.unpaired_a,
                      c.evidence, signals)


def _compare_ordered(wa: ModelWeights, wb: ModelWeights, thresholds: Thresholds) -> Comparison:
    pairs = pair_by_content(wa, wb)
    if not pairs:
        return Comparison(wa.name, wb.name, "unrelated", 0.0, None, 0.5, (), len(wa.layers), len(wb.layers),
                          ("no convolution of A has a counterpart in B (no kernel shape / channel count in common)",))
    grids = ([grid_of(layer.weight, layer.storage_dtype) for layer in wa.layers],
             [grid_of(layer.weight, layer.storage_dtype) for layer in wb.layers])
    precision = max(wa.precision, wb.precision)
    matches: list[LayerMatch] = []
    weights: list[float] = []
    previous: tuple[int, int, np.ndarray, np.ndarray] | None = None  # (Oa, Ob, matched rows of A, of B)
    for i, j in pairs:
        la, lb = wa.layers[i], wb.layers[j]
        match, rows = _match_layer(la, lb, (grids[0][i], grids[1][j], precision), previous, thresholds)
        matches.append(match)
        weights.append(_layer_weight(la, lb))
        previous = (la.weight.shape[0], lb.weight.shape[0], *rows)
    unpaired_a, unpaired_b = len(wa.layers) - len(pairs), len(wb.layers) - len(pairs)
    score = _score(matches, weights, unpaired_a + unpaired_b, len(wa.layers) + len(wb.layers))
    relation, evidence = _decide(matches, score, unpaired_a, unpaired_b, thresholds)
    if wa.sha256 and wa.sha256 == wb.sha256:
        relation, evidence = "identical", ["the same file content (sha256)"]
    found = signals(relation, wa, wb, pairs, matches, grids) if relation in ("same-weights", "derived") else []
    parent, confidence, why = direction(found)
    return Comparison(wa.name, wb.name, relation, 1.0 if relation == "identical" else round(score, 4), parent,
                      round(confidence, 3), tuple(matches), unpaired_a, unpaired_b, tuple(evidence + why),
                      tuple(found))


# ---- layer pairing -------------------------------------------------------------------------------------------

def _compatible(sa: tuple[int, ...], sb: tuple[int, ...]) -> float:
    """How well two weight shapes can be the same layer (0: not at all); channel counts may differ (pruning)."""
    if len(sa) != len(sb) or sa[2:] != sb[2:]:
        return 0.0
    ratio_o = min(sa[0], sb[0]) / max(sa[0], sb[0])
    ratio_i = min(sa[1], sb[1]) / max(sa[1], sb[1])
    if ratio_o < 0.25 or ratio_i < 0.25:
        return 0.0
    return 1.0 + 0.5 * (sa[0] == sb[0]) + 0.5 * (sa[1] == sb[1])


def pair_layers(shapes_a: list[tuple[int, ...]], shapes_b: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Corresponding convolutions, in order: the best order-preserving alignment of compatible shapes.

    A sequence alignment (dynamic programming, O(len(a)·len(b))): layers appended, removed or re-headed at
    either end or in the middle are skipped, pruned layers (fewer channels) still pair.
    """
    n, m = len(shapes_a), len(shapes_b)
    score = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c = _compatible(tuple(shapes_a[i - 1]), tuple(shapes_b[j - 1]))
            best = max(score[i - 1, j], score[i, j - 1])
            score[i, j] = max(best, score[i - 1, j - 1] + c) if c else best
    pairs = []
    i, j = n, m
    while i and j:
        c = _compatible(tuple(shapes_a[i - 1]), tuple(shapes_b[j - 1]))
        if c and score[i, j] == score[i - 1, j - 1] + c:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif score[i, j] == score[i - 1, j]:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _aligned_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |cos| of channel i of a with channel i of b (same shapes): ~1 for the same layer in any copy."""
    ra, rb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    na, nb = np.linalg.norm(ra, axis=1), np.linalg.norm(rb, axis=1)
    live = (na > 0) & (nb > 0) & np.isfinite(na) & np.isfinite(nb)
    if not live.any():
        return 0.0
    return float(np.mean(np.abs(np.einsum("ij,ij->i", ra[live], rb[live])) / (na[live] * nb[live])))


def pair_by_content(wa: ModelWeights, wb: ModelWeights, anchor: float = 0.9) -> list[tuple[int, int]]:
    """Corresponding convolutions: first by content among layers of equal shape, then by order.

    Formats list layers in different orders (graph order, name order, parallel branches swapped), so layers
    of one shape are first matched to each other by the similarity of their channels (an assignment per
    shape; pairs above ``anchor`` are kept). The layers left (pruned or changed ones) are aligned by order.
    """
    groups: dict[tuple[int, ...], tuple[list[int], list[int]]] = {}
    for i, layer in enumerate(wa.layers):
        groups.setdefault(tuple(layer.weight.shape), ([], []))[0].append(i)
    for j, layer in enumerate(wb.layers):
        groups.setdefault(tuple(layer.weight.shape), ([], []))[1].append(j)
    anchored: list[tuple[int, int]] = []
    for ia, ib in groups.values():
        if not ia or not ib:
            continue
        sims = np.array([[_aligned_similarity(wa.layers[i].weight, wb.layers[j].weight) for j in ib] for i in ia])
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(sims, maximize=True)
        anchored += [(ia[r], ib[c]) for r, c in zip(rows, cols) if sims[r, c] >= anchor]
    used_a, used_b = {i for i, _ in anchored}, {j for _, j in anchored}
    rest_a = [i for i in range(len(wa.layers)) if i not in used_a]
    rest_b = [j for j in range(len(wb.layers)) if j not in used_b]
    by_order = pair_layers([wa.layers[i].weight.shape for i in rest_a], [wb.layers[j].weight.shape for j in rest_b])
    return sorted(anchored + [(rest_a[i], rest_b[j]) for i, j in by_order])


# ---- channel matching ----------------------------------------------------------------------------------------

def _rows(weight: np.ndarray, inputs: np.ndarray | None) -> np.ndarray:
    w = weight if inputs is None else weight[:, inputs]
    return w.reshape(w.shape[0], -1).astype(np.float32, copy=False)


def _unit(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(rows, axis=1)
    live = np.isfinite(norms) & (norms > 0)
    out = np.zeros_like(rows)
    out[live] = rows[live] / norms[live, None]
    return out, live


def _assign(similarity: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/column pairs maximising total similarity (greedy mutual best match for very large layers)."""
    if max(similarity.shape) <= limit:
        from scipy.optimize import linear_sum_assignment

        return linear_sum_assignment(similarity, maximize=True)
    best_b = similarity.argmax(axis=1)
    best_a = similarity.argmax(axis=0)
    rows = np.flatnonzero(best_a[best_b] == np.arange(similarity.shape[0]))
    return rows, best_b[rows]


def _matched(ua: np.ndarray, ub: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    similarity = np.abs(ua @ ub.T)  # |cos|: a negative batch-norm gamma flips a folded channel's sign
    ra, rb = _assign(similarity, limit)
    return ra, rb, similarity[ra, rb]


def _match_layer(la: ConvWeight, lb: ConvWeight, grids: tuple[Grid, Grid, float],
                 previous: tuple[int, int, np.ndarray, np.ndarray] | None,
                 thresholds: Thresholds) -> tuple[LayerMatch, tuple[np.ndarray, np.ndarray]]:
    a, b = la.weight, lb.weight
    grid_a, grid_b, precision = grids
    exact = a.shape == b.shape and np.array_equal(a, b)
    # rounding keeps every channel where it was: test it only where aligned channels are that close already;
    # each side's grid decides the tolerance when it is the rounded one (docs/lineage.md, "same-weights")
    rounded = exact or (a.shape == b.shape and _aligned_similarity(a, b) >= 0.98
                        and (rounds_to(a, b, grid_b, grid_a, precision) or rounds_to(b, a, grid_a, grid_b, precision)))
    if a.shape[1] == b.shape[1]:
        xa, xb, inputs = _rows(a, None), _rows(b, None), "same"
        n_in = a.shape[1]
    elif (previous is not None and previous[0] == a.shape[1] and previous[1] == b.shape[1]
          and len(previous[2]) >= 0.5 * min(a.shape[1], b.shape[1])):
        xa, xb, inputs = _rows(a, previous[2]), _rows(b, previous[3]), "matched"
        n_in = len(previous[2])
    else:  # inputs cannot be aligned: compare each channel's mean kernel over its inputs
        xa, xb, inputs = a.mean(axis=1).reshape(a.shape[0], -1), b.mean(axis=1).reshape(b.shape[0], -1), "mean"
        n_in = 1
    ua, live_a = _unit(xa)
    ub, live_b = _unit(xb)
    ia, ib = np.flatnonzero(live_a), np.flatnonzero(live_b)
    if len(ia) == 0 or len(ib) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return LayerMatch(la.name, lb.name, la.kernel, a.shape[0], b.shape[0], 0, 0.0, 0.0, 0.0, exact,
                          rounded, inputs), (empty, empty)
    ra, rb, sims = _matched(ua[ia], ub[ib], thresholds.max_hungarian)
    chance = _chance(ua[ia], xb[ib], (len(ib), n_in), thresholds.max_hungarian)
    similarity = float(np.median(sims)) if len(sims) else 0.0
    above = sims > chance + 0.5 * (1.0 - chance)
    order = np.argsort(ra)
    match = LayerMatch(la.name, lb.name, la.kernel, int(a.shape[0]), int(b.shape[0]), int(above.sum()),
                       round(float(above.sum()) / max(a.shape[0], b.shape[0]), 4), round(similarity, 6),
                       round(chance, 4), bool(exact), bool(rounded), inputs)
    keep = order[above[order]] if above.any() else order
    return match, (ia[ra[keep]], ib[rb[keep]])


def _chance(ua: np.ndarray, xb: np.ndarray, shape: tuple[int, ...], limit: int) -> float:
    """Median matched |cos| against B's channels made unrelated to A's: the null level of this layer.

    Unrelated networks see their inputs in another order and learn filters of the same kind (smooth, edges):
    B's input channels are permuted (cyclically, so none stays in place), and where there are too few inputs
    for that, each kernel is rotated by 90 degrees, which keeps its smoothness but not its orientation.
    """
    n_inputs = shape[1]
    block = xb.reshape(xb.shape[0], n_inputs, -1) if len(shape) > 1 else xb[:, None, :]
    if n_inputs >= 4:
        block = np.roll(block, n_inputs // 2, axis=1)
    else:
        side = int(round(np.sqrt(block.shape[2])))
        if side * side == block.shape[2] and side > 1:
            block = np.rot90(block.reshape(*block.shape[:2], side, side), axes=(2, 3))
        else:
            block = block[:, :, ::-1]
    ub, _ = _unit(np.ascontiguousarray(block).reshape(xb.shape[0], -1))
    return float(np.median(_matched(ua, ub, limit)[2]))


def _layer_weight(la: ConvWeight, lb: ConvWeight) -> float:
    """How much a layer's matching says: more channels and longer vectors tell chance from sharing better."""
    channels = min(la.weight.shape[0], lb.weight.shape[0])
    dims = int(np.prod(la.weight.shape[1:]))
    return float(np.sqrt(channels) * np.log2(1 + dims))


def _score(matches: list[LayerMatch], weights: list[float], unpaired: int, total: int) -> float:
    """Weighted mean excess similarity over chance of the paired layers, discounted for unpaired layers."""
    excess = [max(0.0, (m.similarity - m.chance) / max(1e-9, 1.0 - m.chance)) for m in matches]
    mean = float(np.average(excess, weights=weights)) if sum(weights) else 0.0
    return mean * (1.0 - 0.5 * unpaired / max(1, total))


def _decide(matches: list[LayerMatch], score: float, unpaired_a: int, unpaired_b: int,
            thresholds: Thresholds) -> tuple[Relation, list[str]]:
    same_shapes = all(m.channels_a == m.channels_b for m in matches) and not unpaired_a and not unpaired_b
    if same_shapes and all(m.exact for m in matches):
        return "identical", [f"all {len(matches)} convolutions bit-identical"]
    if same_shapes and all(m.rounded for m in matches):
        worst = min(m.similarity for m in matches)
        return "same-weights", [f"all {len(matches)} convolutions equal up to float16/8-bit rounding and a "
                                f"per-channel scale (lowest median channel |cos| {worst:.5f})"]
    if score >= thresholds.derived:
        n_exact = sum(m.exact for m in matches)
        lines = [f"channels match far above chance (score {score:.3f} >= {thresholds.derived})"]
        if n_exact:
            lines.append(f"{n_exact} of {len(matches)} paired convolutions bit-identical (frozen or shared)")
        return "derived", lines
    return "unrelated", [f"channel similarity at chance level (score {score:.3f} < {thresholds.derived})"]
