"""One consistent store per reader: `rm` while an analysis runs (real processes), two ingests of the same
files at once, and SIGKILL during `rm` and `verify --record-checksums`: nothing lost, nothing half-removed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import subprocess_env

from filterdb.analysis import drift
from filterdb.engine import LocalEngine
from filterdb.store import open_store
from filterdb.testing import build_synthetic_zoo
from filterdb.store import gc_store, verify_store


def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "filterdb", *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


class RemoveBetweenPasses(LocalEngine):
    """A thread engine that, before its second pass, runs `filterdb rm` in another process (as a user would)."""

    def __init__(self, root, model):
        super().__init__(n_threads=2)
        self.root, self.model, self.passes, self.removed = root, model, 0, None

    def map(self, fn, items, *args):
        self.passes += 1
        if self.passes == 2:
            self.removed = _cli("rm", self.root, self.model)
        return super().map(fn, items, *args)


@pytest.fixture()
def zoo(tmp_path):
    build_synthetic_zoo(tmp_path / "zoo")
    return tmp_path / "zoo"


def test_rm_during_an_analysis_keeps_its_snapshot(zoo, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(zoo, reference)
    expected = drift(str(reference), by="visual_category", min_filters=0, task_rows=500)
    victim = open_store(zoo).models()["model"].iloc[0]
    store = open_store(zoo)
    engine = RemoveBetweenPasses(zoo, victim)
    result = drift(store, by="visual_category", min_filters=0, task_rows=500, engine=engine)
    assert engine.passes >= 2 and "removed 1 model" in engine.removed.stdout
    assert result.groups == expected.groups and result.sizes == expected.sizes
    np.testing.assert_array_equal(result.matrix, expected.matrix)  # the snapshot it planned on, bit for bit
    assert victim not in set(open_store(zoo).models()["model"])  # the catalog changed at once
    leftovers = verify_store(open_store(zoo)).unreferenced
    assert leftovers  # the removed model's shards wait for the reader
    store.close()
    assert sorted(gc_store(open_store(zoo, "a"))) == sorted(leftovers)
    assert verify_store(open_store(zoo)).ok and not verify_store(open_store(zoo)).unreferenced


def test_rm_without_readers_deletes_at_once(zoo):
    before = {p.name for p in (zoo / "shards").rglob("*.arrow")}
    _cli("rm", zoo, open_store(zoo).models()["model"].iloc[0])
    after = {p.name for p in (zoo / "shards").rglob("*.arrow")}
    assert after < before and not verify_store(open_store(zoo)).unreferenced


def test_two_ingests_of_the_same_files_at_once(tmp_path):
    import torch
    from safetensors.torch import save_file

    files = []
    for i in range(4):
        torch.manual_seed(i)
        path = tmp_path / f"m{i}.safetensors"
        save_file({"a.weight": torch.randn(32, 16, 3, 3), "b.weight": torch.randn(16, 32, 1, 1)}, str(path))
        files.append(path)
    root = tmp_path / "db"
    _cli("init", root)
    procs = [subprocess.Popen([sys.executable, "-m", "filterdb", "ingest", str(root), *map(str, files)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    store = open_store(root)
    models = store.models()
    assert sorted(models["model"]) == [f.name for f in files] and models["sha256"].is_unique
    assert verify_store(store).ok and not verify_store(store).unreferenced
    ingested = sum(int(out.split("ingested ")[1].split(" ")[0]) for out, _ in outs)
    assert ingested == 4  # each model written once, by one of the two


def _kill_during(args, root, delays):
    """Run `filterdb ARGS` and SIGKILL it after each delay (on fresh copies of ``root``); the copies."""
    copies = []
    for i, delay in enumerate(delays):
        copy = root.parent / f"{root.name}-kill{i}"
        shutil.copytree(root, copy)
        proc = subprocess.Popen([sys.executable, "-m", "filterdb", *args(copy)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=subprocess_env())
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        copies.append(copy)
    return copies


def _durations(args, root):
    copy = root.parent / f"{root.name}-probe"
    shutil.copytree(root, copy)
    started = time.monotonic()
    _cli(*args(copy))
    return time.monotonic() - started


@pytest.mark.slow
def test_sigkill_during_rm_removes_all_or_nothing(zoo):
    names = sorted(open_store(zoo).models()["model"])
    victim = names[0]
    args = lambda root: ["rm", str(root), victim]  # noqa: E731
    duration = _durations(args, zoo)
    for copy in _kill_during(args, zoo, np.linspace(0.0, duration * 1.1, 8)):
        store = open_store(copy)
        held = sorted(store.models()["model"])
        assert held in (names, [n for n in names if n != victim])  # the model entirely there, or entirely gone
        report = verify_store(store)
        assert report.ok, report.damage  # every remaining model whole: no half-removed model
        gc_store(open_store(copy, "a"))
        assert not verify_store(open_store(copy)).unreferenced  # what a kill leaves is garbage the next writer takes
        if len(held) == len(names):
            _cli("rm", copy, victim)  # and the rm can simply be run again


@pytest.mark.slow
def test_sigkill_during_record_checksums(zoo):
    import duckdb

    with duckdb.connect(str(zoo / "catalog.duckdb")) as con:  # a store written before checksums were recorded
        con.execute("UPDATE t_shards SET sha256 = NULL")
    args = lambda root: ["verify", str(root), "--record-checksums"]  # noqa: E731
    duration = _durations(args, zoo)
    for copy in _kill_during(args, zoo, np.linspace(0.0, duration * 1.1, 6)):
        report = verify_store(open_store(copy))
        assert report.ok, report.damage  # a checksum is recorded right or not at all
        assert open_store(copy).models().shape[0] == open_store(zoo).models().shape[0]
        _cli("verify", copy, "--record-checksums")  # and running it again finishes the job
        assert not verify_store(open_store(copy)).without_checksum
