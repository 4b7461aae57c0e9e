"""Scheme registry and the local-path fallback."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._cache import cache_dir  # re-exported: filterdb.sources.cache_dir is where a source downloads to
from ..errors import ModelNotFoundError

__all__ = ["ResolvedSource", "cache_dir", "is_source_name", "register_source", "registered_schemes",
           "resolve_source", "source_scheme"]


@dataclass(frozen=True)
class ResolvedSource:
    """A local file that stands for what the user named."""

    spec: str  # what the user wrote
    path: Path  # the local file to read
    scheme: str  # "file", "pypi", ...


Resolver = Callable[[str], ResolvedSource]
_RESOLVERS: dict[str, Resolver] = {}
# "pypi:..." but not "C:\\x" / "C:/x" (a drive), "file://..." or "http://..." (a URL), "dir/a:b" (a path)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]+):(?![\\/])")


def register_source(scheme: str, resolver: Resolver) -> None:
    """Make ``scheme:REST`` resolvable by ``resolver(spec)``."""
    _RESOLVERS[scheme] = resolver


def registered_schemes() -> list[str]:
    """Known scheme names, e.g. ['pypi']."""
    return sorted(_RESOLVERS)


def source_scheme(text: str) -> str | None:
    """The scheme of a source name (``"pypi"`` for ``"pypi:pkg==1.0#file"``), or None for anything else.

    The one rule for "is this a source name?", used by every caller: ``scheme:rest`` where the scheme is
    two or more lower-case letters, digits, ``+``, ``.`` or ``-`` starting with a letter, and ``rest`` does
    not start with a slash. A Windows drive (``C:\\models\\a.onnx``), a URL (``https://...``) and a path
    with a colon after a folder (``runs/a:b.pt``) are not source names. Whether the scheme is registered
    does not matter here: :func:`resolve_source` reports an unknown one.
    """
    match = _SCHEME.match(text) if isinstance(text, str) else None
    return match.group(1) if match else None


def is_source_name(text: str) -> bool:
    """True when ``text`` is a ``scheme:rest`` source name (see :func:`source_scheme`), not a path."""
    return source_scheme(text) is not None


def resolve_source(spec: str) -> ResolvedSource:
    """Resolve a path or a ``scheme:...`` name to a local file (downloading and caching if needed)."""
    scheme = source_scheme(spec)
    if scheme is not None:
        resolver = _RESOLVERS.get(scheme)
        if resolver is not None:
            return resolver(spec)
        if not Path(spec).exists():
            raise ModelNotFoundError(
                f"{spec}: unknown source scheme {scheme!r} and no such file; "
                f"known schemes: {', '.join(registered_schemes())}"
            )
    return ResolvedSource(spec=spec, path=Path(spec).expanduser(), scheme="file")
