"""What an analysis reads (:class:`Selection`) and how it runs (:class:`Execution`), as frozen values.

Every analysis takes the same two objects instead of a dozen loose keywords, so that one selection can
be handed from the CLI to PCA, drift and degeneration alike, printed, compared and stored with a result.
Both validate on construction: a mistake is a :class:`filterdb.errors.UsageError` naming the parameter
and what it allows (the CLI turns it into one error line and exit code 2).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._kernel import parse_kernel_key
from ..errors import FilterDBError, UsageError

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


class AnalysisError(FilterDBError, ValueError):
    """An analysis cannot run on this selection: nothing selected, an unknown column, too few groups."""


class SelectionError(AnalysisError, UsageError):
    """The selection itself is misspelt (an unknown column, a malformed kernel shape): a usage error."""


def shape_width(shape: str) -> int:
    """Values per filter of a kernel shape key: ``'3x3'`` -> 9; a :class:`SelectionError` if malformed."""
    try:
        return parse_kernel_key(shape, what="shape").width
    except UsageError as error:  # the selection's own error type, which is also a UsageError
        raise SelectionError(str(error)) from None


def one_of(name: str, value: Any, choices: Sequence[str]) -> str:
    """The message for a parameter outside its choices: names it, lists them, suggests the closest."""
    quoted = [f"'{c}'" for c in choices]
    allowed = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f"{name} must be {allowed}, got {value!r}" + (f" (did you mean '{close[0]}'?)" if close else "")


def _text_or_none(name: str, value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} must be {what} or None, got {value!r}")
    return value.strip()


def _optional_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return value


@dataclass(frozen=True)
class Selection:
    """Which filters an analysis reads and how it groups them.

    Parameters
    ----------
    shape : str or None, default "3x3"
        Kernel shape key ("3x3", "5x5", "1x7"). None: every 2-D kernel shape (only analyses that read
        no filter values accept it, e.g. :func:`degeneration`).
    where : str, optional
        SQL predicate over the ``layers`` view, with ``?`` placeholders for values.
    params : sequence, optional
        The values bound to the ``?`` of ``where``, in order (never spliced into the SQL text). Stored
        as a tuple.
    by : str, optional
        Grouping axis: a column of the ``layers`` view, ``"depth"`` (deciles of conv_depth_norm) or an
        SQL expression over those columns. None: one group, "all".
    groups : sequence of str, optional
        Only these groups (values of ``by`` as text), in this order. Needs ``by``.

    Raises
    ------
    filterdb.errors.UsageError
        A malformed shape, a non-text predicate or axis, params without ``where``, groups without ``by``.

    Examples
    --------
    >>> sel = Selection(where="task = ?", params=["Classification"], by="visual_category")
    >>> sel.params
    ('Classification',)
    >>> sel.replace(by=None).by is None
    True
    """

    shape: str | None = "3x3"
    where: str | None = None
    params: tuple[Any, ...] = ()
    by: str | None = None
    groups: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.shape is not None:
            shape_width(self.shape)
        set_ = object.__setattr__  # frozen: normalise in place once, here
        where = None if isinstance(self.where, str) and not self.where.strip() else self.where  # "" selects all
        set_(self, "where", _text_or_none("where", where, "an SQL predicate over the layers view"))
        set_(self, "by", _text_or_none("by", self.by, "a column of the layers view, 'depth' or an SQL expression"))
        params = self.params
        if params is None:
            params = ()
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            raise UsageError(f"params must be a list of values for the '?' of where, got {params!r}")
        set_(self, "params", tuple(params))
        if self.params and self.where is None:
            raise UsageError(f"params {list(self.params)!r} given without a where predicate to bind them to")
        if self.groups is not None:
            if isinstance(self.groups, (str, bytes)) or not isinstance(self.groups, Sequence):
                raise UsageError(f"groups must be a list of group names, got {self.groups!r}")
            if self.by is None:
                raise UsageError("groups needs by: the axis whose values they name")
            set_(self, "groups", tuple(str(g) for g in self.groups))

    @property
    def shape_key(self) -> str:
        """``shape``, for analyses that need one (a UsageError when it is None)."""
        if self.shape is None:
            raise UsageError("this analysis needs a kernel shape (e.g. shape='3x3'), the selection has none")
        return self.shape

    @property
    def d(self) -> int:
        """Values per filter of ``shape``."""
        return shape_width(self.shape_key)

    @property
    def bound_params(self) -> list[Any] | None:
        """``params`` as the list :meth:`Store.sql` binds, or None."""
        return list(self.params) if self.params else None

    def replace(self, **changes: Any) -> Selection:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (``params`` and ``groups`` as lists)."""
        return {"shape": self.shape, "where": self.where, "params": list(self.params), "by": self.by,
                "groups": None if self.groups is None else list(self.groups)}


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
