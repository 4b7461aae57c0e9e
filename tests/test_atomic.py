"""filterdb._atomic: whole files or nothing, normal permissions, replace semantics."""

from __future__ import annotations

import os
import sys

import pytest

from filterdb._atomic import atomic_path, atomic_write, atomic_write_bytes, atomic_write_text
from filterdb.errors import UsageError

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_permissions_of_a_normally_created_one(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "plain.txt", "w") as fh:  # the reference: what open() creates under this umask
            fh.write("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_exception_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old page", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as fh:
            fh.write("half a new pa")
            raise RuntimeError("boom")
    assert target.read_text(encoding="utf-8") == "old page"
    assert _listing(tmp_path) == ["report.html"]


def test_an_exception_before_any_file_existed_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.bin", "wb") as fh:
            fh.write(b"\0" * 10)
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_replaces_an_existing_file_and_the_old_handle_keeps_the_old_content(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with open(target, "rb") as reader:  # a reader that opened the old file keeps reading the old file
        atomic_write_bytes(target, b"new content")
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new content"
    assert _listing(tmp_path) == ["data.bin"]


def test_the_temporary_file_is_hidden_in_the_same_folder_until_the_end(tmp_path):
    target = tmp_path / "m.npz"
    with atomic_write(target, "wb") as fh:
        fh.write(b"abc")
        inside = _listing(tmp_path)
    assert not target.name in inside and len(inside) == 1
    assert inside[0].startswith(".m.npz.") and inside[0].endswith(".tmp")
    assert _listing(tmp_path) == ["m.npz"] and target.read_bytes() == b"abc"


def test_text_mode_encodes_utf8_and_keeps_newlines_when_asked(tmp_path):
    atomic_write_text(tmp_path / "t.csv", "ä,b\r\nc,d\r\n", newline="")
    assert (tmp_path / "t.csv").read_bytes() == "ä,b\r\nc,d\r\n".encode("utf-8")


def test_atomic_path_for_writers_that_take_a_path(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"weights")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"weights" and _listing(tmp_path) == ["model.pt"]
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError("disk full")
    assert target.read_bytes() == b"weights" and _listing(tmp_path) == ["model.pt"]


def test_a_missing_folder_or_a_bad_mode_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "absent" / "a.txt", "x")
    with pytest.raises(UsageError, match="mode must be"):
        with atomic_write(tmp_path / "a.txt", "a"):
            pass
    with pytest.raises(LookupError):
        atomic_write_text(tmp_path / "a.txt", "x", encoding="no-such-codec")
    assert _listing(tmp_path) == []


def test_a_directory_in_the_way_is_an_error_and_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "taken", "x")
    assert _listing(tmp_path) == ["taken"]
