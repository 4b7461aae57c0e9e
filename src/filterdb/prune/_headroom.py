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

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """The headroom of ``record``: the totals and per-layer counts of ``prune_plan(record, free_only=True)`` (the
    same numbers; tests/test_study_prune.py checks them against it). A model without conv layers has 0 of 0.

    Cheaper than the plan: no importances, only the plan's float32 duplicate screen per layer; a layer with a pair
    within a rounding margin of the threshold is scored exactly, as the plan scores it (docs/prune.md, "Headroom
    in a store"; bench/results/ingest_headroom.md).
    """
    from threadpoolctl import threadpool_limits

    from ._build import PlanSettings, _as_read, _chain, _follow, _out_channels, _producers, _removed_if

    s = settings if settings is not None else PlanSettings()
    layers = _as_read([layer for layer in record.layers if layer.weight.ndim >= 3])
    if not layers:
        return Headroom(0, 0, 0, s.zero_eps, s.duplicate_cos)
    graph = _chain(layers, s)

    def count(i: int) -> tuple[int, int]:
        return _zero_and_duplicates(layers[i].weight, s.zero_eps, s.duplicate_cos)

    # one BLAS thread per layer, layers in parallel: as prune_plan scores them (docs/prune.md, "Speed")
    with threadpool_limits(1, user_api="blas"):
        workers = min(len(layers), os.cpu_count() or 1, 8)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                counts = list(pool.map(count, range(len(layers))))
        else:
            counts = [count(i) for i in range(len(layers))]
    out = [_out_channels(layer) for layer in layers]
    params = [float(layer.weight.size) for layer in layers]
    producer = _producers(graph)
    # as the plan's _assemble: the weights that go when each prunable layer loses its near-zero channels (and its
    # duplicates), with the inputs of the layers that read them
    free = _removed_if(params, graph, producer, out, [o - (z if graph.prunable[i] else 0)
                                                      for i, (o, (z, _)) in enumerate(zip(out, counts))])
    cheap = _removed_if(params, graph, producer, out, [o - (z + d if graph.prunable[i] else 0)
                                                       for i, (o, (z, d)) in enumerate(zip(out, counts))])
    keep = _follow([max(s.min_channels, o - z) if graph.prunable[i] else o
                    for i, (o, (z, _)) in enumerate(zip(out, counts))], graph)  # the free-only plan's channels
    return Headroom(int(sum(params)), int(round(free)), int(round(cheap - free)), s.zero_eps, s.duplicate_cos,
                    tuple(layer.name for layer in layers), tuple(out), tuple(z for z, _ in counts),
                    tuple(d for _, d in counts), tuple(round(1 - k / o, 6) for k, o in zip(keep, out)))


def _zero_and_duplicates(weight: np.ndarray, zero_eps: float, duplicate_cos: float) -> tuple[int, int]:
    """(near-zero channels, near-duplicate channels) of one layer, as the plan's default strategy counts them:
    its float32 screen, exact wherever a pair comes near ``duplicate_cos`` (prune._scores._screen)."""
    from ._scores import _screen

    scores = _screen(weight, zero_eps, duplicate_cos)
    return scores.n_zero, scores.n_duplicate


def not_measurable(reason: str, settings: Any = None) -> Headroom:
    """A headroom that says why there is none (every count 0, ``reason`` set)."""
    from ._build import PlanSettings

    s = settings if settings is not None else PlanSettings()
    return Headroom(0, 0, 0, s.zero_eps, s.duplicate_cos, reason=reason)
