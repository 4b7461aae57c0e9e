"""Scheme registry and the local-path fallback."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelNotFoundError

__all__ = ["ResolvedSource", "register_source", "registered_schemes", "resolve_source", "cache_dir"]


@dataclass(frozen=True)
class ResolvedSource:
    """A local file that stands for what the user named."""

    spec: str  # what the user wrote
    path: Path  # the local file to read
    scheme: str  # "file", "pypi", ...


Resolver = Callable[[str], ResolvedSource]
_RESOLVERS: dict[str, Resolver] = {}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):(?!//)(?![\\/])")  # "pypi:..." but not "C:\" or "file://"


def register_source(scheme: str, resolver: Resolver) -> None:
    """Make ``scheme:REST`` resolvable by ``resolver(spec)``."""
    _RESOLVERS[scheme] = resolver


def registered_schemes() -> list[str]:
    """Known scheme names, e.g. ['pypi']."""
    return sorted(_RESOLVERS)


def cache_dir() -> Path:
    """Where downloads are cached: $FILTERDB_CACHE_DIR, else the user's cache dir."""
    env = os.environ.get("FILTERDB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("filterdb"))


def resolve_source(spec: str) -> ResolvedSource:
    """Resolve a path or a ``scheme:...`` name to a local file (downloading and caching if needed)."""
    match = _SCHEME.match(spec)
    if match and len(match.group(1)) > 1:  # a one-letter "scheme" is a Windows drive
        scheme = match.group(1)
        resolver = _RESOLVERS.get(scheme)
        if resolver is not None:
            return resolver(spec)
        if not Path(spec).exists():
            raise ModelNotFoundError(
                f"{spec}: unknown source scheme {scheme!r} and no such file; "
                f"known schemes: {', '.join(registered_schemes())}"
            )
    return ResolvedSource(spec=spec, path=Path(spec).expanduser(), scheme="file")
