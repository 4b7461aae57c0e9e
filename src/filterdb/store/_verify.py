"""``filterdb verify``: the full check of a store — the catalog readable end to end, every shard present,
of its recorded size, structure and checksum, every layer inside its shard — and which models to re-ingest.

The cheap part of these checks (size, rows, Arrow footer and schema) runs on every shard open
(:class:`ShardReader`); the checksums, which read every byte, only here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._hashing import file_sha256
from ._errors import ShardCorruptError, StoreError
from ._model_data import ModelDataError, data_files, load_npz
from ._paths import HEX64, LEGACY_FINGERPRINT_DIR
from ._shards import ShardReader, ShardRecord, collect_garbage_candidates, shard_path

__all__ = ["Damage", "VerifyReport", "verify_store"]


@dataclass(frozen=True)
class Damage:
    """One problem found, and the model it belongs to (None: the catalog itself)."""

    what: str  # e.g. "shards/3x3/ab12.arrow: checksum mismatch"
    model_id: int | None = None
    model: str | None = None
    source: str | None = None  # the file or source name to ingest again


@dataclass
class VerifyReport:
    n_models: int = 0
    n_shards: int = 0
    n_bytes: int = 0  # bytes of shard files read
    damage: list[Damage] = field(default_factory=list)
    catalog_damaged: bool = False  # the catalog could not be read: nothing else could be checked
    without_checksum: list[str] = field(default_factory=list)  # shards of an older filterdb: structure checked only
    unreferenced: list[str] = field(default_factory=list)  # garbage of a killed writer (removed by the next write)
    n_model_data: int = 0  # per-model data files checked (fingerprints)

    @property
    def ok(self) -> bool:
        return not self.damage

    def models_to_reingest(self) -> list[tuple[int, str, str | None]]:
        """(model_id, name, source) of every damaged model, once each, in id order."""
        seen = {d.model_id: (d.model_id, d.model or "?", d.source) for d in self.damage if d.model_id is not None}
        return [seen[k] for k in sorted(seen)]


def verify_store(store: Any, *, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check every byte of ``store`` (an open :class:`Store`); ``progress(done, total)`` per shard."""
    report = VerifyReport()
    try:
        models, shards, outside = store.catalog.verify_rows()
    except StoreError as e:
        report.catalog_damaged = True
        report.damage.append(Damage(str(e)))
        return report
    report.n_models = len(models)

    def damage(mid: int, what: str) -> None:
        name, source = models.get(mid, (None, None))
        report.damage.append(Damage(what, mid, name, source))

    for mid, layer, shard, offset, count, n_rows in outside:
        where = "a shard the catalog does not list" if n_rows is None else f"rows {offset}..{offset + count} of {n_rows}"
        damage(int(mid), f"layer {layer!r}: its filters point to {where} ({shard})")
    total = len(shards)
    for done, (shard, mid, n_rows, n_bytes, digest) in enumerate(shards, start=1):
        report.n_shards += 1
        name = models.get(int(mid), ("?", None))[0]
        record = ShardRecord(int(n_bytes), int(n_rows), f"model {name!r} (id {mid})", digest)
        try:
            reader = ShardReader(store.root, shard, record)  # size, rows, Arrow structure
            reader.close()
        except ShardCorruptError as e:
            damage(int(mid), _short(str(e), store.root, record.owner))
            continue
        if digest is None:
            report.without_checksum.append(shard)
        else:
            actual = file_sha256(shard_path(store.root, shard))
            report.n_bytes += int(n_bytes)
            if actual != digest:
                damage(int(mid), f"{shard}: checksum mismatch (the file's bytes changed after ingest)")
        if progress:
            progress(done, total)
    report.unreferenced = collect_garbage_candidates(store.root, [s[0] for s in shards])
    _verify_model_data(store, report, damage)
    return report


def _verify_model_data(store: Any, report: VerifyReport, damage: Callable[[int, str], None]) -> None:
    """Every per-model data file: its model exists, it loads (sizes, dtypes), and its checksum matches."""
    try:
        shas, recorded = store.catalog.model_hashes_with_data()
        ids = store.catalog.model_ids()
    except StoreError as e:
        report.damage.append(Damage(str(e)))
        return
    for sha in shas:
        if not HEX64.fullmatch(str(sha)):
            damage(ids.get(sha, -1), f"sha256 {str(sha)[:80]!r} in the catalog is not 64 hex digits (edited catalog)")
    files = data_files(store.root)
    for sha, paths in sorted(files.items()):
        for rel in paths:
            report.n_model_data += 1
            owner = ids.get(sha)
            kind = "fingerprint" if rel.startswith(LEGACY_FINGERPRINT_DIR + "/") else rel.split("/")[1]
            if owner is None:
                report.unreferenced.append(rel)
                continue
            path = store.root / rel
            try:
                load_npz(path, path.stat().st_size)
            except (ModelDataError, OSError) as e:
                damage(owner, f"{rel}: {str(e).split(': ', 1)[-1].split('; it is rebuilt')[0]}")
                continue
            entry = recorded.get((sha, kind))
            if entry is not None and entry[0] == rel and file_sha256(path) != entry[2]:
                damage(owner, f"{rel}: checksum mismatch (the {kind} data changed after it was written)")


def _short(message: str, root: Any, owner: str) -> str:
    """A ShardCorruptError's message without the owner and the advice (verify gives them, once per model)."""
    head = message.split("; re-ingest the model")[0].split("; the model was removed")[0]
    return head.replace(f"{root}/", "").replace(f" of {owner}", "").replace(f" ({owner})", "")


def record_checksums(store: Any) -> int:
    """Record the sha256 of shards that have none (stores made by an older filterdb), after checking their
    size, rows and Arrow structure; returns how many. Needs the store opened with mode "a"."""
    with store.writer():
        missing = store.catalog.shards_without_checksum()
        digests = []
        for shard, mid, n_rows, n_bytes, name in missing:
            ShardReader(store.root, shard, ShardRecord(int(n_bytes), int(n_rows), f"model {name!r} (id {mid})")).close()
            digests.append((file_sha256(shard_path(store.root, shard)), shard))
        if digests:
            store.catalog.set_checksums(digests)
    return len(digests)
