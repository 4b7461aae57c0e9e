"""The writer lock: one writer at a time per store, across processes.

An advisory ``flock`` on ``STORE/write.lock``. The kernel releases it when the holder exits, however it
exits (SIGKILL included), so a crashed writer never leaves a stale lock behind. The holder writes its pid
into the file, only so that a waiting process can say who it is waiting for.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from ._errors import StoreBusyError, StoreError, write_error

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # platforms without fcntl: the lock is advisory only

__all__ = ["READ_LOCK_FILE", "ReaderLease", "WriterLock", "no_readers", "open_lock_file"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_lock_file(path: Path, flags: int, doing: str) -> int:
    """Open (create) a lock file of the store, never through a symbolic link (a link would make the lock
    truncate the file it points to) and only if it is a regular file."""
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise StoreError(f"{path}: the store's lock file is a symbolic link; a store's own files must be "
                             "real ones (a link would make the lock overwrite the file it points to): delete "
                             "the link, filterdb creates the lock file again") from None
        raise write_error(path.parent, doing, e) from e  # a read-only store (or file system): say so
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path}: the store's lock file is not a regular file; delete it, filterdb creates it "
                         "again")
    return fd


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
        fd = open_lock_file(self.path, os.O_RDWR, "taking the writer lock")
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


class ReaderLease:
    """A reader's hold on the files of its snapshot: a shared ``flock`` on ``STORE/read.lock``, taken before a
    read plan is made and kept until the store is closed (or the process ends, however it ends).

    ``rm`` deletes catalog rows at once but a removed model's files only while no lease is held
    (:func:`no_readers`); otherwise they stay, unreferenced, until a later writer finds no reader. So a
    running analysis always reads the store as it was when it made its plan. On a store that cannot be
    written (no lock file, read-only file system) nobody can remove anything, and no lease is needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None or fcntl is None:
            return
        try:
            fd = open_lock_file(self.path, os.O_RDONLY, "taking a reader lease")
        except StoreError as e:
            if isinstance(e, OSError):  # StoreWriteError: a read-only store: nothing can be removed from it
                return
            raise
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a writer deletes files (milliseconds)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def __del__(self) -> None:  # a store dropped without close(): its lease ends with it
        self.release()


READ_LOCK_FILE = "read.lock"


class no_readers:  # noqa: N801 - used as a context manager, like contextlib's
    """``with no_readers(root) as free:``: ``free`` is True when no reader lease is held; no new lease can be
    taken until the block ends (so the files of removed models can be deleted inside it)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / READ_LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> bool:
        if fcntl is None:  # pragma: no cover - no flock: readers cannot be seen, keep the files
            return False
        self._fd = open_lock_file(self.path, os.O_RDONLY, "checking for readers")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
