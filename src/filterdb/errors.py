"""The one exception hierarchy of filterdb.

Every error derives from :class:`FilterDBError` *and* from the closest builtin, so that callers can
catch either. Messages say what went wrong, with which file/model/layer, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "FilterDBError",
    "ModelNotFoundError",
    "ModelFormatError",
    "UnsupportedFormatError",
    "UnsafeFormatError",
    "MissingDependencyError",
    "SourceError",
]


class FilterDBError(Exception):
    """Base class of every error raised on purpose by filterdb."""


class ModelNotFoundError(FilterDBError, FileNotFoundError):
    """A model path or source name points to nothing."""


class ModelFormatError(FilterDBError, ValueError):
    """A model file exists but cannot be read: truncated, corrupt, or not what its name says."""


class UnsupportedFormatError(ModelFormatError):
    """No reader recognises the file."""


class UnsafeFormatError(FilterDBError, PermissionError):
    """Reading the file would execute untrusted code (pickle) and the user did not allow it."""


class MissingDependencyError(FilterDBError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


class SourceError(FilterDBError, RuntimeError):
    """A source name (``pypi:...``, ``timm:...``) could not be resolved to a local file."""


def missing_dependency(module: str, purpose: str, extra: str | None = None) -> MissingDependencyError:
    """Build the standard error for a lazily imported dependency.

    ``extra`` names the filterdb extra that installs it; None for core dependencies (a broken install).
    """
    fix = f"pip install 'filterdb[{extra}]'" if extra else f"pip install {module} (a core dependency of filterdb)"
    return MissingDependencyError(f"{purpose} needs the '{module}' package: {fix}")
