"""CLI smoke tests: the `filterdb` command as users run it, in child processes, checked by exit code.

Marked ``smoke``: scripts/test-matrix.sh runs exactly these in fresh virtual environments of the light core
with unpinned dependencies on the oldest and newest supported Python, where an interpreter or dependency
change first shows. Everything is built here with the light core only (safetensors files written by the
safetensors package itself, a CSV manifest); no torch, no extras.

The failure they guard against (issue 17, item 14): a thread of filterdb still inside C++ code (DuckDB,
Arrow) when the interpreter finalizes is unwound by ``pthread_exit`` and the process aborts *after* printing
its result (exit 134, "terminate called without an active exception"). Hence each command runs several times
and the exit code is asserted, and a child reports the Python threads still alive at its very last
``atexit`` hook.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import filterdb
from filterdb.engine import LocalEngine

pytestmark = pytest.mark.smoke

# the filterdb the tests import (the checkout's src/, or the package installed in a matrix venv)
_PACKAGE_ROOT = str(Path(filterdb.__file__).resolve().parents[1])

# A child that lists, in the last atexit hook to run (registered first: hooks run last-in first-out), the
# threads still alive, then runs the CLI with the given arguments.
_CHILD = """
import atexit, sys, threading
def _alive():
    names = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive())
    sys.stderr.write("ALIVE AT EXIT: " + ",".join(names) + "\\n")
atexit.register(_alive)
from filterdb.cli import main
main(sys.argv[1:])
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FILTERDB_READAHEAD_MB", None)  # the default read-ahead: the thread under test runs
    return env


def filterdb_cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`filterdb ARGS` in a child process, reporting the threads alive at its last exit hook."""
    return subprocess.run([sys.executable, "-c", _CHILD, *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _alive_at_exit(proc: subprocess.CompletedProcess[str]) -> list[str]:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ALIVE AT EXIT: ")]
    assert lines, f"the child never reached its exit hooks (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return [n for n in lines[-1][len("ALIVE AT EXIT: "):].split(",") if n]


def _clean_exit(proc: subprocess.CompletedProcess[str], code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{proc.stderr[-2000:]}"
    filterdb_threads = [n for n in _alive_at_exit(proc) if n.startswith("filterdb")]
    assert filterdb_threads == [], f"threads of filterdb alive at exit: {filterdb_threads}"


def _zoo_files(folder: Path) -> Path:
    """Four two-layer models as safetensors files (two tasks) and their manifest; returns the manifest."""
    from safetensors.numpy import save_file

    rows = ["file,name,task,visual_category,training_dataset"]
    for i in range(4):
        rng = np.random.default_rng(i)
        task = "detection" if i % 2 else "classification"
        save_file({"features.0.weight": rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32),
                   "features.3.weight": rng.normal(0, 0.05, (32, 16, 3, 3)).astype(np.float32)},
                  str(folder / f"m{i}.safetensors"))
        rows.append(f"m{i}.safetensors,m{i},{task},natural,synthetic")
    manifest = folder / "zoo.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-model store made by `filterdb ingest --init` (the ingest itself checked: exit 0, no threads)."""
    folder = tmp_path_factory.mktemp("smoke")
    manifest = _zoo_files(folder)
    store = folder / "zoo.fdb"
    proc = filterdb_cli("ingest", "--init", "--jobs", "1", "--no-progress", store, "-m", manifest)
    _clean_exit(proc)
    return store


def test_check_exits_cleanly(smoke_store: Path) -> None:
    proc = filterdb_cli("check", smoke_store.parent / "m0.safetensors")
    _clean_exit(proc)
    assert "features.3" in proc.stdout


@pytest.mark.parametrize("run", range(4))
def test_analyze_pca_exits_cleanly_every_time(smoke_store: Path, run: int) -> None:
    proc = filterdb_cli("analyze", smoke_store, "pca")
    _clean_exit(proc)
    assert "PCA of 2,240 3x3 filters" in proc.stdout  # 4 models x (16*3 + 32*16) filters


@pytest.mark.parametrize("run", range(2))
def test_analyze_drift_exits_cleanly_every_time(smoke_store: Path, run: int) -> None:
    proc = filterdb_cli("analyze", smoke_store, "drift", "--by", "task")
    _clean_exit(proc)
    assert "classification" in proc.stdout and "detection" in proc.stdout


def test_damaged_store_fails_in_one_line_and_joins_its_threads(smoke_store: Path, tmp_path: Path) -> None:
    # the read-ahead thread is busy with the later shards when the first one fails: the error path must
    # join it too (it used to abort with "FATAL: exception not rethrown" under an address-space limit)
    import shutil

    damaged = tmp_path / "damaged.fdb"
    shutil.copytree(smoke_store, damaged)
    shard = sorted((damaged / "shards" / "3x3").glob("*.arrow"))[0]
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size // 2)
    proc = filterdb_cli("analyze", damaged, "pca")
    _clean_exit(proc, code=1)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "corrupt shard" in errors[0], proc.stderr


# ------------------------------------------------------------------------ the engine's threads, in process
def _engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("filterdb_") and t.is_alive()]


@pytest.mark.parametrize("how", ["done", "task error", "KeyboardInterrupt", "dropped"])
def test_local_engine_joins_its_threads_on_every_path(how: str) -> None:
    before = _engine_threads()
    started: list[int] = []
    trigger = 0 if how == "dropped" else 5  # the task whose result ends the iteration

    def task(item: int) -> int:
        started.append(item)
        time.sleep(0.01 if item <= trigger else 0.1)  # later tasks are slow: whether they ran shows
        if item == trigger and how == "task error":
            raise ValueError("task 5 fails")
        if item == trigger and how == "KeyboardInterrupt":  # Ctrl-C reaches the caller as the result it awaits
            raise KeyboardInterrupt
        return item

    engine = LocalEngine(3)
    results = engine.map(task, range(200))
    if how == "done":
        assert list(results) == list(range(200))
    elif how == "task error":
        with pytest.raises(ValueError, match="task 5 fails"):
            list(results)
    elif how == "KeyboardInterrupt":
        with pytest.raises(KeyboardInterrupt):
            list(results)
    else:
        assert next(results) == 0
        results.close()  # what a caller that stops early does (and garbage collection of the iterator)
    assert _engine_threads() == before
    if how != "done":
        # by then tasks up to trigger + the window (4 per thread) were submitted; only the ones already
        # running may finish, the queued ones are cancelled
        assert len(started) <= trigger + 1 + 2 * engine.n_threads < trigger + 1 + 4 * engine.n_threads
