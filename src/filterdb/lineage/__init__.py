"""Model similarity and lineage from weights alone: ``compare``, ``similar``, ``lineage``.

See docs/lineage.md for the method, its limits and its measured accuracy.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from ._compare import THRESHOLDS, Comparison, LayerMatch, Thresholds, compare, compare_weights
from ._fingerprint import Fingerprint, fingerprint
from ._store import (
    FP_DERIVED,
    MAX_CONFIRMED,
    Edge,
    Lineage,
    Match,
    Similar,
    StoreLike,
    fingerprint_model,
    lineage,
    lineage_of,
    relate,
    similar,
    store_fingerprints,
    stored_fingerprints,
)
from ._weights import LineageError, ModelWeights, weights_from_store, weights_of

__all__ = [
    "FP_DERIVED",
    "MAX_CONFIRMED",
    "THRESHOLDS",
    "Comparison",
    "Edge",
    "Fingerprint",
    "LayerMatch",
    "Lineage",
    "LineageError",
    "Match",
    "ModelWeights",
    "Similar",
    "Thresholds",
    "compare",
    "compare_weights",
    "fingerprint",
    "fingerprint_model",
    "lineage",
    "lineage_of",
    "relate",
    "similar",
    "store_fingerprints",
    "stored_fingerprints",
    "weights_from_store",
    "weights_of",
]


class _CallableModule(ModuleType):
    """``filterdb.lineage`` is this package and, called, the :func:`lineage` function.

    Importing the package makes Python set ``filterdb.lineage`` to the module, which would shadow the
    function that ``filterdb.lineage(store)`` promises; a callable module keeps both spellings working.
    """

    def __call__(self, store: StoreLike, **kwargs: Any) -> Lineage:
        return lineage(store, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
