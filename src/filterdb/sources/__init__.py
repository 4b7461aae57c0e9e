"""Sources turn what a user names (a path, ``pypi:pkg==1.0#file``, ``hf:``/``timm:``/``torchvision:`` names)
into a local file.

One private module per scheme, registered in ``_registry``.
"""

from __future__ import annotations

from . import _hf, _pypi, _timm, _torchvision  # noqa: F401  (registration)
from ._registry import (ResolvedSource, cache_dir, is_source_name, register_source, registered_schemes,
                        resolve_source, source_scheme)

__all__ = ["ResolvedSource", "cache_dir", "is_source_name", "register_source", "registered_schemes",
           "resolve_source", "source_scheme"]
