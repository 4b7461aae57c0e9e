"""filterdb: read, check, store and analyse the trained convolution filters of CNNs."""

from __future__ import annotations

from typing import Any

from ._read import read_model
from .errors import (
    FilterDBError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    SourceError,
    UnsafeFormatError,
    UnsupportedFormatError,
)
from .types import ConvLayer, ModelInfo, ModelRecord


def __getattr__(name: str) -> Any:  # lazy re-exports keep `import filterdb` light
    if name == "check":  # the module filterdb.check, callable as the check(model) function (filterdb/_api.py)
        import importlib

        return importlib.import_module(".check", __name__)
    if name in ("check_model", "Thresholds", "failing"):
        from . import check

        return getattr(check, name)
    if name == "layer_metrics":
        from .metrics import layer_metrics

        return layer_metrics
    if name == "ingest_record":  # one in-memory model into a store, metrics computed as `filterdb ingest` does
        from .ingest import ingest_record

        return ingest_record
    if name == "Monitor":
        from .monitor import Monitor

        return Monitor
    if name in ("monitor", "integrations"):  # `filterdb.integrations.lightning.FilterMonitor()` after `import filterdb`
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name in ("open_store", "init_store", "Store", "StoreError"):
        from . import store

        return getattr(store, name)
    if name in ("prune_plan", "PrunePlan"):  # data-free prune plans (docs/prune.md)
        from . import prune

        return getattr(prune, name)
    if name in ("study", "Study", "StudySettings", "Selection"):  # the whole study of a store (docs/analysis.md)
        import importlib

        return getattr(importlib.import_module(".analysis.study", __name__), name)
    if name in ("compare", "similar", "lineage"):  # model similarity and lineage (docs/lineage.md)
        import importlib

        package = importlib.import_module(".lineage", __name__)
        # filterdb.lineage is the package itself, callable as the lineage() function
        return package if name == "lineage" else getattr(package, name)
    raise AttributeError(f"module 'filterdb' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "ConvLayer",
    "FilterDBError",
    "Store",
    "StoreError",
    "Thresholds",
    "check",
    "check_model",
    "compare",
    "lineage",
    "similar",
    "study",
    "Study",
    "StudySettings",
    "Selection",
    "failing",
    "ingest_record",
    "init_store",
    "layer_metrics",
    "open_store",
    "MissingDependencyError",
    "ModelFormatError",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelRecord",
    "Monitor",
    "PrunePlan",
    "prune_plan",
    "SourceError",
    "UnsafeFormatError",
    "UnsupportedFormatError",
    "read_model",
    "__version__",
]
