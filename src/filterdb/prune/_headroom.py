"""Pruning headroom: the target-free part of a prune plan, small enough to keep per model in a store.

``headroom(record)`` is :func:`prune_plan` with ``free_only=True`` reduced to what does not depend on a target:
the conv weights in near-zero channels (removable at no measured risk), those more in near-duplicate channels
(removable at low diversity), and all conv weights, with the per-layer counts behind them. ``filterdb ingest``
computes it while a model's weights are in memory and keeps it as the store's per-model data of kind
:data:`HEADROOM_KIND`; the study of a store (``filterdb report``) reads it back, never the weights
(docs/prune.md, "Headroom in a store"; docs/report.md, "Pruning headroom").

The arrays are plain numbers and strings (``to_arrays`` / ``from_arrays``): the store keeps no pickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FilterDBError
from ..types import ModelRecord

__all__ = ["HEADROOM_FORMAT", "HEADROOM_KIND", "MAX_CHANNELS", "Headroom", "headroom", "not_measurable"]

HEADROOM_KIND = "prune"  # the store's per-model data kind (data/prune/<sha256>.npz)
# the widest conv layer ingest scores: the near-duplicate test holds a few out x out float64 matrices (4096: about
# 130 MB each), and a model file is untrusted, so its sizes are checked before anything is allocated
MAX_CHANNELS = 4096
HEADROOM_FORMAT = 1  # the layout of the arrays; from_arrays refuses others (the report then says "not measured")


@dataclass(frozen=True)
class Headroom:
    """The target-free numbers of a model's prune plan (``prune_plan(model, free_only=True)``).

    ``reason`` is empty when the numbers were measured; otherwise it says why they cannot be (a model read from
    the CNN Filter DB HDF5 layout keeps no output channels), and every count is 0.
    """

    params_total: int  # weights of all conv layers (PrunePlan.params_total)
    free_params: int  # in near-zero channels and the inputs that read them (PrunePlan.free_params)
    redundant_params: int  # more in near-duplicate channels (PrunePlan.redundant_params)
    zero_eps: float  # the thresholds the counts used (PlanSettings)
    duplicate_cos: float
    layers: tuple[str, ...] = ()  # conv layers, in the plan's order
    out_channels: tuple[int, ...] = ()
    n_zero: tuple[int, ...] = ()  # near-zero channels per layer
    n_duplicate: tuple[int, ...] = ()  # near-duplicate channels per layer
    free_ratio: tuple[float, ...] = ()  # share of channels the free-only plan removes per layer
    reason: str = ""

    @property
    def measured(self) -> bool:
        return not self.reason

    @property
    def free_share(self) -> float | None:
        """free_params / params_total; None when not measured or the model has no conv weights."""
        return self.free_params / self.params_total if self.measured and self.params_total else None

    @property
    def redundant_share(self) -> float | None:
        return self.redundant_params / self.params_total if self.measured and self.params_total else None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Numeric and string arrays for :func:`filterdb.store.put_model_data`."""
        return {"format": np.array(HEADROOM_FORMAT, np.int64),
                "totals": np.array([self.params_total, self.free_params, self.redundant_params], np.int64),
                "thresholds": np.array([self.zero_eps, self.duplicate_cos], np.float64),
                "layers": np.array(self.layers, dtype=np.str_) if self.layers else np.zeros(0, "U1"),
                "out_channels": np.array(self.out_channels, np.int64),
                "n_zero": np.array(self.n_zero, np.int64), "n_duplicate": np.array(self.n_duplicate, np.int64),
                "free_ratio": np.array(self.free_ratio, np.float64), "reason": np.array(self.reason, dtype=np.str_)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Headroom | None:
        """The headroom :meth:`to_arrays` wrote; None for another layout or a damaged one (shapes are checked:
        the store checks only sizes and dtypes)."""
        try:
            if int(arrays["format"]) != HEADROOM_FORMAT:
                return None
            totals = np.asarray(arrays["totals"])
            thresholds = np.asarray(arrays["thresholds"], np.float64)
            names = tuple(str(n) for n in np.asarray(arrays["layers"]).reshape(-1))
            per_layer = {k: np.asarray(arrays[k]).reshape(-1) for k in ("out_channels", "n_zero", "n_duplicate",
                                                                        "free_ratio")}
            if totals.shape != (3,) or totals.dtype.kind not in "iu" or thresholds.shape != (2,) or any(
                    len(v) != len(names) for v in per_layer.values()):
                return None
            params_total, free, redundant = (int(v) for v in totals)
            if min(params_total, free, redundant) < 0 or free + redundant > params_total:
                return None
            return cls(params_total, free, redundant, float(thresholds[0]), float(thresholds[1]), names,
                       tuple(int(v) for v in per_layer["out_channels"]), tuple(int(v) for v in per_layer["n_zero"]),
                       tuple(int(v) for v in per_layer["n_duplicate"]),
                       tuple(float(v) for v in per_layer["free_ratio"]), str(np.asarray(arrays["reason"]).item()))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


def headroom(record: ModelRecord, settings: Any = None) -> Headroom:
    """The headroom of ``record``: :func:`prune_plan` with ``free_only=True`` (the same numbers), reduced to its
    totals and per-layer counts. A model without convolution layers has 0 of 0 weights.

    Costs one Gram matrix per conv layer (the near-duplicate test): about as much as ``check_model`` on the same
    model (docs/prune.md, "Headroom in a store", bench/results/ingest_headroom.md).
    """
    from ._build import PlanSettings, prune_plan

    plan_settings = settings if settings is not None else PlanSettings(strategy="novelty")
    try:
        # "novelty": the near-zero and duplicate tests are the same for every strategy, and novelty skips the
        # consumer energies the others add to the ranking
        plan = prune_plan(record, 0.5, free_only=True, settings=plan_settings)
    except FilterDBError:
        if not any(layer.weight.ndim >= 3 for layer in record.layers):
            return Headroom(0, 0, 0, plan_settings.zero_eps, plan_settings.duplicate_cos)
        raise
    return Headroom(plan.params_total, plan.free_params, plan.redundant_params, plan_settings.zero_eps,
                    plan_settings.duplicate_cos, tuple(lp.name for lp in plan.layers),
                    tuple(lp.out_channels for lp in plan.layers), tuple(lp.n_zero for lp in plan.layers),
                    tuple(lp.n_duplicate for lp in plan.layers), tuple(lp.ratio for lp in plan.layers))


def not_measurable(reason: str, settings: Any = None) -> Headroom:
    """A headroom that says why there is none (every count 0, ``reason`` set)."""
    from ._build import PlanSettings

    s = settings if settings is not None else PlanSettings()
    return Headroom(0, 0, 0, s.zero_eps, s.duplicate_cos, reason=reason)
