"""Alert rules: when a layer's metrics during training call for a person's attention.

Each rule looks at one layer's row of the current evaluation (the metrics and verdicts of
``filterdb check``) and at what the monitor remembers of that layer, and says whether to alert. A layer
alerts at most once per kind (non-finite, sparse, low-diversity, random) and run, so a broken layer
produces one alert, not one per evaluation; a layer with NaN/Inf weights gets only the non-finite alert
(its other metrics treat those weights as 0 and mean nothing then).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import UsageError

__all__ = ["Alert", "AlertRules", "LayerHistory", "RULES", "evaluate_rules"]


@dataclass(frozen=True)
class AlertRules:
    """What makes the monitor alert. ``None`` switches a rule off.

    The verdict rules use the thresholds of ``filterdb check`` (:class:`filterdb.check.Thresholds`), so an
    alert fires at the first evaluation at which ``filterdb check`` on a checkpoint would show the verdict.
    """

    # a layer still "random" after this share of training (at close when the length is unknown)
    random_after: float | None = 0.5
    sparsity_jump: float | None = 0.25  # sparsity rising by at least this between two evaluations
    entropy_drop: float | None = 0.3  # variance_entropy_norm falling by at least this between two evaluations
    verdicts: tuple[str, ...] = ("sparse", "low-diversity")  # verdicts that alert when a layer first gets them

    def __post_init__(self) -> None:
        for name in ("random_after", "sparsity_jump", "entropy_drop"):
            value: float | None = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
                raise UsageError(f"AlertRules.{name} must be in (0, 1] or None, got {value!r}")
        from ..check import VERDICT_KINDS

        unknown = [v for v in self.verdicts if v not in VERDICT_KINDS]
        if isinstance(self.verdicts, str) or unknown:
            raise UsageError(f"AlertRules.verdicts must be a tuple of verdict kinds ({', '.join(VERDICT_KINDS)}), "
                             f"got {self.verdicts!r}")


@dataclass(frozen=True)
class Alert:
    """One alert: which layer, what kind of degeneration, the rule that fired and the values it saw."""

    kind: str  # a verdict kind: "non-finite", "sparse", "low-diversity", "random"
    layer: str  # the layer's name as the framework names it
    rule: str  # the rule that fired: "non-finite", "verdict", "sparsity-jump", "entropy-drop", "still-random"
    values: Mapping[str, Any]  # the numbers the rule compared
    message: str  # one sentence for people, with the rule and the values
    step: int
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The log record: ``{"alert": {...}, "step": ..., "epoch": ...}``."""
        body = {"kind": self.kind, "layer": self.layer, "rule": self.rule, "values": dict(self.values),
                "message": self.message}
        return {"alert": body, "step": self.step, "epoch": self.epoch}


@dataclass
class LayerHistory:
    """What the monitor remembers of one layer between evaluations."""

    previous: Mapping[str, Any] | None = None  # the layer's row at the previous evaluation
    fired: set[str] = field(default_factory=set)  # kinds that already alerted for this layer


@dataclass(frozen=True)
class RuleContext:
    row: Mapping[str, Any]  # the layer's current row (metrics, "verdicts" as kinds)
    history: LayerHistory
    rules: AlertRules
    progress: float | None  # share of training done, None when the length is unknown
    final: bool  # the last evaluation (Monitor.close)


Finding = tuple[str, dict[str, Any], str]  # (kind, values, message)
Rule = Callable[["RuleContext"], "list[Finding]"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, numbers.Real) and math.isfinite(value) else None


def _non_finite(c: RuleContext) -> list[Finding]:
    n = int(c.row.get("n_nonfinite") or 0)
    if n <= 0:
        return []
    return [("non-finite", {"n_nonfinite": n},
            f"{n} weight(s) are NaN or infinite (rule: any non-finite weight): training diverged; lower the "
            "learning rate or clip gradients")]


def _verdict(c: RuleContext) -> list[Finding]:
    findings = []
    for kind in c.rules.verdicts:
        if kind in c.row["verdicts"]:
            column = "sparsity" if kind == "sparse" else "variance_entropy_norm"
            findings.append((kind, {column: _number(c.row[column])},
                             f"the layer is now {kind!r} ({column} {_fmt(c.row[column])}; rule: the verdict of "
                             "filterdb check)"))
    return findings


def _sparsity_jump(c: RuleContext) -> list[Finding]:
    jump = c.rules.sparsity_jump
    now = _number(c.row["sparsity"])
    before = _number(c.history.previous["sparsity"]) if c.history.previous else None
    if jump is None or now is None or before is None or now - before < jump:
        return []
    return [("sparse", {"sparsity": now, "previous": before, "jump": jump},
             f"sparsity jumped from {before:.3f} to {now:.3f} (rule: a rise of at least {jump:g} between evaluations)")]


def _entropy_drop(c: RuleContext) -> list[Finding]:
    drop = c.rules.entropy_drop
    now = _number(c.row["variance_entropy_norm"])
    before = _number(c.history.previous["variance_entropy_norm"]) if c.history.previous else None
    if drop is None or now is None or before is None or before - now < drop:
        return []
    return [("low-diversity", {"variance_entropy_norm": now, "previous": before, "drop": drop},
             f"normalised variance entropy fell from {before:.3f} to {now:.3f} (rule: a fall of at least {drop:g} "
             "between evaluations): the filters are collapsing onto few patterns")]


def _still_random(c: RuleContext) -> list[Finding]:
    share = c.rules.random_after
    if share is None or "random" not in c.row["verdicts"]:
        return []
    if c.progress is not None and c.progress < share:
        return []
    if c.progress is None and not c.final:
        return []
    done = f"{c.progress:.0%} of training" if c.progress is not None else "the end of training"
    return [("random", {"variance_entropy_norm": _number(c.row["variance_entropy_norm"]), "random_after": share},
             f"the layer still looks untrained after {done} (normalised variance entropy "
             f"{_fmt(c.row['variance_entropy_norm'])}; rule: 'random' after {share:.0%} of training): is it "
             "frozen, or does no gradient reach it?")]


def _fmt(value: Any) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.3f}"


# name -> rule; evaluated in this order, so a layer's first alert names the most serious finding
RULES: dict[str, Rule] = {
    "non-finite": _non_finite,
    "verdict": _verdict,
    "sparsity-jump": _sparsity_jump,
    "entropy-drop": _entropy_drop,
    "still-random": _still_random,
}


def evaluate_rules(name: str, row: Mapping[str, Any], history: LayerHistory, rules: AlertRules, *,
                   step: int, epoch: int | None, progress: float | None, final: bool) -> list[Alert]:
    """The alerts one layer's row raises now; updates ``history`` (fired rules, the previous row)."""
    context = RuleContext(row=row, history=history, rules=rules, progress=progress, final=final)
    rules_now = {"non-finite": RULES["non-finite"]} if (row.get("n_nonfinite") or 0) > 0 else RULES
    alerts = []
    for rule, check in rules_now.items():
        for kind, values, message in check(context):
            if kind not in history.fired:
                history.fired.add(kind)
                alerts.append(Alert(kind, name, rule, values, f"layer {name!r}: {message}", step, epoch))
    history.previous = row
    return alerts
