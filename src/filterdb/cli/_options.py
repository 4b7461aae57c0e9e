"""The click options every command that selects filters shares, declared once.

``@selection_options(...)`` adds ``--shape``, ``--where``, ``-p/--param`` and ``--by`` (each optional) and
hands the command one frozen :class:`filterdb.analysis.Selection` as its ``selection`` argument instead
of the loose values; ``@execution_options`` does the same for ``--scheduler``, ``--threads``, ``--kernel``
and ``--task-rows`` (an :class:`filterdb.analysis.Execution` as ``execution``). A command switches to
them by replacing its own option lines with one decorator line and reading ``selection.where`` /
``selection.bound_params`` where it read ``where`` / ``params``.

filterdb.analysis is imported only when a command runs, so that ``--help`` and the store commands stay
fast to start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

if TYPE_CHECKING:
    from ..analysis import Selection

__all__ = ["PARAM_HELP", "PARAM_OPTION", "WHERE_HELP", "execution_options", "make_selection", "parse_params",
           "selection_options"]

F = TypeVar("F", bound=Callable[..., Any])

WHERE_HELP = "SQL predicate over the layers view, e.g. \"task = ?\" (`filterdb layers STORE` shows its columns)."
PARAM_HELP = "A value for a '?' in --where, in order (repeat). Values are bound, never spliced into the SQL."
SHAPE_HELP = "Kernel shape of the filters, e.g. 3x3, 5x5, 1x7."
# -p alone, for commands whose '?' placeholders are in their own SQL (filterdb sql), not in --where.
PARAM_OPTION = click.option("-p", "--param", "params", multiple=True,
                            help="A value for a '?' placeholder, in order (repeat). Values are bound, never "
                                 "spliced into the SQL text.")
BY_HELP = ("Group by: a column of the layers view (task, visual_category, ...), 'depth' (deciles of "
           "conv_depth_norm) or an SQL expression over those columns.")


def parse_params(params: tuple[str, ...] | list[str]) -> list[object] | None:
    """Command-line ``-p`` values as the values bound to ``?``: ints, then floats, else text; None if none."""
    if not params:
        return None
    out: list[object] = []
    for p in params:
        for convert in (int, float):
            try:
                out.append(convert(p))
                break
            except ValueError:
                continue
        else:
            out.append(p)
    return out


def make_selection(shape: str | None = None, where: str | None = None, params: tuple[str, ...] = (),
                   by: str | None = None) -> Selection:
    """A Selection from raw option values (``params`` as typed on the command line)."""
    from ..analysis import Selection

    return Selection(shape=shape, where=where, params=tuple(parse_params(params) or ()), by=by)


def selection_options(*, shape: str | None | Literal[False] = "3x3",
                      by: Literal["optional", "required", False] = False,
                      shape_help: str = SHAPE_HELP, by_help: str = BY_HELP) -> Callable[[F], F]:
    """Add the selection options to a click command, which then receives ``selection: Selection``.

    Parameters
    ----------
    shape : str, None or False
        The default of ``--shape`` (shown in --help); None: no default (every kernel shape); False: no
        ``--shape`` option (the selection's shape is None).
    by : "optional", "required" or False
        Whether the command has a ``--by`` option, and whether it must be given.
    shape_help, by_help : str
        The help texts of ``--shape`` and ``--by`` when a command needs its own wording.

    Examples
    --------
    >>> @click.command()
    ... @selection_options(by="optional")
    ... def cmd(selection):
    ...     click.echo(selection.to_dict())
    """
    options = []
    if shape is not False:
        options.append(click.option("--shape", default=shape, show_default=shape is not None, help=shape_help))
    options.append(click.option("--where", default=None, help=WHERE_HELP))
    options.append(click.option("-p", "--param", "params", multiple=True, help=PARAM_HELP))
    if by:
        options.append(click.option("--by", required=by == "required", default=None, help=by_help))

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            # pop only the options added here: a command may keep its own --by (report: repeatable axes)
            kwargs["selection"] = make_selection(kwargs.pop("shape") if shape is not False else None,
                                                 kwargs.pop("where"), kwargs.pop("params"),
                                                 kwargs.pop("by") if by else None)
            return fn(*args, **kwargs)

        wrapped: Any = command
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped

    return decorate


def execution_options(fn: F) -> F:
    """Add ``--scheduler``, ``--threads``, ``--kernel`` and ``--task-rows``; the command receives
    ``execution: Execution``."""
    options = [
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Run on a Dask cluster (tcp://host:8786); default: threads on this machine."),
        click.option("--threads", type=click.IntRange(1), default=None, help="Local threads (default: one per core)."),
        click.option("--kernel", type=click.Choice(["auto", "numba", "numpy"]), default="auto", show_default=True,
                     help="Compute kernel: auto (numba when installed), numba or numpy (same numbers to float32 "
                          "rounding)."),
        click.option("--task-rows", type=click.IntRange(1), default=4_000_000, show_default=True,
                     help="Filters per task: bounds memory and sets the scheduling granularity."),
    ]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        from ..analysis import Execution

        kwargs["execution"] = Execution(engine=kwargs.pop("scheduler"), kernel=kwargs.pop("kernel"),
                                        threads=kwargs.pop("threads"), task_rows=kwargs.pop("task_rows"))
        return fn(*args, **kwargs)

    wrapped: Any = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped
