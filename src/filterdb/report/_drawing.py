"""Drawing a report's figures in worker processes while the report computes its next numbers.

matplotlib draws in one thread per process, and a zoo report draws dozens of figures (one per model): on
Linux a small pool of forked workers draws them in parallel with the analyses of the main process. Jobs
are a plotting function's name and its (picklable) result objects; a worker builds the Figure, renders
the PNG and sends back a :class:`~filterdb.report._html.Rendered`. The pool is forked when the report
starts; its workers only draw (matplotlib, numpy, pandas on the data sent to them) and never touch the
store, DuckDB or the analysis threads of the parent. Elsewhere (no ``fork``), or with ``workers=0``,
figures are drawn in the calling process when the page asks for them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from ._html import Rendered, render_figure

__all__ = ["Drawer", "default_workers"]


def default_workers() -> int:
    """Worker processes for drawing: one per CPU up to 4 on Linux (fork), none elsewhere."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return min(4, cpus) if cpus > 1 else 0


def draw(make: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], dpi: float) -> Rendered:
    """Build a figure with ``make(*args, **kwargs)`` and render it (the job a worker runs)."""
    return render_figure(make(*args, **kwargs), dpi=dpi)


class _Later:
    """A figure drawn in this process the first time the page asks for it."""

    def __init__(self, make: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], dpi: float) -> None:
        self.job: tuple[Any, ...] | None = (make, args, kwargs, dpi)
        self.done: Rendered | None = None

    def result(self) -> Rendered:
        if self.done is None:
            assert self.job is not None
            self.done, self.job = draw(*self.job), None
        return self.done


class Drawer:
    """Submits figure jobs to worker processes (or defers them); use as a context manager.

    Examples
    --------
    >>> from filterdb.plotting import drift_boxplots          # doctest: +SKIP
    >>> with Drawer(workers=2) as drawer:                        # doctest: +SKIP
    ...     pending = drawer.submit(drift_boxplots, [result])    # doctest: +SKIP
    ...     png = pending.result().png                           # doctest: +SKIP
    """

    def __init__(self, workers: int | None = None) -> None:
        n = default_workers() if workers is None else int(workers)
        if n < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        self.pool: ProcessPoolExecutor | None = None
        if n and "fork" in _start_methods():
            import multiprocessing

            with warnings.catch_warnings():
                # Python >= 3.12 warns about forking a process with threads (DuckDB's, the engine's): the
                # workers only draw on the data sent to them, so no lock of those threads is ever taken.
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
                self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))
                self.pool.submit(int).result()  # fork every worker now, before the analyses start threads

    def submit(self, make: Callable[..., Any], *args: Any, dpi: float = 110, **kwargs: Any) -> Future[Rendered] | _Later:
        """Draw ``make(*args, **kwargs)``; returns an object whose ``result()`` is the :class:`Rendered`."""
        if self.pool is None:
            return _Later(make, args, kwargs, dpi)
        return self.pool.submit(draw, make, args, kwargs, dpi)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()
