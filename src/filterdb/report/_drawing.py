"""Drawing a report's figures in worker processes while the page is laid out.

matplotlib draws in one thread per process, and a zoo report draws dozens of figures (one per model, and each
main figure for a desktop and a phone): on Linux a small pool of forked workers draws them in parallel. Jobs
are a plotting function's name and its (picklable) result objects; a worker builds the Figure, renders
the PNG and sends back a :class:`~filterdb.report._html.Rendered`. The pool is forked when the report
starts; its workers only draw (matplotlib, numpy, pandas on the data sent to them) and never touch the
store, DuckDB or the analysis threads of the parent. Elsewhere (no ``fork``), or with ``workers=0``,
figures are drawn in the calling process when the page asks for them.

With a cache folder, a job submitted with a ``key`` (a digest of everything the figure depends on: its
input data, the drawing code, matplotlib's version, the dpi) is drawn once: later reports read the PNG
back, so a report of an unchanged store redraws only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .._atomic import atomic_write_bytes
from ..errors import UsageError
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

    def __init__(self, workers: int | None = None, cache: str | os.PathLike[str] | None = None) -> None:
        self.cache = Path(cache) if cache is not None else None
        n = default_workers() if workers is None else int(workers)
        if n < 0:
            raise UsageError(f"workers must be an integer >= 0, got {workers!r}")
        self.pool: ProcessPoolExecutor | None = None
        if n and "fork" in _start_methods():
            import multiprocessing

            with warnings.catch_warnings():
                # Python >= 3.12 warns about forking a process with threads (DuckDB's, the engine's): the
                # workers only draw on the data sent to them, so no lock of those threads is ever taken.
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
                self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"))
                self.pool.submit(int).result()  # fork every worker now, before the analyses start threads

    def submit(self, make: Callable[..., Any], *args: Any, dpi: float = 110, key: str | None = None,
               **kwargs: Any) -> Any:
        """Draw ``make(*args, **kwargs)``; returns an object whose ``result()`` is the :class:`Rendered`.

        ``key``: a digest of the figure's inputs; with a cache folder the figure is read from there when
        present and stored there once drawn.
        """
        if key is not None and self.cache is not None:
            key = hashlib.sha256(f"{key}|{dpi}|{_code_digest()}".encode()).hexdigest()
            found = _read_cached(self.cache, key)
            if found is not None:
                return found
        pending = _Later(make, args, kwargs, dpi) if self.pool is None else self.pool.submit(draw, make, args, kwargs,
                                                                                             dpi)
        return pending if key is None or self.cache is None else _Caching(pending, self.cache, key)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Caching:
    """A pending figure that is written to the cache folder when it is first asked for."""

    def __init__(self, pending: Any, folder: Path, key: str) -> None:
        self.pending, self.folder, self.key = pending, folder, key
        self.done: Rendered | None = None

    def result(self) -> Rendered:
        if self.done is None:
            self.done = self.pending.result()
            try:
                _write_cached(self.folder, self.key, self.done)
            except OSError:  # a read-only or full cache costs speed next time, never the report
                pass
        return self.done


def _read_cached(folder: Path, key: str) -> Rendered | None:
    try:
        meta = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        png = (folder / f"{key}.png").read_bytes()
        return Rendered(png, float(meta["width_in"]), float(meta["dpi"]), float(meta["smallest_pt"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cached(folder: Path, key: str, done: Rendered) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"width_in": done.width_in, "dpi": done.dpi, "smallest_pt": done.smallest_pt})
    for name, data in ((f"{key}.png", done.png), (f"{key}.json", meta.encode())):  # the PNG first: JSON = complete
        atomic_write_bytes(folder / name, data)


_DIGEST: list[str] = []


def _code_digest() -> str:
    """The drawing code's identity: the sources of the plotting and report modules (the report draws each model's
    figure from its catalog rows) and matplotlib's version."""
    if not _DIGEST:
        import matplotlib

        from .. import plotting

        h = hashlib.sha256(matplotlib.__version__.encode())
        for folder in (Path(plotting.__file__).parent, Path(__file__).parent):
            for path in sorted(folder.glob("*.py")):
                h.update(path.read_bytes())
        _DIGEST.append(h.hexdigest())
    return _DIGEST[0]


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()
