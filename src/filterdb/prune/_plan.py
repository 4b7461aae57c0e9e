"""The prune plan: per conv layer, how many output channels to remove, which ones, and why."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LayerPlan", "PrunePlan", "Reason", "REASONS", "PLAN_FORMAT"]

PLAN_FORMAT = 1  # the version of the JSON layout; from_json refuses other versions

Reason = Literal["near-zero filters", "redundant channels", "low diversity", "least novel channels",
                 "keep: healthy and small", "keep: model output", "keep: coupling not understood",
                 "keep: channel shuffle", "keep: not a prunable kind"]
REASONS: dict[str, str] = {
    "near-zero filters": "channels whose every weight is ≤ 1 % of the layer's largest: removable with no "
                         "change to the outputs where their bias is zero too",
    "redundant channels": "channels that nearly repeat a kept channel (|cosine| ≥ the duplicate threshold)",
    "low diversity": "the layer's filters span few directions (the low-diversity verdict of `filterdb check`)",
    "least novel channels": "channels that add the least new direction to the ones kept (pivoted-QR order)",
    "keep: healthy and small": "every channel adds new information; pruning it costs more than elsewhere",
    "keep: model output": "its channels are a model output, or may be: no conv layer of the file takes them as "
                          "input (a classifier's last conv feeds a linear layer, a detector's heads are outputs)",
    "keep: coupling not understood": "a grouped convolution whose channel coupling the plan cannot follow",
    "keep: channel shuffle": "its channels cross a channel shuffle (ShuffleNet), which interleaves them with "
                             "another branch's: removing some would break the interleave",
    "keep: not a prunable kind": "transposed or non-2-D convolution: left to the user",
}

# the reasons of a layer the plan cannot prune safely (not its choice: what the file lets it see)
TOO_WIDE_REASON = "keep: too wide to score"  # more output channels than PlanSettings.max_channels
UNTOUCHED = ("keep: model output", "keep: coupling not understood", "keep: channel shuffle",
             "keep: not a prunable kind", TOO_WIDE_REASON)


@dataclass(frozen=True)
class LayerPlan:
    """What the plan does to one conv layer."""

    name: str  # the layer's name in the model file (the key the integrations map onto modules)
    kind: str  # conv, grouped, depthwise, transpose
    out_channels: int
    ratio: float  # share of output channels to remove, 0..1
    remove: tuple[int, ...]  # the output channels to remove, least important first
    reason: str  # one of REASONS
    importance: tuple[float, ...]  # a data-free score per output channel (1 = the strongest, 0 = adds nothing)
    n_zero: int  # channels whose filters are all (near) zero: free to remove
    n_duplicate: int  # channels that nearly repeat a kept one
    coupled_with: tuple[str, ...] = ()  # layers whose output channels must be removed together with these
    params: int = 0  # weights of this layer
    params_removed: int = 0  # weights removed here and in the inputs of the layers that consume it
    flops: int | None = None  # multiply-accumulates of this layer, when the input shape is known
    flops_removed: int | None = None

    @property
    def n_remove(self) -> int:
        return len(self.remove)

    @property
    def free(self) -> tuple[int, ...]:
        """Channels among ``remove`` that are near-zero (the first ``n_zero`` of the least important)."""
        zero = {i for i, s in enumerate(self.importance) if s == 0.0}
        return tuple(c for c in self.remove if c in zero)


@dataclass(frozen=True)
class PrunePlan:
    """A data-free prune plan for one model (docs/prune.md).

    ``target`` is the share of the model's convolution weights (``by="params"``) or multiply-accumulates
    (``by="flops"``) to remove; ``params_removed`` and ``flops_removed`` are what the plan reaches.
    """

    model: str  # the model as named by the user
    target: float
    by: Literal["params", "flops"]
    layers: tuple[LayerPlan, ...]
    params_total: int  # weights of all conv layers
    params_removed: int
    free_params: int  # of params_removed, in near-zero channels (no measured risk)
    redundant_params: int  # of params_removed, in duplicate channels and low-diversity layers
    flops_total: int | None = None
    flops_removed: int | None = None
    input_shape: tuple[int, ...] | None = None
    strategy: str = "novelty"  # how channels were ranked (docs/prune.md, "Strategies"); a plan says which
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # thresholds used, and the ratio allocation

    @property
    def reduction(self) -> float:
        """The share of the target measure the plan removes."""
        if self.by == "flops" and self.flops_total:
            return (self.flops_removed or 0) / self.flops_total
        return self.params_removed / self.params_total if self.params_total else 0.0

    @property
    def untouched(self) -> tuple[tuple[str, str], ...]:
        """(layer, reason) for every layer the plan leaves alone because it cannot prune it safely."""
        return tuple((lp.name, lp.reason) for lp in self.layers if lp.reason in UNTOUCHED)

    def headline(self) -> str:
        """One sentence for people: what is free, what is cheap, what the target costs."""
        total = self.params_total or 1
        short = self.strategy != "free-only" and self.reduction < self.target - 1e-9
        return (f"{100 * self.free_params / total:.1f} % of conv parameters removable at no measured risk "
                f"(near-zero channels); {100 * self.redundant_params / total:.1f} % more at low diversity "
                f"(redundant channels); the plan removes {100 * self.params_removed / total:.1f} % "
                f"(target {100 * self.target:.0f} % by {self.by}"
                + (": out of reach, the notes say which layers it may not touch)" if short else ")"))

    def ratios(self) -> dict[str, float]:
        """Layer name → share of output channels to remove (layers left alone included, at 0)."""
        return {lp.name: lp.ratio for lp in self.layers}

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: name, kind, out_channels, ratio, n_remove, reason, n_zero, n_duplicate, params,
        params_removed, flops, flops_removed, coupled_with."""
        import pandas as pd

        rows = [{"name": lp.name, "kind": lp.kind, "out_channels": lp.out_channels, "ratio": lp.ratio,
                 "n_remove": lp.n_remove, "reason": lp.reason, "n_zero": lp.n_zero, "n_duplicate": lp.n_duplicate,
                 "params": lp.params, "params_removed": lp.params_removed, "flops": lp.flops,
                 "flops_removed": lp.flops_removed, "coupled_with": ", ".join(lp.coupled_with)}
                for lp in self.layers]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives, without its deep copy of every score (a tenth of a ResNet-50 plan's
        # time): the fields are numbers, strings and tuples of them, immutable; only ``settings`` is copied
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["layers"] = tuple({f.name: getattr(lp, f.name) for f in fields(lp)} for lp in self.layers)
        out["settings"] = copy.deepcopy(self.settings)
        out["format"] = PLAN_FORMAT
        out["reduction"] = self.reduction
        out["headline"] = self.headline()
        return out

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int | None = 1) -> str:
        """The plan as JSON (written atomically to ``path`` when given); ``from_json`` reads it back."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from .._atomic import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> PrunePlan:
        """Read a plan written by :meth:`to_json`: a path, or the JSON text itself."""
        text = os.fspath(source)
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            if data.get("format") != PLAN_FORMAT:
                raise UsageError(f"prune plan format {data.get('format')!r} is not {PLAN_FORMAT}: "
                                 "re-create the plan with this version of filterdb")
            layers = tuple(LayerPlan(**{**lp, "remove": tuple(lp["remove"]), "importance": tuple(lp["importance"]),
                                        "coupled_with": tuple(lp["coupled_with"])}) for lp in data["layers"])
            fields = {k: v for k, v in data.items() if k not in ("format", "reduction", "headline", "layers")}
            shape = fields.get("input_shape")
            return cls(**{**fields, "layers": layers, "notes": tuple(fields.get("notes", ())),
                          "input_shape": tuple(shape) if shape is not None else None})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"not a filterdb prune plan ({type(e).__name__}: {e})") from e
