"""One-line callbacks that watch conv filters during training: :mod:`.lightning` and :mod:`.keras`.

Each wraps :class:`filterdb.Monitor`; the framework is imported only when its module is.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["keras", "lightning"]


def __getattr__(name: str) -> Any:  # `filterdb.integrations.lightning` without an explicit import
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'filterdb.integrations' has no attribute {name!r}")
