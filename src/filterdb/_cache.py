"""``cache_dir``: filterdb's one cache folder, shared by the sources' downloads, the demo and the report's figures.

A neutral module below every layer that keeps files there, so that none of them imports another for its path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Where filterdb caches files: $FILTERDB_CACHE_DIR, else the user's cache dir (``platformdirs``)."""
    env = os.environ.get("FILTERDB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("filterdb"))
