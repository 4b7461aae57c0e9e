"""Dask distributed: one task per group of shards, small partial results merged on the client.

Each task opens its own shards on the worker (the store must be on a file system that the workers see
under the same path), so no filter data travels through the scheduler: a task returns a few KB.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import FilterDBError, missing_dependency
from .local import Engine

__all__ = ["DaskEngine", "SchedulerError"]


class SchedulerError(FilterDBError, ConnectionError):
    """The Dask scheduler cannot be reached."""


class DaskEngine(Engine):
    """Run tasks on a Dask cluster.

    Parameters
    ----------
    client : str or distributed.Client or distributed.LocalCluster
        A scheduler address (``"tcp://10.0.0.1:8786"``), a connected client, or a cluster object.

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> engine = DaskEngine(Client(LocalCluster(n_workers=2, threads_per_worker=1)))  # doctest: +SKIP
    """

    name = "dask"

    def __init__(self, client: Any, *, timeout: str = "20s") -> None:
        try:
            import distributed
        except ImportError as e:
            raise missing_dependency("distributed", "running analyses on Dask", extra="dask") from e
        self._owned = False
        if isinstance(client, distributed.Client):
            self.client = client
        elif isinstance(client, str):
            try:
                self.client = distributed.Client(client, timeout=timeout)
            except OSError as e:
                raise SchedulerError(
                    f"cannot reach the Dask scheduler at {client!r} ({e}); start one with `dask scheduler` "
                    "or leave out --scheduler to run on this machine"
                ) from e
            self._owned = True
        elif hasattr(client, "scheduler_address"):
            self.client = distributed.Client(client)
            self._owned = True
        else:
            raise TypeError(f"expected a scheduler address, a distributed.Client or a cluster, got {type(client).__name__}")
        # A client this engine made is closed with it, or at the latest at exit (weakref.finalize runs then):
        # its threads must not outlive the interpreter. A client passed in stays the caller's to close.
        self._finalizer = weakref.finalize(self, self.client.close) if self._owned else None

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        items = list(items)
        extra = [[a] * len(items) for a in args]
        futures: list[Any] = self.client.map(fn, items, *extra, pure=False)
        try:
            for i, future in enumerate(futures):
                yield future.result()
                futures[i] = None  # release the result on the cluster as soon as it is merged
        finally:
            live = [f for f in futures if f is not None]
            if live:
                self.client.cancel(live)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # closes the client once, however often close() is called

    def describe(self) -> str:
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return f"dask ({self.client.scheduler.address}, {len(workers)} workers, {threads} threads)"
