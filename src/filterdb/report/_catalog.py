"""The catalog rows a zoo report shows besides the study: counts, one row per model and per layer.

Read once per report through the store's public methods (``stats``, ``models``, ``layers``: no SQL of the
report's own), with each layer's verdicts judged by the current rule of ``filterdb check`` from its stored
metrics (a store keeps the verdicts of the filterdb that ingested it). A frozen snapshot: the sections and
the drawing processes read it, never the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Catalog", "read_catalog"]


@dataclass(frozen=True, eq=False)
class Catalog:
    """What the summary and the model sections show."""

    root: str  # the store's folder
    stats: Any  # StoreStats
    models: Any  # DataFrame: one row per model
    layers: Any  # DataFrame: one row per layer, ``verdicts`` judged by the current rule

    @cached_property
    def degenerated(self) -> Any:
        """The layers with at least one verdict."""
        return self.layers[[len(v) > 0 for v in self.layers["verdicts"]]] if len(self.layers) else self.layers

    @cached_property
    def model_layers(self) -> dict[int, Any]:
        """model_id -> its layer rows (one group-by instead of one scan per model)."""
        if not len(self.layers):
            return {}
        return {int(k): part for k, part in self.layers.groupby("model_id", sort=False)}

    def layers_of(self, model_id: int) -> Any:
        return self.model_layers.get(int(model_id), self.layers.iloc[0:0])


def read_catalog(store: Store) -> Catalog:
    """The snapshot of ``store``'s catalog (see the module docstring)."""
    from ..check import judge_layers

    layers = store.layers().copy()
    if len(layers):
        layers["verdicts"] = judge_layers(layers).kinds()
    return Catalog(str(store.root), store.stats(), store.models(), layers)
