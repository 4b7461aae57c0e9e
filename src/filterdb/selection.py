"""What an analysis reads: one frozen :class:`Selection`, from the command line to the store's read plan.

A neutral module below both ``store/`` and ``analysis/``: the CLI builds a Selection (``cli/_options.py``),
the analyses hand it on unchanged, and the store turns it into SQL (:meth:`filterdb.store.Store.segments`:
``kernel = ? AND (where)``, the quoted column of ``by``, the depth deciles). Nothing else writes selection SQL.

The depth-decile axis is defined here once, as data (:data:`DEPTH_LABELS` and :data:`DEPTH_EDGES`); the
store writes it as one SQL expression (``store/_segments.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._kernel import parse_kernel_key
from .errors import AnalysisError, UsageError

__all__ = ["DEPTH_AXIS", "DEPTH_EDGES", "DEPTH_LABELS", "Selection", "SelectionError", "shape_width"]

DEPTH_AXIS = "depth"  # ``by="depth"``: deciles of conv_depth_norm (unless the layers view has a "depth" column)
# Deciles of conv_depth_norm: [0, 0.1], (0.1, 0.2], ..., (0.9, 1.0]; values outside [0, 1] go to the end deciles.
DEPTH_EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEPTH_LABELS = tuple(["[0.0, 0.1]"] + [f"({i / 10:.1f}, {(i + 1) / 10:.1f}]" for i in range(1, 10)])


class SelectionError(AnalysisError, UsageError):
    """The selection itself is misspelt (an unknown column, a malformed kernel shape): a usage error."""


def shape_width(shape: str) -> int:
    """Values per filter of a kernel shape key: ``'3x3'`` -> 9; a :class:`SelectionError` if malformed."""
    try:
        return parse_kernel_key(shape, what="shape").width
    except UsageError as error:  # the selection's own error type, which is also a UsageError
        raise SelectionError(str(error)) from None


def _text_or_none(name: str, value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} must be {what} or None, got {value!r}")
    return value.strip()


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
