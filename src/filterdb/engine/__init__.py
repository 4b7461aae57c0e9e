"""Where the analyses run: threads on this machine (default) or a Dask cluster.

An engine maps a picklable task function over tasks and yields the results *in task order*, so that the
client merges partial results in the same order whichever engine ran them (bit-identical totals).
"""

from __future__ import annotations

from typing import Any

from .local import Engine, LocalEngine

__all__ = ["Engine", "LocalEngine", "DaskEngine", "get_engine"]


def __getattr__(name: str) -> Any:
    if name == "DaskEngine":
        from .dask import DaskEngine

        return DaskEngine
    raise AttributeError(name)


def get_engine(engine: Any = None, *, n_threads: int | None = None) -> Engine:
    """An engine from what a user passes.

    ``None`` or ``"local"``: threads on this machine (``n_threads``, default one per core). A scheduler
    address (``"tcp://host:8786"``), a ``distributed.Client`` or a ``LocalCluster``: Dask. An
    :class:`Engine` passes through.
    """
    if engine is None or engine == "local":
        return LocalEngine(n_threads)
    if isinstance(engine, Engine):
        return engine
    from .dask import DaskEngine

    return DaskEngine(engine)
