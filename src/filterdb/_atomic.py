"""Atomic file writes: the one way filterdb writes a file that someone may be reading.

Every writer goes through :func:`atomic_write` (a file object), :func:`atomic_path` (a path, for libraries
that write to a path themselves, such as ``torch.save``) or the two shortcuts for text and bytes. The
policy, in one place:

- The data goes to a hidden temporary file in the target's folder (same file system, so the rename is
  atomic), named ``.<name>.<random>.tmp``.
- It is flushed and ``fsync``-ed before the rename: after a crash the name holds the old file or the
  complete new one, never a torn one. The folder is not fsync-ed: a power loss right after the rename may
  bring the old file back, which readers handle anyway.
- The new file gets the permissions of a file created normally (``0o666 & ~umask``), not the ``0o600``
  of a temporary file.
- ``os.replace`` puts it in place, over an existing file. On any exception inside the block the
  temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import codecs
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import UsageError

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _temporary(target: Path) -> tuple[int, Path]:
    folder = target.parent if str(target.parent) else Path(".")
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    return fd, Path(name)


def _publish(tmp: Path, target: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on success it is fsync-ed and renamed over ``path``.

    For writers that take a path (``torch.save``, ``torch.onnx.export``, ``np.savez``). The file exists
    (empty) when the block starts; the block must leave a file there.

    Examples
    --------
    >>> with atomic_path("model.onnx") as tmp:  # doctest: +SKIP
    ...     torch.onnx.export(model, args, str(tmp))
    """
    target = Path(os.fspath(path))
    fd, tmp = _temporary(target)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        _publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = None,
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : path
        The file to write. Its folder must exist.
    mode : "w" or "wb", default "w"
        Text or binary.
    encoding, newline : str, optional
        As for :func:`open` in text mode (``encoding`` defaults to UTF-8 there).

    Examples
    --------
    >>> with atomic_write("notes.txt") as fh:  # doctest: +SKIP
    ...     fh.write("done\\n")
    """
    if mode not in ("w", "wb"):
        raise UsageError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    target = Path(os.fspath(path))
    encoding = encoding or "utf-8"
    codecs.lookup(encoding)  # an unknown encoding fails here, before a temporary file exists
    fd, tmp = _temporary(target)
    try:
        fh: IO[Any] = (os.fdopen(fd, "wb") if mode == "wb"
                       else os.fdopen(fd, "w", encoding=encoding, newline=newline))
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
    return Path(os.fspath(path))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(os.fspath(path))
