"""The default engine: a thread per core. The numba kernels release the GIL, so threads scale."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import UsageError

__all__ = ["Engine", "LocalEngine"]


class Engine:
    """Maps ``fn(item, *args)`` over items; results come back in item order."""

    name = "engine"

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release what the engine holds. Threads never outlive a ``map`` (its iterator joins them when it
        ends, fails or is closed); a Dask client the engine opened is closed here, or at the latest at exit."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class LocalEngine(Engine):
    """Threads on this machine.

    Parameters
    ----------
    n_threads : int, optional
        Worker threads; default one per available core. Memory use is about ``n_threads`` shards'
        touched pages plus a few KB of partial results per task.
    """

    name = "local"
    shares_page_cache = True  # its tasks run in this process: one may read ahead for the next

    def __init__(self, n_threads: int | None = None) -> None:
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise UsageError(f"n_threads must be an integer >= 1, got {n_threads!r}")
        self.n_threads = n_threads or _cpu_count()

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        items = list(items)
        if self.n_threads == 1 or len(items) <= 1:
            for item in items:
                yield fn(item, *args)
            return
        pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="filterdb")
        try:
            # a bounded window of submitted tasks keeps memory flat for any number of tasks
            window = 4 * self.n_threads
            futures: list[Any] = [pool.submit(fn, item, *args) for item in items[:window]]
            nxt = len(futures)
            for i in range(len(items)):
                result = futures[i].result()
                futures[i] = None  # drop the finished future so that its result can be freed
                if nxt < len(items):
                    futures.append(pool.submit(fn, items[nxt], *args))
                    nxt += 1
                yield result
        finally:
            # On every path (done, a task's error, KeyboardInterrupt, the caller dropping the iterator): cancel
            # the tasks not started and join the threads, so that none outlives the call (a thread still
            # running a task at interpreter exit can abort the process) and an error does not wait for the
            # rest of the window to run.
            pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> str:
        return f"local ({self.n_threads} thread{'s' if self.n_threads != 1 else ''})"
