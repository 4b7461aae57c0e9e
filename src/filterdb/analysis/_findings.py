"""The findings of a study: short statements from its numbers, each by a stated rule (docs/report.md, "Findings").

Rules, in the order the findings come out:

- ``axis_ranking`` (two axes or more): the axes by median pairwise drift, largest first (one basis for all).
- per axis, in the order of the axes:
  - ``most_shifted``: the (up to) three groups with the largest mean drift to the other groups of the axis
    (the mean of the group's row of the matrix, diagonal left out), each with its noise floor and whether its
    mean drift is above it; a group without a floor says so. The ranking ignores the floors: a reader of the
    matrix names the same groups.
  - ``no_shift``: no group's mean drift is above its floor; said in words, with how many groups have no floor.
  - ``floor_unknown``: the groups whose floor cannot be estimated (one model, too few layers): their drifts are
    never counted as beyond noise.
  - ``largest_pair``: the pair with the largest drift, and whether it exceeds the larger floor of the two.
  - ``dominant_model``: the groups one model dominates (more than half of their filters).
- ``degeneration``: the share of layers with a verdict, and of the filters in them.
- ``families``: how many families of related models the stored fingerprints show.
- ``prune_headroom`` (a model with measured headroom): the share of the measured models' conv weights removable at
  no measured risk and the share more at low diversity, and the group of the first axis with the most of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .study import AxisRank, AxisStudy, DominantModel, Families, Finding, GroupShift

if TYPE_CHECKING:
    from ._headroom import PruneHeadroom

__all__ = ["TOP_GROUPS", "caveats_of", "dominant_text", "findings_of"]

TOP_GROUPS = 3  # groups named per axis by "most_shifted"


def _listing(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _shift_text(s: GroupShift) -> str:
    if s.floor is None:
        return f"{s.group} ({s.mean_drift:.2f}; no noise floor: {s.floor_note})"
    where = "above" if s.beyond_floor else "not above"
    return f"{s.group} ({s.mean_drift:.2f}, {where} its noise floor {s.floor:.2f})"


def _axis_findings(a: AxisStudy) -> list[Finding]:
    out: list[Finding] = []
    top = a.ranking[:TOP_GROUPS]
    out.append(Finding(
        "most_shifted",
        f"By {a.axis}, the groups furthest from the others (mean drift to the other groups) are "
        f"{_listing([_shift_text(s) for s in top])}.",
        {"groups": [s.to_dict() for s in top], "n_groups": len(a.groups)}, a.axis, top[0].group if top else None))
    known = [s for s in a.ranking if s.floor is not None]
    if not any(s.beyond_floor for s in a.ranking):
        if known:
            text = (f"By {a.axis}, no group's mean drift is above its noise floor: the differences between these "
                    f"{len(a.groups)} groups are within what splitting one group in two gives"
                    + (f" ({len(a.groups) - len(known)} of them have no floor)." if len(known) < len(a.groups)
                       else "."))
        else:
            text = (f"By {a.axis}, no group has a noise floor (one model or too few layers each), so no drift along "
                    "this axis can be told apart from sampling noise.")
        out.append(Finding("no_shift", text, {"n_groups": len(a.groups), "n_with_floor": len(known)}, a.axis))
    unknown = [s for s in a.ranking if s.floor is None]
    if unknown and known:
        out.append(Finding(
            "floor_unknown",
            f"By {a.axis}, the noise floor of {_listing([s.group for s in unknown])} cannot be estimated ("
            + "; ".join(dict.fromkeys(str(s.floor_note).split(":")[0] for s in unknown))
            + (f"): {'its drift is' if len(unknown) == 1 else 'their drifts are'} not counted as beyond noise."),
            {"groups": {s.group: s.floor_note for s in unknown}}, a.axis))
    if len(a.groups) >= 2:
        m = a.drift.matrix
        i, j = divmod(int(m.argmax()), m.shape[0])
        fi, fj = a.floors[a.groups[i]], a.floors[a.groups[j]]
        value = float(m[i, j])
        if fi is None or fj is None:
            verdict = "one of the two has no noise floor"
            beyond: bool | None = None
        else:
            beyond = value > max(fi, fj)
            verdict = f"{'above' if beyond else 'not above'} the larger of their noise floors ({max(fi, fj):.2f})"
        out.append(Finding("largest_pair", f"By {a.axis}, the largest drift is between {a.groups[i]} and "
                                           f"{a.groups[j]} ({value:.2f}), {verdict}.",
                           {"pair": [a.groups[i], a.groups[j]], "drift": value, "floors": [fi, fj],
                            "beyond_floor": beyond}, a.axis))
    if a.dominant:
        out.append(Finding("dominant_model", f"By {a.axis}, one model stands for most of a group: "
                                             f"{dominant_text(a.dominant)} (--per-model weighs each model of a group "
                                             "equally).",
                           {"dominant": [d.to_dict() for d in a.dominant]}, a.axis))
    return out


def dominant_text(dominant: Sequence[DominantModel]) -> str:
    """The dominant models of an axis in one clause, each model once ("M holds 61-93 % of 8 groups: ...")."""
    by_model: dict[str, list[DominantModel]] = {}
    for d in dominant:
        by_model.setdefault(d.model, []).append(d)
    parts = []
    for model, ds in by_model.items():
        if len(ds) == 1:
            parts.append(f"{model} holds {ds[0].share:.0%} of {ds[0].group}")
        else:
            low, high = min(d.share for d in ds), max(d.share for d in ds)
            parts.append(f"{model} holds {low:.0%}–{high:.0%} of each of {len(ds)} groups ("
                         + ", ".join(d.group for d in ds) + ")")
    return _listing(parts)


def findings_of(axes: Sequence[AxisStudy], ranking: Sequence[AxisRank], degeneration: Any,
                families: Families | None, prune: PruneHeadroom | None = None) -> tuple[Finding, ...]:
    """Every finding of a study, by the rules of the module docstring."""
    out: list[Finding] = []
    if len(ranking) >= 2:
        parts = [f"{r.axis} ({r.median:.2f})" for r in ranking]
        out.append(Finding("axis_ranking", f"Filters differ most by {ranking[0].axis}: median pairwise drift "
                                           f"{_listing(parts)}.",
                           {"median": {r.axis: r.median for r in ranking}}, ranking[0].axis))
    for a in axes:
        out.extend(_axis_findings(a))
    if degeneration is not None:
        o = degeneration.overall
        out.append(Finding("degeneration",
                           f"{o['any_layers']:.1%} of {int(o['n_layers']):,} conv layers have a verdict (sparse "
                           f"{o['sparse_layers']:.1%}, low-diversity {o['low-diversity_layers']:.1%}, random "
                           f"{o['random_layers']:.1%}), holding {o['any_filters']:.1%} of their filters.",
                           {k: float(v) for k, v in o.items()}))
    if families is not None and families.n_models >= 2:
        sizes = sorted((len(f) for f in families.families), reverse=True)
        text = (f"{len(sizes)} families of related models among {families.n_models} compared (largest: "
                f"{sizes[0]} models); related models are not independent samples of their group."
                if sizes else f"No two of the {families.n_models} models compared share weights.")
        out.append(Finding("families", text, {"n_families": len(sizes), "sizes": sizes,
                                              "n_compared": families.n_models, "n_missing": len(families.missing)}))
    if prune is not None and prune.total.n_models:
        out.append(_prune_finding(prune))
    return tuple(out)


def _prune_finding(prune: PruneHeadroom) -> Finding:
    t = prune.total
    free, more = t.free_share or 0.0, t.redundant_share or 0.0
    text = (f"{100 * free:.1f} % of the conv parameters of {t.n_models} measured model{'s' if t.n_models != 1 else ''} "
            f"are removable at no measured risk (near-zero channels); {100 * more:.1f} % more at low diversity "
            "(near-duplicate channels)")
    numbers: dict[str, Any] = {"free_share": free, "redundant_share": more, "n_measured": t.n_models,
                               "n_not_measured": t.n_not_measured, "params_total": t.params_total}
    top = prune.groups[0] if len(prune.groups) >= 2 and prune.groups[0].free_share is not None else None
    if top is not None:
        text += (f"; by {prune.by}, most in {top.group} ({100 * (top.free_share or 0.0):.1f} % and "
                 f"{100 * (top.redundant_share or 0.0):.1f} %)")
        numbers["group"] = top.group
    if t.n_not_measured:
        text += f"; {t.n_not_measured} model{'s' if t.n_not_measured != 1 else ''} not measured"
    return Finding("prune_headroom", text + ".", numbers, prune.by if top is not None else None,
                   top.group if top is not None else None)


def caveats_of(axes: Sequence[AxisStudy], families: Families | None) -> tuple[str, ...]:
    """What limits the conclusions, one sentence each: groups left out, dominant models, groups without a floor."""
    out: list[str] = []
    for a in axes:
        out.extend(f"{a.axis}: {text}" for text in a.left_out)
        if a.dominant:
            out.append(f"{a.axis}: one model stands for most of a group: {dominant_text(a.dominant)}.")
        unknown = [s for s in a.ranking if s.floor is None]
        if unknown:
            out.append(f"{a.axis}: no noise floor for " + "; ".join(f"{s.group} ({s.floor_note})" for s in unknown)
                       + ".")
    if families is not None and families.note:
        out.append(families.note)
    return tuple(out)
