"""The writer lock: one writer at a time per store, across processes.

An advisory ``flock`` on ``STORE/write.lock``. The kernel releases it when the holder exits, however it
exits (SIGKILL included), so a crashed writer never leaves a stale lock behind. The holder writes its pid
into the file, only so that a waiting process can say who it is waiting for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from ._errors import StoreBusyError, write_error

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # platforms without fcntl: the lock is advisory only

__all__ = ["WriterLock"]


class WriterLock:
    """Exclusive, re-entrant (within one object) writer lock on a store directory."""

    def __init__(self, path: Path, *, timeout: float | None = 600.0, poll: float = 0.05) -> None:
        self.path = Path(path)
        self.timeout = timeout  # seconds to wait for another writer; None waits forever, 0 fails at once
        self.poll = poll
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid else "another process"

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only store (or file system): say so, not PermissionError
            raise write_error(self.path.parent, "taking the writer lock", e) from e
        if fcntl is None:  # pragma: no cover
            self._fd, self._depth = fd, 1
            return
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        delay = self.poll
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(fd)
                    raise StoreBusyError(
                        f"{self.path.parent}: another writer ({holder}) holds the store's writer lock; "
                        f"gave up after {self.timeout:g} s (wait longer with --wait SECONDS, or let it finish)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
        self._fd, self._depth = fd, 1
        try:  # only informative: a full disk must not leave the lock taken (and the fd leaked)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:  # pragma: no cover
            pass
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
