"""Tampered stores, made by code: links in place of the store's folders, hostile catalog values, truncated or
flipped shards, wrong checksums, huge values, damaged per-model data.

Shared by ``tests/test_fuzz_store.py`` (a bounded slice in CI) and ``bench/fuzz_store.py`` (a long campaign by
hand). Each case copies a small healthy store, tampers with it (:data:`TAMPERS`), and runs filterdb commands on
it in this process (:func:`run_case`). A case *holds* when every command ends in success or in one clear
error line (exit 1 or 2, no "unexpected" error, no traceback) and nothing outside the store changed; it
*fails* otherwise, with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HOSTILE_SHA = ["../../x", "/tmp/fdb-x", "a" * 63, "A" * 64, "0" * 64 + "/../y", "x" * 100_000, "", "é" * 64]
HOSTILE_SHARD = ["../../victim/precious.txt", "/etc/passwd", "shards/3x3/../../../x.arrow", "shards/3x3/" + "0" * 32,
                 "shards/../" + "a" * 32 + ".arrow"]


def build_base(root: Path) -> Path:
    """A small healthy store: three synthetic models, each with fingerprint data, one in the old folder."""
    from filterdb import ingest_record
    from filterdb.store import init_store, put_model_data
    from filterdb.testing import synthetic_record

    store = init_store(root)
    for seed in (1, 2, 3):
        ingest_record(store, synthetic_record(seed, channels=8))
    for sha in store.models()["sha256"]:
        put_model_data(store, sha, "fingerprint", {"means": np.ones((3, 9), np.float32), "version": np.int32(1)})
    store.close()
    return root


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if p.is_file() and not p.is_symlink())


def _sql(root: Path, statement: str, params: list | None = None) -> None:
    import duckdb

    with duckdb.connect(str(root / "catalog.duckdb")) as con:
        con.execute(statement, params or [])


def link_folder(rng: random.Random, root: Path, victim: Path) -> str:
    name = rng.choice(["tmp", "shards", "shards/3x3", "shards/1x1", "data", "data/fingerprint", "lineage",
                       "write.lock", "read.lock"])
    target = root / name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(victim / "precious.txt" if name.endswith(".lock") else victim)
    return f"link {name}"


def bad_sha(rng: random.Random, root: Path, victim: Path) -> str:
    value = rng.choice(HOSTILE_SHA)
    _sql(root, "UPDATE t_models SET sha256 = ? WHERE model_id = (SELECT min(model_id) FROM t_models)", [value])
    return f"t_models.sha256 = {value[:20]!r}"


def bad_shard_name(rng: random.Random, root: Path, victim: Path) -> str:
    value = rng.choice(HOSTILE_SHARD)
    old = _first(root, "SELECT shard FROM t_shards ORDER BY shard LIMIT 1")
    _sql(root, "UPDATE t_shards SET shard = ? WHERE shard = ?", [value, old])
    _sql(root, "UPDATE t_layers SET shard = ? WHERE shard = ?", [value, old])
    return f"shard name {value[:30]!r}"


def huge_values(rng: random.Random, root: Path, victim: Path) -> str:
    column, value = rng.choice([("n_filters", 2**62), ("row_offset", -5), ("row_offset", 2**40), ("scale", "inf"),
                                ("scale", "nan"), ("n_filters", -1), ("groups", 0)])
    _sql(root, f"UPDATE t_layers SET {column} = CAST(? AS {'FLOAT' if column == 'scale' else 'BIGINT'}) "
         "WHERE layer_id = (SELECT min(layer_id) FROM t_layers)", [str(value)])
    if column == "n_filters" and rng.random() < 0.5:
        _sql(root, "UPDATE t_shards SET n_rows = ?, bytes = ?", [value, 2**50])
    return f"t_layers.{column} = {value}"


def truncate_shard(rng: random.Random, root: Path, victim: Path) -> str:
    shard = rng.choice(_files(root / "shards", "*.arrow"))
    data = shard.read_bytes()
    shard.write_bytes(data[: rng.randrange(0, len(data))])
    return f"truncated {shard.name}"


def flip_shard(rng: random.Random, root: Path, victim: Path) -> str:
    shard = rng.choice(_files(root / "shards", "*.arrow"))
    data = bytearray(shard.read_bytes())
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
    shard.write_bytes(bytes(data))
    return f"flipped bytes of {shard.name}"


def wrong_sha(rng: random.Random, root: Path, victim: Path) -> str:
    _sql(root, "UPDATE t_shards SET sha256 = ? WHERE shard = (SELECT min(shard) FROM t_shards)",
         [hashlib.sha256(str(rng.random()).encode()).hexdigest()])
    return "wrong shard checksum"


def bad_model_data(rng: random.Random, root: Path, victim: Path) -> str:
    path = rng.choice(_files(root / "data", "*.npz"))
    how = rng.choice(["truncate", "pickle", "bomb", "dtype", "link"])
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: rng.randrange(0, path.stat().st_size)])
    elif how == "pickle":
        np.savez(path.with_suffix(""), means=np.array([os.system], dtype=object))
    elif how == "bomb":
        import zipfile

        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("means.npy", b"\0" * (80 << 20))
    elif how == "dtype":
        np.savez(path.with_suffix(""), means=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]))
    else:
        path.unlink()
        path.symlink_to(victim / "precious.txt")
    return f"model data {how}"


TAMPERS: dict[str, Callable[[random.Random, Path, Path], str]] = {
    "link_folder": link_folder, "bad_sha": bad_sha, "bad_shard_name": bad_shard_name, "huge_values": huge_values,
    "truncate_shard": truncate_shard, "flip_shard": flip_shard, "wrong_sha": wrong_sha,
    "bad_model_data": bad_model_data,
}


def _first(root: Path, query: str) -> str:
    import duckdb

    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as con:
        return con.execute(query).fetchall()[0][0]


def commands(root: Path, new_model: Path) -> list[list[str]]:
    r = str(root)
    return [["verify", r], ["models", r], ["sql", r, "SELECT count(*), sum(n_filters) FROM layers"],
            ["stats", r], ["analyze", r, "pca"], ["lineage", r], ["ingest", r, str(new_model)],
            ["rm", r, "synthetic-2"]]


@dataclass
class Outcome:
    tamper: str
    what: str
    held: bool
    reason: str = ""


def _victim(base: Path) -> Path:
    victim = base / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / ("ab" * 16 + ".arrow")).write_text("keep me too")
    (victim / ("cd" * 16 + ".arrow.part")).write_text("and me")
    (victim / ("e" * 64 + ".npz")).write_text("and me")
    return victim


def _state(folder: Path) -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text()) for p in folder.iterdir())


def _run(argv: list[str]) -> tuple[int, str]:
    from filterdb.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0) if not isinstance(e.code, str) else 1
    return code, err.getvalue()


def run_case(base: Path, work: Path, tamper: str, seed: int, new_model: Path) -> Outcome:
    """Copy ``base`` into ``work``, tamper with it, run every command; the outcome."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    root = work / "store"
    shutil.copytree(base, root, symlinks=True)
    victim = _victim(work)
    before = _state(victim)
    what = TAMPERS[tamper](random.Random(seed), root, victim)
    outside = {p for p in work.parent.iterdir()}
    for argv in commands(root, new_model):
        code, err = _run(argv)
        if code not in (0, 1, 2):
            return Outcome(tamper, what, False, f"{argv[0]}: exit {code}: {err[-300:]}")
        if "unexpected" in err or "Traceback" in err:
            return Outcome(tamper, what, False, f"{argv[0]}: {err.strip()[-400:]}")
        if code and len([line for line in err.splitlines() if line.strip()]) > 6:
            return Outcome(tamper, what, False, f"{argv[0]}: not one clear error: {err[-400:]}")
    if _state(victim) != before:
        return Outcome(tamper, what, False, "a file outside the store changed")
    if {p for p in work.parent.iterdir()} != outside:
        return Outcome(tamper, what, False, "a file appeared outside the store")
    return Outcome(tamper, what, True)


def new_model_file(folder: Path) -> Path:
    """A small real safetensors model to ingest into tampered stores."""
    from safetensors.numpy import save_file

    path = folder / "new.safetensors"
    rng = np.random.default_rng(0)
    save_file({"conv.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32)}, str(path))
    return path
