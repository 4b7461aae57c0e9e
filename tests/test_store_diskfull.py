"""A full disk, a read-only store, a file-size limit: one clear error, the real cause, an unchanged store.

The full disk is a real small file system (a tmpfs mounted by the test, which needs root or CAP_SYS_ADMIN;
skipped otherwise); the file-size limit (RLIMIT_FSIZE, in a child process) runs anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli as run, snapshot

from filterdb import ingest_record
from filterdb.store import StoreError, StoreWriteError, init_store, open_store, remove_models, verify_store
from filterdb.testing import synthetic_record

SRC = str(Path(__file__).resolve().parents[1] / "src")


class SmallDisk:
    """A tmpfs of a given size at ``path``; ``fill(free)`` leaves ``free`` bytes, ``resize``, ``read_only``."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small file system here ({proc.stderr.strip()})")

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def fill(self, free: int) -> None:
        st = os.statvfs(self.path)
        with open(self.path / "filler", "wb") as fh:
            fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))

    def unfill(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=False)


@pytest.fixture()
def disk(tmp_path):
    d = SmallDisk(tmp_path / "fs", 8 << 20)
    yield d
    d.close()


def test_init_on_a_full_disk_leaves_nothing_and_can_be_run_again(disk, capsys):
    disk.fill(100 << 10)  # an empty catalog needs ~800 KB
    code, _, err = run(capsys, "init", disk.path / "zoo")
    assert code == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not (disk.path / "zoo").exists()
    disk.unfill()
    code, out, err = run(capsys, "init", disk.path / "zoo")
    assert code == 0, err


def test_interrupted_init_is_finished(tmp_path):
    """What an init killed before it wrote the format file leaves (a catalog alone) does not block init."""
    root = tmp_path / "zoo"
    root.mkdir()
    (root / "catalog.duckdb").write_bytes(b"half a catalog")
    store = init_store(root)
    assert store.models().empty
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an empty directory"):
        init_store(tmp_path / "other")


def test_every_amount_of_free_space_ends_cleanly(disk):
    """Shards or the commit run out of space at different points; each ingest either succeeds or fails with
    the real cause, and the store stays consistent (the model whole or absent, verify clean)."""
    root = disk.path / "zoo"
    init_store(root).close()
    record = synthetic_record(5, channels=64, n_layers=4)  # ~240 KB of shards
    outcomes = set()
    for free_kb in (0, 40, 120, 200, 240, 260, 280, 320, 400, 1000):
        disk.fill(free_kb << 10)
        before = snapshot(root)
        store = open_store(root, "a")
        try:
            result = ingest_record(store, record, {"Name": "big"})
            outcomes.add("ok")
            remove_models(store, result.model_id)  # may itself meet the full disk
        except StoreWriteError as e:
            text = str(e)
            assert "No space left on device" in text and "cannot rollback" not in text, text
            outcomes.add("full")
        finally:
            store.close()
            disk.unfill()
        report = verify_store(open_store(root))
        assert report.ok, report.damage
        models = list(open_store(root).models()["model"])
        assert models in ([], ["big"]), models
        if models:
            assert snapshot(root)[2] != before[2]  # the model is whole: its shards are there
            remove_models(open_store(root, "a"), "big")
    assert outcomes == {"ok", "full"}


def test_ingest_on_a_full_disk_from_the_command_line(disk, tmp_path, capsys):
    from safetensors.numpy import save_file

    model = tmp_path / "m.safetensors"
    save_file({f"{layer.name}.weight": layer.weight for layer in synthetic_record(3, channels=64).layers}, str(model))
    root = disk.path / "zoo"
    assert run(capsys, "init", root)[0] == 0
    before = snapshot(root)
    disk.fill(16 << 10)
    code, _, err = run(capsys, "ingest", root, model, "--no-progress")
    disk.unfill()
    assert code == 1 and "No space left on device" in err and "unexpected" not in err, err
    assert "0 model(s) ingested before it stay in the store, run the ingest again" in err
    assert snapshot(root) == before


def test_read_only_store(disk, capsys):
    root = disk.path / "zoo"
    store = init_store(root)
    ingest_record(store, synthetic_record(1), {"Name": "net"})
    store.close()
    disk.remount("ro")
    try:
        for argv in (("models", root), ("stats", root), ("verify", root), ("layers", root)):
            code, _, err = run(capsys, *argv)
            assert code == 0, (argv, err)
        for argv in (("rm", root, "net"), ("init", disk.path / "other")):
            code, _, err = run(capsys, *argv)
            assert code == 1 and "Read-only file system" in err and "the store is read-only here" in err, err
            assert len(err.strip().splitlines()) == 1
        store = open_store(root, "a")
        assert sum(len(b) for b in store.iter_filters()) == 16 * 3 + 2 * 256
        with pytest.raises(StoreWriteError, match="Read-only file system"):
            ingest_record(store, synthetic_record(2))
    finally:
        disk.remount("rw")


CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from filterdb.cli import main
main(sys.argv[2:])
"""


def test_file_size_limit_in_a_child_process(tmp_path):
    from safetensors.numpy import save_file

    model = tmp_path / "m.safetensors"
    save_file({f"{layer.name}.weight": layer.weight for layer in synthetic_record(3, channels=64).layers}, str(model))
    root = tmp_path / "zoo"
    init_store(root).close()
    before = snapshot(root)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(64 << 10), "ingest", str(root), str(model),
                           "--no-progress"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr and "unexpected" not in proc.stderr
    assert snapshot(root) == before
    assert verify_store(open_store(root)).ok
