"""The store's folder: which files are its own, and the rule that it never follows a link out of it.

Stores are folders people copy, share and untar, so a store may arrive with ``tmp/``, ``shards/3x3`` or
``write.lock`` replaced by symbolic links. Everything that creates, truncates or deletes a file inside a
store goes through here: the store's own folders must be real folders (a link is refused, naming it), and
clean-up deletes only regular files whose names match the store's own patterns (:func:`own_files`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from ._errors import StoreError

__all__ = ["DATA_DIR", "HEX64", "KIND", "LEGACY_FINGERPRINT_DIR", "SHARDS_DIR", "TMP_DIR", "check_sha256",
           "check_kind", "own_dir", "own_files", "refuse_link"]

TMP_DIR = "tmp"
SHARDS_DIR = "shards"
DATA_DIR = "data"  # per-model data: data/<kind>/<sha256>.npz (see _model_data)
LEGACY_FINGERPRINT_DIR = "lineage"  # where filterdb <= 0.x wrote fingerprints: read, removed by rm and gc

HEX64 = re.compile(r"[0-9a-f]{64}")
KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_sha256(root: Path, value: object, what: str = "model sha256") -> str:
    """``value`` if it is a content address (64 lowercase hex digits): a catalog value that becomes a file
    name must never name a file elsewhere (``'../../x'`` from an edited catalog)."""
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise StoreError(f"{root}: the catalog holds a {what} {str(value)[:80]!r} that is not 64 hex digits; "
                         "refusing to use it as a file name (the catalog was edited or is hostile: "
                         f"`filterdb verify {root}` checks it)")
    return value


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        from ..errors import UsageError

        raise UsageError(f"per-model data kind {str(kind)[:40]!r}: use 1-32 lowercase letters, digits or '_'")
    return kind


def refuse_link(root: Path, path: Path) -> None:
    """Raise if ``path`` (inside the store) is a symbolic link; a missing path is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"{path}: cannot inspect the store's file ({e.strerror or e})") from None
    if stat.S_ISLNK(st.st_mode):
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        raise StoreError(f"{path}: '{rel}' inside the store {root} is a symbolic link; a store's own files and "
                         "folders must be real ones (a link would make clean-up delete or overwrite files "
                         f"elsewhere): replace it with a real folder or file, or copy the store with `cp -rL`")


def own_dir(root: Path, *parts: str, create: bool = False) -> Path:
    """A folder of the store (``tmp``, ``shards/3x3``, ``data/fingerprint``), each level checked not to be a
    link; created when ``create``."""
    path = root
    for part in parts:
        path = path / part
        refuse_link(root, path)
        if create:
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            refuse_link(root, path)  # created meanwhile by someone else: check again
            if not path.is_dir():
                raise StoreError(f"{path}: expected a folder of the store, found a file; the store was modified "
                                 "by hand")
    return path


def own_files(root: Path, folder: Path, pattern: re.Pattern[str]) -> Iterator[Path]:
    """The regular files directly in ``folder`` (a folder of the store, not a link) whose names match
    ``pattern``; anything else (links, folders, foreign names) is never returned, so never deleted."""
    refuse_link(root, folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            yield Path(entry.path)
