"""The one exception hierarchy of filterdb.

Every error derives from :class:`FilterDBError` *and* from the closest builtin, so that callers can
catch either. Messages say what went wrong, with which file/model/layer, and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "FilterDBError",
    "ModelNotFoundError",
    "ModelFormatError",
    "UnsupportedFormatError",
    "UnsafeFormatError",
    "MissingDependencyError",
    "SourceError",
    "UsageError",
    "MemoryBudgetError",
    "suggest",
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


class MemoryBudgetError(ModelFormatError, MemoryError):
    """A model file declares more data than it can hold or than the memory budget allows (``--max-memory``).

    Raised before allocating, so a small hostile file cannot make filterdb allocate gigabytes.
    """


class MissingDependencyError(FilterDBError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


class SourceError(FilterDBError, RuntimeError):
    """A source name (``pypi:...``, ``timm:...``) could not be resolved to a local file."""


class UsageError(FilterDBError, ValueError):
    """A parameter, option, column name or query given by the user is wrong (the CLI exits with code 2).

    Raised for mistakes in *how* filterdb was called, as opposed to problems with a model file
    (:class:`ModelFormatError`, exit code 1).
    """


class AnalysisError(FilterDBError, ValueError):
    """An analysis cannot run on this selection: nothing selected, an unknown column, too few groups."""


def suggest(word: str, choices: "Iterable[str]", what: str = "name") -> str:
    """A "did you mean" phrase for an unknown ``word``: the closest of ``choices``, or the list if none is close.

    >>> suggest("taks", ["task", "model", "kernel"], "column")
    "unknown column 'taks'; did you mean 'task'?"
    """
    import difflib

    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    elif len(options) <= 12:
        hint = "choose from " + ", ".join(options)
    else:
        hint = f"{len(options)} are available, for example " + ", ".join(options[:8])
    return f"unknown {what} '{word}'; {hint}"


def missing_dependency(module: str, purpose: str, extra: str | None = None) -> MissingDependencyError:
    """Build the standard error for a lazily imported dependency.

    ``extra`` names the filterdb extra that installs it; None for core dependencies (a broken install).
    """
    fix = f"pip install 'filterdb[{extra}]'" if extra else f"pip install {module} (a core dependency of filterdb)"
    return MissingDependencyError(f"{purpose} needs the '{module}' package: {fix}")
