"""The store's maintenance operations, as functions of an open :class:`Store`: naming and removing models,
collecting garbage, and the per-model data (``verify_store`` is in :mod:`._verify`).

They are functions, not methods, so that :class:`Store` keeps to opening, querying, planning reads and
ingesting (docs/store.md); each takes the writer lock itself where it writes, and every SQL statement goes
through the store's :class:`Catalog`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import StoreError, write_error
from ._lock import WriterLock, no_readers
from ._model_data import data_files, read_model_data, write_model_data
from ._paths import check_sha256
from ._shards import collect_garbage, remove_files, shard_path

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["add_aliases", "gc_store", "model_data", "put_model_data", "remove_models", "resolve_models"]


def add_aliases(store: Store, entries: Sequence[tuple[str, str, str | None]]) -> None:
    """Record each ``(sha256, name, source)``: the same bytes met again under another name or source (the
    ``aliases`` column of ``models``, the ``model_names`` view). Known pairs and unknown hashes are ignored."""
    with store.writer():
        store.catalog.add_names([(sha, str(name), source) for sha, name, source in entries])


def resolve_models(store: Store, model: str | int) -> list[int]:
    """Model ids named by an id, a sha256 prefix (>= 8 hex digits) or a name (all its versions); a
    :class:`StoreError` when none."""
    text = str(model).strip()
    ids = store.catalog.resolve(text)
    if not ids:
        raise StoreError(f"{store.root}: no model {text!r} (give a name, a model id or a sha256 prefix; "
                         "`filterdb models` lists them)")
    return ids


def remove_models(store: Store, model: str | int) -> list[int]:
    """Remove a model (all versions of a name, or one id / sha256 prefix); returns the removed ids.

    The catalog rows go at once (one transaction); the files go after the commit when no reader holds a
    lease, else they stay, unreferenced, for a later :func:`gc_store` (a running analysis keeps reading them)."""
    with store.writer():
        ids = resolve_models(store, model)
        shards, shas = store.catalog.remove(ids, functools.partial(_checked, store.root))
        store._lease.release()  # this process' own plans do not keep what it removes
        with no_readers(store.root) as free:
            if free:  # after the commit: a crash here leaves garbage, never a dangling reference
                files = data_files(store.root)
                remove_files(store.root, shards + [f for sha in shas for f in files.get(sha, [])])
    return ids


def gc_store(store: Store) -> list[str]:
    """Remove what no catalog row references: partial files of a killed writer, and (when no reader holds a
    lease) shards and per-model data of removed models. Returns what it removed (paths under the root)."""
    with store.writer():
        store._lease.release()  # this process' own plans do not keep its garbage
        try:
            with no_readers(store.root) as free:
                removed = collect_garbage(store.root, store.catalog.shard_files(), shards=free)
                if free:
                    shas, _ = store.catalog.model_hashes_with_data()
                    removed += remove_files(store.root, [f for sha, files in data_files(store.root).items()
                                                         if sha not in shas for f in files])
        except OSError as e:
            raise write_error(store.root, "removing unreferenced files", e) from e
        store._gc_done = True
        return removed


def put_model_data(store: Store, sha256: str, kind: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Keep ``arrays`` (numeric, boolean or string numpy arrays, at most 64 of 64 MiB each) as the ``kind``
    data of the model ``sha256`` (e.g. kind "fingerprint"), replacing what was there: written atomically, its
    checksum recorded (``verify`` checks it), removed with the model by ``rm``. Works on a store opened
    read-only too (as a cache: it takes the writer lock for the moment); a store that cannot be written raises
    :class:`StoreWriteError` (an ``OSError``)."""
    lock = store._lock if store._lock is not None else WriterLock(store._lock_path, timeout=store._lock_timeout)
    with lock:
        rel, size, digest = write_model_data(store.root, sha256, kind, arrays)
        if not store.catalog.record_model_data(sha256, kind, rel, size, digest):
            remove_files(store.root, [rel])
            raise StoreError(f"{store.root}: no model with sha256 {sha256}; per-model data belongs to a model "
                             "of the store")


def model_data(store: Store, sha256: str, kind: str) -> dict[str, np.ndarray] | None:
    """The ``kind`` data of model ``sha256`` (name -> array), None when there is none. A damaged or foreign
    file raises :class:`ModelDataError` (a :class:`StoreError`): rebuild it with :func:`put_model_data`.
    Check the shapes your kind needs: the store checks sizes and dtypes only."""
    return read_model_data(store.root, sha256, kind)


def _checked(root: Path, kind: str, value: Any) -> str:
    """A catalog value about to become a path, checked (a hostile catalog names no file elsewhere)."""
    if kind == "shard":
        shard_path(root, value)
        return str(value)
    return check_sha256(root, value)
