"""Which of two related models is the parent: several kinds of evidence, each reported, or an honest "unknown".

Each signal names the side it takes for the child (or none: a remark) with a strength, the share of pairs of
the labelled set (bench/lineage_pairs.py) on which that signal alone named the right parent:

- ``zeros``: one model has many more weights exactly zero in the layers they share (magnitude pruning; trained
  weights are never exactly zero): the pruned one is the child;
- ``channels``: one model has channels removed in layers whose channels matched far above chance (structured
  pruning). Layers matched only at chance (a new head paired with an old one) do not count;
- ``precision``: one model's values lie on a coarser storage grid (bfloat16, float16, int8): the export;
- ``added``: one model has layers without a well-matched counterpart, the other none: layers added (a new
  head) make the child. Layers paired only at chance count as without a counterpart. Only when they are a
  small part of their model (at most a quarter): a large unmatched part is as well explained by a backbone cut
  out of that model (a truncation: the other is the child) as by a neck and head built on the other, so it is
  reported and does not decide;
- ``subset``: both end in layers without a counterpart (a cut or replaced tail), one in fewer: a truncated
  backbone with a new head keeps fewer, so it is taken for the child (weaker: a re-head with a deeper head
  reverses it);
- ``norm``: weight norms differ. Weak: training without weight decay grows norms, weight decay (5e-4, most
  recipes' default) shrinks them, so it is reported and never decides;
- ``scales``: channels equal up to a per-channel scale (batch norm folded into one side): a conversion whose
  direction convolution weights do not show;
- ``export``: with ``scales``, exactly one side is an inference format (ONNX, TFLite): exporters fold batch
  norm, and folding cannot be undone (the statistics are gone), so the inference-format copy is the child.
  A prior about how files are made, not a measurement of the weights: it decides only when nothing else does.

The direction is named when the deciding signals agree; conflicting signals or only weak ones give
"direction unknown" (no parent). The confidence combines the agreeing signals' strengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ._rounding import GRID_BITS, Grid

if TYPE_CHECKING:
    from ._compare import LayerMatch
    from ._weights import ModelWeights

__all__ = ["Signal", "direction", "MIN_CONFIDENCE", "STRENGTH"]

Side = Literal["a", "b"]

# each signal's strength: the share of pairs of the labelled set on which it alone named the right parent
# (bench/results/lineage.json, "signals"); derived pairs' precision is weaker (a fine-tune of a bfloat16 file
# saved as float32 reverses it)
STRENGTH = {"zeros": 0.97, "channels": 0.95, "precision": 0.95, "precision (derived)": 0.8, "added": 0.9,
            "subset": 0.8, "export": 0.8}
INFERENCE_FORMATS = frozenset({"onnx", "tflite"})  # formats exporters write for inference (batch norm folded)
MIN_CONFIDENCE = 0.75  # below this the direction is reported as unknown
ADDED_SHARE = 0.25  # `added` decides only when the layers without a counterpart are at most this share of their model


@dataclass(frozen=True)
class Signal:
    """One piece of direction evidence."""

    kind: str  # zeros | channels | precision | added | subset | norm | scales | export
    child: Side | None  # the side this signal takes for the child (None: reported only)
    strength: float  # the share of labelled pairs it named right alone (0: weak, never decides)
    text: str


def _well_matched(m: LayerMatch) -> bool:
    return m.exact or m.rounded or m.matched >= 0.5 * max(1, min(m.channels_a, m.channels_b))


def _tail(rest: list[int], matched: set[int]) -> bool:
    """Whether the layers without a counterpart all come after the last matched one (a cut or replaced tail)."""
    return bool(matched) and min(rest) > max(matched)


def _names(wa: ModelWeights, wb: ModelWeights, side: Side) -> tuple[str, str]:
    return (wa.name, wb.name) if side == "a" else (wb.name, wa.name)


def _grid_bits(grids: list[Grid]) -> int:
    values, counts = np.unique([GRID_BITS[g] for g in grids], return_counts=True)
    return int(values[np.argmax(counts)])


def signals(relation: str, wa: ModelWeights, wb: ModelWeights, pairs: list[tuple[int, int]],
            matches: list[LayerMatch], grids: tuple[list[Grid], list[Grid]]) -> list[Signal]:
    """Every direction signal of a related pair (see the module docstring)."""
    out: list[Signal] = []
    good = [(i, j, m) for (i, j), m in zip(pairs, matches) if _well_matched(m)]
    changed = [(i, j) for i, j, m in good if not m.exact]
    # exact zeros: magnitude pruning
    if changed:
        size = sum(wa.layers[i].weight.size for i, _ in changed)
        za = sum(int(np.count_nonzero(wa.layers[i].weight == 0)) for i, _ in changed) / max(1, size)
        size_b = sum(wb.layers[j].weight.size for _, j in changed)
        zb = sum(int(np.count_nonzero(wb.layers[j].weight == 0)) for _, j in changed) / max(1, size_b)
        if max(za, zb) >= 0.05 and max(za, zb) >= 3 * min(za, zb) + 0.02:
            side: Side = "a" if za > zb else "b"
            child, parent = _names(wa, wb, side)
            out.append(Signal("zeros", side, STRENGTH["zeros"],
                              f"{child} has {max(za, zb):.0%} of its shared weights exactly zero, {parent} "
                              f"{min(za, zb):.0%}: magnitude pruning (the pruned copy is the child)"))
    # channels removed, only where channels matched far above chance
    fewer_a = sum(m.channels_a < m.channels_b for _, _, m in good)
    fewer_b = sum(m.channels_b < m.channels_a for _, _, m in good)
    if (fewer_a == 0) != (fewer_b == 0):
        side = "a" if fewer_a else "b"
        child, _ = _names(wa, wb, side)
        out.append(Signal("channels", side, STRENGTH["channels"],
                          f"{child} has channels removed in {max(fewer_a, fewer_b)} layers whose channels match "
                          "far above chance (structured pruning)"))
    # storage precision: values on a coarser grid
    bits_a, bits_b = _grid_bits(grids[0]), _grid_bits(grids[1])
    if bits_a != bits_b:
        side = "a" if bits_a < bits_b else "b"
        child, _ = _names(wa, wb, side)
        kind = "precision" if relation == "same-weights" else "precision (derived)"
        out.append(Signal("precision", side, STRENGTH[kind],
                          f"{child}'s weights lie on a {min(bits_a, bits_b)}-bit grid, the other's on a "
                          f"{max(bits_a, bits_b)}-bit one (an export at lower precision is the child)"))
    # layers without a well-matched counterpart: added ones, and a cut tail (layer-set inclusion)
    matched_a = {i for i, _, _ in good}
    matched_b = {j for _, j, _ in good}
    rest_a = [k for k in range(len(wa.layers)) if k not in matched_a]
    rest_b = [k for k in range(len(wb.layers)) if k not in matched_b]
    if good and bool(rest_a) != bool(rest_b):
        side = "a" if rest_a else "b"
        child, parent = _names(wa, wb, side)
        longer = wa if side == "a" else wb
        layer = longer.layers[(rest_a or rest_b)[0]].name
        extra = len(rest_a or rest_b)
        if extra <= ADDED_SHARE * len(longer.layers):
            out.append(Signal("added", side, STRENGTH["added"],
                              f"{child} has {extra} layers without a counterpart in {parent} (first: {layer}), "
                              f"{parent} none: layers added (a new head) make the child"))
        else:  # as well explained by a backbone cut out of the longer model as by a neck and head added to it
            out.append(Signal("added", None, 0.0,
                              f"{child} has {extra} of its {len(longer.layers)} layers without a counterpart in "
                              f"{parent}, {parent} none: too many for a new head (a truncation of {child} or an "
                              "extension of the other: not used)"))
    elif (good and rest_a and rest_b and len(rest_a) != len(rest_b)
          and _tail(rest_a, matched_a) and _tail(rest_b, matched_b)):
        side = "a" if len(rest_a) < len(rest_b) else "b"
        child, parent = _names(wa, wb, side)
        out.append(Signal("subset", side, STRENGTH["subset"],
                          f"both end in layers without a counterpart: {len(rest_a if side == 'b' else rest_b)} in "
                          f"{parent}, {min(len(rest_a), len(rest_b))} in {child} (a truncated, re-headed backbone "
                          "is the child)"))
    # scales: batch norm folded (reported only)
    scaled = [(i, j) for i, j, m in good if m.rounded and not m.exact]
    if relation == "same-weights" and any(_rescaled(wa.layers[i].weight, wb.layers[j].weight) for i, j in scaled):
        out.append(Signal("scales", None, 0.0, "channels equal up to a per-channel scale (batch norm folded into "
                                              "one side): a conversion whose direction the weights do not show"))
        exported = [(fmt or "") in INFERENCE_FORMATS for fmt in (wa.format, wb.format)]
        if exported[0] != exported[1]:
            side = "a" if exported[0] else "b"
            child, parent = _names(wa, wb, side)
            out.append(Signal("export", side, STRENGTH["export"],
                              f"{child} is an inference format ({(wa if side == 'a' else wb).format}), {parent} not: "
                              "exporters fold batch norm and folding cannot be undone, so the export is the child "
                              "(a prior about how files are made)"))
    # norms: weak
    votes = [np.sign(_norm(wb.layers[j].weight) - _norm(wa.layers[i].weight)) for i, j in changed]
    if votes and any(votes):
        larger: Side = "b" if sum(votes) > 0 else "a"
        name, _ = _names(wa, wb, larger)
        n_larger = sum(v == (1 if larger == "b" else -1) for v in votes)
        out.append(Signal("norm", None, 0.0,
                          f"{name} has the larger weight norm in {n_larger}"
                          f" of {len(votes)} changed layers (weak: training grows norms, weight decay shrinks them; "
                          "not used alone)"))
    return out


def _rescaled(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    na = np.linalg.norm(a.reshape(a.shape[0], -1), axis=1)
    nb = np.linalg.norm(b.reshape(b.shape[0], -1), axis=1)
    live = (na > 0) & (nb > 0)
    ratio = nb[live] / na[live]
    return bool(ratio.size) and float(np.std(ratio) / max(1e-12, float(np.mean(ratio)))) > 1e-2


def _norm(weight: np.ndarray) -> float:
    w = weight[np.isfinite(weight)].astype(np.float64)
    return float(np.sqrt(np.sum(w * w)))


def direction(found: list[Signal]) -> tuple[Side | None, float, list[str]]:
    """The parent side and its confidence from the signals, or (None, 0.5): unknown (weak or conflicting)."""
    deciding = [s for s in found if s.child is not None and s.strength > 0]
    lines = [s.text for s in found]
    if not deciding:
        return None, 0.5, lines + ["direction unknown: no evidence beyond weight norms"] if found else lines
    sides = {s.child for s in deciding}
    if len(sides) > 1:
        return None, 0.5, lines + ["direction unknown: the evidence conflicts"]
    child = deciding[0].child
    confidence = 1.0 - float(np.prod([1.0 - s.strength for s in deciding]))
    confidence = min(0.99, confidence)
    if confidence < MIN_CONFIDENCE:
        return None, 0.5, lines + ["direction unknown: the evidence is weak"]
    return ("b" if child == "a" else "a"), confidence, lines
