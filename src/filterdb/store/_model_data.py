"""Per-model data the store keeps next to a model's filters (lineage fingerprints today): ``data/<kind>/<sha256>.npz``.

Plain ``.npz`` archives of numeric arrays, written atomically (``tmp/`` then a rename), with their size and
sha256 recorded in the catalog (``t_model_data``) so that ``verify`` finds a damaged one; removed by ``rm``
with their model, collected by ``gc`` when their model is gone. Loading never unpickles (object arrays are
refused), checks the archive's member count and sizes before reading them, and gives back only numeric,
boolean or string arrays: a hostile or damaged file is a :class:`ModelDataError`, never a crash.

Fingerprints written before this module existed lie in ``lineage/<sha256>.npz``: they are read as kind
``fingerprint`` and removed with their model.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._hashing import file_sha256
from ._errors import StoreError, write_error
from ._paths import DATA_DIR, HEX64, LEGACY_FINGERPRINT_DIR, TMP_DIR, check_kind, check_sha256, own_dir, own_files

__all__ = ["MAX_FILE_BYTES", "MAX_MEMBERS", "MAX_MEMBER_BYTES", "ModelDataError", "data_files", "read_model_data",
           "relpath", "write_model_data"]

MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 64 << 20  # per array, uncompressed
MAX_FILE_BYTES = 256 << 20
_MEMBER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DTYPE_KINDS = "biufcU?"  # numbers, booleans and fixed-width strings: nothing that unpickles or has fields
_DATA_NAME = re.compile(HEX64.pattern + r"\.npz")


class ModelDataError(StoreError):
    """A per-model data file is damaged or not one the store wrote (rebuild it, or ``filterdb rm`` the model)."""


def relpath(sha256: str, kind: str) -> str:
    return f"{DATA_DIR}/{kind}/{sha256}.npz"


def _legacy(root: Path, sha256: str, kind: str) -> Path | None:
    return root / LEGACY_FINGERPRINT_DIR / f"{sha256}.npz" if kind == "fingerprint" else None


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ..errors import UsageError

    if len(arrays) > MAX_MEMBERS:
        raise UsageError(f"per-model data holds at most {MAX_MEMBERS} arrays, got {len(arrays)}")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _MEMBER.fullmatch(name):
            raise UsageError(f"per-model data array name {str(name)[:40]!r}: use letters, digits and '_'")
        arr = np.asarray(value)
        if arr.dtype.kind not in _DTYPE_KINDS:
            raise UsageError(f"per-model data array {name!r} has dtype {arr.dtype}: numbers, booleans and strings only")
        if arr.nbytes > MAX_MEMBER_BYTES:
            raise UsageError(f"per-model data array {name!r} is {arr.nbytes:,} bytes, more than {MAX_MEMBER_BYTES:,}")
        out[name] = arr
    return out


def write_model_data(root: Path, sha256: str, kind: str, arrays: Mapping[str, np.ndarray]) -> tuple[str, int, str]:
    """Write ``arrays`` as the ``kind`` data of model ``sha256``; (path relative to root, bytes, sha256 of the
    file). Atomic: the file is complete and fsync'd before it takes its name."""
    check_sha256(root, sha256)
    check_kind(kind)
    clean = _check_arrays(arrays)
    rel = relpath(sha256, kind)
    tmp = root / TMP_DIR / f"{uuid.uuid4().hex}.npz.part"
    try:
        own_dir(root, TMP_DIR, create=True)
        folder = own_dir(root, DATA_DIR, kind, create=True)
        with open(tmp, "xb") as fh:
            np.savez(fh, **clean)  # type: ignore[arg-type]  # member names were checked above
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        digest = file_sha256(tmp)
        os.replace(tmp, root / rel)
        from ._shards import fsync_dir

        fsync_dir(folder)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise write_error(root, f"writing {kind} data of a model", e) from e
    return rel, size, digest


def _regular(path: Path) -> int | None:
    """The size of ``path`` if it is a regular file (not a link); None if it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ModelDataError(f"{path}: not a regular file (a link or a folder); the store's data files are its own")
    return st.st_size


def read_model_data(root: Path, sha256: str, kind: str) -> dict[str, np.ndarray] | None:
    """The ``kind`` data of model ``sha256``, or None if there is none; :class:`ModelDataError` if damaged."""
    check_sha256(root, sha256)
    check_kind(kind)
    path = root / relpath(sha256, kind)
    own_dir(root, DATA_DIR, kind)
    size = _regular(path)
    legacy = _legacy(root, sha256, kind)
    if size is None and legacy is not None:
        own_dir(root, LEGACY_FINGERPRINT_DIR)
        path, size = legacy, _regular(legacy)
    if size is None:
        return None
    return load_npz(path, size)


def load_npz(path: Path, size: int) -> dict[str, np.ndarray]:
    def damaged(why: str) -> ModelDataError:
        return ModelDataError(f"{path}: damaged per-model data ({why}); it is rebuilt when written again, or "
                              "remove the file (`filterdb verify` lists every damaged one)")

    if size > MAX_FILE_BYTES:
        raise damaged(f"{size:,} bytes, more than {MAX_FILE_BYTES:,}")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise damaged(f"{len(infos)} members, at most {MAX_MEMBERS}")
            for info in infos:
                if info.file_size > MAX_MEMBER_BYTES + 4096:
                    raise damaged(f"member {info.filename[:60]!r} unpacks to {info.file_size:,} bytes")
        out = {}
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                arr = data[name]
                if arr.dtype.kind not in _DTYPE_KINDS:
                    raise damaged(f"array {name[:60]!r} of dtype {arr.dtype}")
                out[name] = arr
        return out
    except ModelDataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError) as e:
        raise damaged(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def data_files(root: Path) -> dict[str, list[str]]:
    """sha256 -> the store's per-model data files of that model (relative paths), legacy fingerprints included;
    only regular files with the store's own names."""
    out: dict[str, list[str]] = {}
    data = own_dir(root, DATA_DIR)
    try:
        kinds = sorted(e.name for e in os.scandir(data) if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        kinds = []
    folders = [(f"{DATA_DIR}/{k}", own_dir(root, DATA_DIR, k)) for k in kinds if re.fullmatch(r"[a-z][a-z0-9_]{0,31}", k)]
    folders.append((LEGACY_FINGERPRINT_DIR, own_dir(root, LEGACY_FINGERPRINT_DIR)))
    for prefix, folder in folders:
        for path in own_files(root, folder, _DATA_NAME):
            out.setdefault(path.name[:64], []).append(f"{prefix}/{path.name}")
    return out
