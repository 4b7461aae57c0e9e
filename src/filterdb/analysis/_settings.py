"""How an analysis runs (:class:`Execution`), as a frozen value, and the adapters of the older loose keywords.

What an analysis reads is a :class:`filterdb.selection.Selection` (re-exported here): the same object travels from
the CLI to the store's read plan. Both validate on construction: a mistake is a
:class:`filterdb.errors.UsageError` naming the parameter and what it allows (exit code 2 in the CLI).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AnalysisError, UsageError
from ..selection import Selection, SelectionError, shape_width

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "DEFAULT_TASK_ROWS",
    "KERNELS",
    "AnalysisError",
    "Execution",
    "Selection",
    "SelectionError",
    "execution_of",
    "one_of",
    "selection_of",
    "shape_width",
]

KERNELS = ("auto", "numba", "numpy")
DEFAULT_TASK_ROWS = 4_000_000


def one_of(name: str, value: Any, choices: Sequence[str]) -> str:
    """The message for a parameter outside its choices: names it, lists them, suggests the closest."""
    quoted = [f"'{c}'" for c in choices]
    allowed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f"{name} must be {allowed}, got {value!r}" + (f" (did you mean '{close[0]}'?)" if close else "")


def _optional_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return value


@dataclass(frozen=True)
class Execution:
    """Where and how an analysis computes; it never changes the numbers beyond float32 rounding.

    Parameters
    ----------
    engine : None, "local", a scheduler address, a distributed.Client or an Engine
        None or "local": threads on this machine. See :func:`filterdb.engine.get_engine`.
    kernel : {"auto", "numba", "numpy"}, default "auto"
        The compute kernel; "auto" uses numba when installed (``FILTERDB_KERNEL`` overrides it).
    threads : int, optional
        Threads of the local engine (default: one per core); ignored by Dask.
    task_rows : int, default 4,000,000
        Filters per task: bounds memory and sets the scheduling granularity.

    Raises
    ------
    filterdb.errors.UsageError
        An unknown kernel, a thread count or task size below 1.

    Examples
    --------
    >>> Execution(kernel="numpy", threads=2).make_engine().describe()
    'local (2 threads)'
    """

    engine: Any = None
    kernel: str = "auto"
    threads: int | None = None
    task_rows: int = DEFAULT_TASK_ROWS

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise UsageError(one_of("kernel", self.kernel, KERNELS))
        _optional_count("threads", self.threads)
        _optional_count("task_rows", self.task_rows)
        if self.task_rows is None:
            raise UsageError(f"task_rows must be an integer >= 1, got None (default {DEFAULT_TASK_ROWS:,})")

    def make_engine(self) -> Engine:
        """The :class:`filterdb.engine.Engine` to run on (built anew: cheap for threads)."""
        from ..engine import get_engine

        return get_engine(self.engine, n_threads=self.threads)

    def kernel_name(self) -> str:
        """'numba' or 'numpy': the kernel that runs (``auto`` resolved)."""
        from .kernels import resolve_kernel

        return resolve_kernel(self.kernel)

    def replace(self, **changes: Any) -> Execution:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def selection_of(selection: Selection | None, **loose: Any) -> Selection:
    """``selection``, or one built from the loose keywords of the older API; both at once is a usage error."""
    defaults = {"shape": "3x3", "where": None, "params": None, "by": None, "groups": None}
    if selection is None:
        if loose.get("params") is not None:
            loose["params"] = tuple(loose["params"])
        return Selection(**loose)
    if not isinstance(selection, Selection):
        raise UsageError(f"selection must be a filterdb.analysis.Selection, got {type(selection).__name__}")
    clash = [k for k, v in loose.items() if v != defaults.get(k) and not (k == "params" and not v)]
    if clash:
        raise UsageError(f"give either selection= or {', '.join(clash)}=, not both (put them in the Selection)")
    return selection


def execution_of(execution: Execution | None, **loose: Any) -> Execution:
    """``execution``, or one built from the loose keywords of the older API; both at once is a usage error."""
    defaults = {"engine": None, "kernel": "auto", "threads": None, "task_rows": DEFAULT_TASK_ROWS}
    if execution is None:
        return Execution(**loose)
    if not isinstance(execution, Execution):
        raise UsageError(f"execution must be a filterdb.analysis.Execution, got {type(execution).__name__}")
    clash = [k for k, v in loose.items() if v is not defaults[k] and v != defaults[k]]
    if clash:
        raise UsageError(f"give either execution= or {', '.join(clash)}=, not both (put them in the Execution)")
    return execution
