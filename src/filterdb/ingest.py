"""Ingest: sources -> readers -> store, one atomic, idempotent step per model.

Reading and parsing model files (and computing layer metrics) is the expensive part; it runs in worker
processes when there is more than one file and more than one core. The writes stay in the calling
process, in source order, each under the store's writer lock.

This layer computes what the store keeps next to the filters -- the layer metrics with the verdicts of
``filterdb check`` and the lineage fingerprint -- and hands them to the store, which never runs the health
check itself. :func:`ingest` takes files, :func:`ingest_record` one in-memory record, :func:`import_hdf5` a
published CNN Filter DB ``dataset.h5``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ._hashing import file_sha256
from .errors import FilterDBError, ModelFormatError, ModelNotFoundError
from .manifest import (DEFAULT_REQUIRED, Manifest, ManifestError, ManifestMatch, is_source_name, load_manifest,
                       match_manifest)
from .store import (IngestResult, LayerMetrics, PreparedModel, Store, StoreError, StoreWriteError, add_aliases,
                    as_store, init_store, iter_hdf5_models, name_for, prepare_model, record_sha256)
from .types import ModelRecord

__all__ = ["MODEL_SUFFIXES", "IngestError", "IngestEvent", "IngestReport", "SourceItem", "expand_sources",
           "import_hdf5", "ingest", "ingest_record"]

# What a directory walk picks up (content sniffing decides the reader afterwards).
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".bin", ".safetensors", ".h5", ".hdf5", ".keras", ".tflite", ".lz4",
                  ".pkl", ".joblib", ".ckpt", ".pb")


PARALLEL_MIN_BYTES = 256 << 20  # read in worker processes by default from this much model data on


class IngestError(StoreError):
    """A model could not be ingested; the models before it are in the store, a re-run continues."""


@dataclass(frozen=True)
class SourceItem:
    """One model file to ingest."""

    spec: str  # what the user named (a path, or "pypi:...")
    path: Path  # the local file
    key: str  # what a manifest row matches: the absolute path, or the source name


@dataclass(frozen=True)
class IngestEvent:
    """Progress of an ingest, for progress bars: one event per model, plus one "start" event."""

    kind: Literal["start", "done", "skipped", "failed"]
    index: int  # 0-based position of the model among all models (0 for "start")
    total: int  # number of models
    spec: str = ""
    result: IngestResult | None = None
    error: str | None = None
    total_bytes: int = 0  # on "start": bytes of all model files


@dataclass
class IngestReport:
    """What an ingest did."""

    results: list[IngestResult] = field(default_factory=list)  # ingested and skipped models, in order
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, error) with keep_going=True
    match: ManifestMatch | None = None  # manifest match report (None without a manifest)
    seconds: float = 0.0
    bytes_read: int = 0  # size of the model files read
    headroom_filled: int = 0  # models already in the store whose pruning headroom this run added (_fill_headroom)

    @property
    def ingested(self) -> list[IngestResult]:
        return [r for r in self.results if not r.skipped]

    @property
    def skipped(self) -> list[IngestResult]:
        return [r for r in self.results if r.skipped]

    @property
    def n_filters(self) -> int:
        return sum(r.n_filters for r in self.ingested)


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(MODEL_SUFFIXES) and not name.startswith("."):
                yield Path(root) / name


def expand_sources(sources: Iterable[str | os.PathLike[str]]) -> list[SourceItem]:
    """Resolve source names and walk directories (recursively) into a list of model files.

    Raises ModelNotFoundError / SourceError before anything is read, so that a typo changes nothing.
    """
    from .sources import resolve_source

    items: list[SourceItem] = []
    seen: set[str] = set()
    for source in sources:
        spec = os.fspath(source)
        if is_source_name(spec) and not Path(spec).exists():
            resolved = resolve_source(spec)
            found = [SourceItem(spec, resolved.path, spec)]
        else:
            path = Path(spec).expanduser()
            if path.is_dir():
                found = [SourceItem(str(p), p, str(p.resolve())) for p in _walk(path)]
                if not found:
                    raise ModelNotFoundError(f"{path}: the directory holds no model file "
                                             f"({', '.join(MODEL_SUFFIXES)})")
            elif path.is_file():
                found = [SourceItem(spec, path, str(path.resolve()))]
            else:
                raise ModelNotFoundError(f"{spec}: no such file or directory")
        for item in found:
            if item.key not in seen:
                seen.add(item.key)
                items.append(item)
    return items


@dataclass(frozen=True)
class PrepareOptions:
    """How every model of one ingest is read and prepared (built once, sent to each worker)."""

    dtype: str  # the store's storage dtype
    read: Any  # filterdb.readers.ReadOptions


@dataclass(frozen=True)
class PrepareJob:
    """One model for a worker to read and prepare: small and picklable."""

    index: int  # position among the recognised files (progress events count from it)
    spec: str
    path: str
    metadata: Mapping[str, Any]
    sha256: str
    options: PrepareOptions


def _reader(item: SourceItem, sha256: str, options: Any) -> Callable[[], ModelRecord]:
    def load() -> ModelRecord:
        from .readers import read_path

        return read_path(item.path, options, source=item.spec, sha256=sha256)

    return load


def _read_and_prepare(job: PrepareJob) -> PreparedModel:
    """Worker: read one file and prepare it (:func:`_prepare`)."""
    from .readers import read_path

    record = read_path(Path(job.path), job.options.read, source=job.spec, sha256=job.sha256)
    return _prepare(record, job.metadata, job.options.dtype)


def _prepare(record: ModelRecord, metadata: Mapping[str, Any] | None, dtype: str, *,
             channels: bool = True) -> PreparedModel:
    """Compute a record's layer metrics (with the verdicts of ``filterdb check``), lineage fingerprint and pruning
    headroom, and turn it into catalog rows and shard arrays: every path into the store goes through here.
    ``channels`` False: the record keeps no output channels (the HDF5 layout), so it has no headroom."""
    from .check import check_model
    from .prune import HEADROOM_KIND

    metrics = LayerMetrics.from_columns(check_model(record).columns)  # numpy columns, no DataFrame
    prepared = prepare_model(record, metadata, dtype=dtype, metrics=metrics)
    fp = _fingerprint(record)
    if fp is not None and not fp.sha256:  # an in-memory record: cached under the hash the store gave it
        fp = replace(fp, sha256=prepared.sha256)
    prepared.fingerprint = fp
    prepared.model_data[HEADROOM_KIND] = _headroom(record, channels).to_arrays()
    return prepared


def _headroom(record: ModelRecord, channels: bool = True) -> Any:
    """The pruning headroom kept with the model (docs/prune.md, "Headroom in a store"): never an ingest error; what
    cannot be measured is stored with the reason, which the report shows."""
    from .prune._headroom import MAX_CHANNELS, headroom, not_measurable

    if not channels:
        return not_measurable("the CNN Filter DB HDF5 layout keeps no output channels")
    widest = max((int(layer.weight.shape[0]) for layer in record.layers if layer.weight.ndim >= 3), default=0)
    if widest > MAX_CHANNELS:  # the near-duplicate test's Gram matrix is out x out: bounded before allocating
        return not_measurable(f"a conv layer has {widest:,} output channels, more than {MAX_CHANNELS:,}; "
                              "`filterdb prune FILE` computes its plan")
    try:
        return headroom(record)
    except (FilterDBError, ValueError, ArithmeticError, MemoryError) as e:  # LinAlgError is a ValueError
        return not_measurable(f"could not be measured: {type(e).__name__}: {e}")


def _write(target: Store, prepared: PreparedModel) -> IngestResult:
    """Commit one prepared model (atomic, under the writer lock), then cache its lineage fingerprint and keep its
    other per-model data (the pruning headroom)."""
    result = target.ingest_prepared(prepared)
    if prepared.fingerprint is not None and not result.skipped:
        from .lineage import fingerprint_model

        try:
            fingerprint_model(target, prepared.fingerprint)
        except OSError:  # only a cache: `filterdb similar` computes a missing fingerprint from the shards
            pass
    if not result.skipped:
        _keep_data(target, prepared.sha256, prepared.model_data)
    return result


def _fill_headroom(target: Store, models: Sequence[tuple[str, Callable[[], ModelRecord]]]) -> int:
    """Keep the pruning headroom of models the store already holds without one (ingested before filterdb measured
    it): ingesting their files again fills it, reading each once. ``models``: (sha256, a function that reads
    the model). Returns how many were filled; a file that no longer reads is left "not measured"."""
    from .prune import HEADROOM_KIND

    filled = 0
    for sha, load in models:
        if _has_headroom(target, sha):
            continue
        try:
            record = load()
        except Exception:  # noqa: BLE001 - the model is in the store; only its headroom stays unmeasured
            continue
        _keep_data(target, sha, {HEADROOM_KIND: _headroom(record).to_arrays()})
        filled += 1
    return filled


def _has_headroom(target: Store, sha256: str) -> bool:
    """Whether the store keeps a readable headroom of this layout for the model (a damaged one is rewritten)."""
    from .prune import HEADROOM_KIND, Headroom
    from .store import model_data

    try:
        arrays = model_data(target, sha256, HEADROOM_KIND)
    except (StoreError, OSError):
        return False
    return arrays is not None and Headroom.from_arrays(arrays) is not None


def _keep_data(target: Store, sha256: str, data: Mapping[str, Mapping[str, Any]]) -> None:
    from .store import put_model_data

    for kind, arrays in data.items():
        try:
            put_model_data(target, sha256, kind, arrays)
        except OSError:  # the model is in: a missing headroom reads "not measured", and a re-ingest fills it
            pass


def ingest_record(store: Store | str | os.PathLike[str], record: ModelRecord,
                  metadata: Mapping[str, Any] | None = None) -> IngestResult:
    """Add one in-memory model to a store as `filterdb ingest` adds a file: its layer metrics and verdicts
    and its lineage fingerprint computed here, then one atomic write; a no-op for bytes the store holds.

    ``store`` is an open store (mode "a") or its path; ``metadata`` the model's name and taxonomy (keys as in a
    manifest: "Name", "Task", ... or normalised: "name", "task", ...); extra keys become new columns.

    Examples
    --------
    >>> from filterdb import ingest_record, read_model  # doctest: +SKIP
    >>> ingest_record("zoo.fdb", read_model("net.onnx"), {"Name": "net", "Task": "Classification"})  # doctest: +SKIP
    """
    target = as_store(store, "a")
    sha = record_sha256(record)
    if target.catalog.known(sha) is not None:
        from .store._prepare import model_name

        name, source = model_name(record, metadata)
        result = target.existing(sha, name=name, source=source)  # the same bytes: recorded as an alias
        _fill_headroom(target, [(sha, lambda: record)])
        return result
    return _write(target, _prepare(record, metadata, target.dtype))


def import_hdf5(store: Store | str | os.PathLike[str], path: str | os.PathLike[str], *,
                max_memory: int | str | None = None) -> list[IngestResult]:
    """Import a published CNN Filter DB ``dataset.h5`` (docs/reference.md §8) model by model, under one writer
    lock: each model atomic, with layer metrics computed as for any ingested model; re-imports are no-ops
    that cost a read of the model's rows (a model already in the store is neither prepared nor written).

    The file is untrusted: nothing in it runs, its layout is checked before the first model is read and
    ``max_memory`` bounds each model (see :func:`filterdb.store.iter_hdf5_models`). The layout keeps no
    (out, in) structure, so the metrics that need output channels (orthogonality) stay NULL.
    """
    target = as_store(store, "a")
    results: list[IngestResult] = []
    with target.writer():
        rows = target.sql("SELECT model_id, model, sha256, n_layers, n_filters FROM models")
        known = {sha: IngestResult(int(mid), name, sha, True, int(n_layers), int(n_filters))  # one query, not one
                 for mid, name, sha, n_layers, n_filters in rows.itertuples(index=False)}  # per model
        for record, metadata in iter_hdf5_models(path, max_memory=max_memory):
            sha = record_sha256(record)
            if sha in known:
                results.append(known[sha])
                continue
            result = _write(target, _prepare(record, metadata, target.dtype, channels=False))
            known[sha] = replace(result, skipped=True)  # the same model again further down the file
            results.append(result)
    return results


def _fingerprint(record: Any) -> Any:
    """The lineage fingerprint (docs/lineage.md), computed while the weights are in memory: `filterdb similar`
    and `filterdb lineage` then never re-read the model's shards."""
    from .lineage import LineageError, fingerprint, weights_of

    try:
        return fingerprint(weights_of(record))
    except LineageError:  # no convolution layers: nothing to fingerprint
        return None


def _pool(jobs: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    # not fork: the parent runs DuckDB and BLAS threads, and forking a threaded process can deadlock
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


@dataclass(frozen=True)
class _Planned:
    """What the ingest will read, decided before the store is touched."""

    items: list[SourceItem]  # files a reader recognises, in order
    metadata: dict[str, Mapping[str, Any]]  # SourceItem.key -> manifest metadata
    match: ManifestMatch | None
    unrecognised: list[tuple[str, str]]  # (source, error), with keep_going


def _plan(sources: Sequence[str | os.PathLike[str]], manifest: str | os.PathLike[str] | Manifest | None,
          required: Iterable[str] | None, strict: bool, keep_going: bool, read_options: Any) -> _Planned:
    """Sources and manifest -> the files to read: everything that can be validated without the store."""
    from .readers import reader_for_path

    loaded: Manifest | None = None
    if manifest is not None:
        loaded = manifest if isinstance(manifest, Manifest) else load_manifest(
            manifest, required=DEFAULT_REQUIRED if required is None else required)
    if not sources and loaded is None:
        raise ModelNotFoundError("nothing to ingest: give model files, directories or source names (or a manifest)")
    if sources:
        specs = list(sources)
    else:
        assert loaded is not None  # checked above: sources or a manifest
        specs = [row.file if is_source_name(row.file) else row.key for row in loaded.rows]
    items = expand_sources(specs)
    match: ManifestMatch | None = None
    metadata: dict[str, Mapping[str, Any]] = {}
    if loaded is not None:
        match = match_manifest(loaded, items)
        if strict and not match.ok:
            raise ManifestError(f"{loaded.path}: does not match the files; nothing was ingested:\n  "
                                + "\n  ".join(match.problems())
                                + "\n(fix the manifest, or pass strict=False / --lenient to ingest what matches)")
        for item, row in match.pairs:
            if row is not None:
                metadata[item.key] = row.metadata
    unrecognised: list[tuple[str, str]] = []
    recognised = []
    for item in items:  # a file no reader recognises is an error before any write (skipped with keep_going)
        try:
            reader_for_path(item.path, read_options)
        except Exception as e:  # noqa: BLE001 - a damaged file may break a format's sniffing in any way
            error = e if isinstance(e, FilterDBError) else ModelFormatError(
                f"{item.path}: the file's format cannot be recognised ({type(e).__name__}: {e})")
            if not keep_going:
                raise error from e
            unrecognised.append((item.spec, str(error)))
            continue
        recognised.append(item)
    return _Planned(recognised, metadata, match, unrecognised)


def _skip_known(target: Store, items: list[SourceItem], shas: list[str], report: IngestReport,
                progress: Callable[[IngestEvent], None] | None, metadata: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Report the models already in the store as skipped; the positions of the ones left to ingest (the
    same bytes twice in one run are ingested once)."""
    todo: list[int] = []
    pending: set[str] = set()
    known = target.catalog.hashes() if items else set()
    names = [name_for(item.spec, metadata.get(item.key)) for item in items]
    add_aliases(target, [(sha, name, item.spec)  # the same bytes met again: an alias
                        for item, sha, name in zip(items, shas, names) if sha in known])
    for i, (item, sha) in enumerate(zip(items, shas)):
        if sha in pending:
            continue
        if sha in known:
            result = target.existing(sha)
            if names[i] != result.model:
                result = replace(result, alias=names[i])
            report.results.append(result)
            if progress:
                progress(IngestEvent("skipped", i, len(items), item.spec, result))
        else:
            pending.add(sha)
            todo.append(i)
    return todo


def _prepare_all(jobs: list[PrepareJob], n_jobs: int
                 ) -> Generator[tuple[PrepareJob, PreparedModel | None, BaseException | None], None, None]:
    """(job, prepared model, None) or (job, None, error) per job, in job order: read in this process
    (``n_jobs`` 1) or in a pool of worker processes, at most two models per worker in memory."""
    if n_jobs == 1:
        for job in jobs:
            try:
                prepared = _read_and_prepare(job)
            except Exception as e:  # noqa: BLE001 - reported per model
                yield job, None, e
                continue
            yield job, prepared, None
        return
    with _pool(n_jobs) as pool:
        window: list[tuple[PrepareJob, Future[PreparedModel]]] = []
        queue = list(jobs)
        try:
            while queue or window:
                while queue and len(window) < 2 * n_jobs:
                    job = queue.pop(0)
                    window.append((job, pool.submit(_read_and_prepare, job)))
                job, future = window.pop(0)
                try:
                    prepared = future.result()
                except Exception as e:  # noqa: BLE001
                    yield job, None, e
                    continue
                yield job, prepared, None
        except BaseException:  # includes GeneratorExit: the consumer stopped (an error it raised)
            for _, future in window:
                future.cancel()
            raise


def _failed(job: PrepareJob, error: BaseException, report: IngestReport, keep_going: bool, total: int,
            progress: Callable[[IngestEvent], None] | None) -> None:
    """A model that could not be read: stop the run, or (keep_going) report it and go on."""
    message = str(error) if isinstance(error, FilterDBError) else f"{type(error).__name__}: {error}"
    if not keep_going:
        raise IngestError(f"{job.spec}: {message}; {len(report.ingested)} model(s) ingested before it stay in the "
                          "store, run the ingest again to continue (or use --keep-going)") from error
    report.failed.append((job.spec, message))
    if progress:
        progress(IngestEvent("failed", job.index, total, job.spec, error=message))


def _commit(target: Store, job: PrepareJob, prepared: PreparedModel, report: IngestReport, total: int,
            progress: Callable[[IngestEvent], None] | None) -> None:
    """Write one prepared model (atomic, under the writer lock), then save its lineage fingerprint."""
    try:
        result = _write(target, prepared)
    except StoreWriteError as e:  # a full disk stops the run (--keep-going skips bad files, not bad disks)
        raise StoreWriteError(f"{job.spec}: {e}; {len(report.ingested)} model(s) ingested before it stay in "
                              "the store, run the ingest again to continue") from e
    report.results.append(result)
    if progress:
        progress(IngestEvent("skipped" if result.skipped else "done", job.index, total, job.spec, result))


def ingest(
    store: Store | str | os.PathLike[str],
    sources: Sequence[str | os.PathLike[str]] = (),
    *,
    manifest: str | os.PathLike[str] | Manifest | None = None,
    required: Iterable[str] | None = None,
    strict: bool = True,
    keep_going: bool = False,
    jobs: int | None = None,
    trust_pickle: bool = False,
    create: bool = False,
    lock_timeout: float | None = 600.0,
    progress: Callable[[IngestEvent], None] | None = None,
) -> IngestReport:
    """Ingest model files (with manifest metadata) into a store.

    In four stages: planning (sources and manifest -> files, checked before the store is touched),
    skipping (files whose sha256 the store holds), preparing (reading and converting, in this process or
    in worker processes) and committing (one atomic write per model, in source order).

    Parameters
    ----------
    store : Store or path
        An open store (mode "a") or its path.
    sources : sequence of str
        Files, directories (walked recursively) and source names (``pypi:...``). Empty with a manifest:
        every file the manifest names.
    manifest : path or Manifest, optional
        Metadata per model (CSV, YAML or JSON; see :mod:`filterdb.manifest`).
    required : iterable of str, optional
        Fields every manifest row must fill; default name, task, visual_category, training_dataset.
    strict : bool, default True
        Refuse to start when the manifest and the files do not match (files without a row, rows without a
        file, empty required fields). False ingests what matches and reports the rest.
    keep_going : bool, default False
        Skip models that fail to read and report them, instead of stopping at the first one.
    jobs : int, optional
        Worker processes that read files; default: the number of cores when there are more than two files
        and at least 256 MB to read (below that, starting the workers costs more than it saves), else 1.
    create : bool
        Create the store if the path holds none.
    lock_timeout : float or None
        Seconds to wait for another writer's lock on each model (None: forever).
    progress : callable, optional
        Called with an :class:`IngestEvent` per model.

    Examples
    --------
    >>> report = ingest("zoo.fdb", ["models/"], manifest="zoo.csv", create=True)  # doctest: +SKIP
    >>> len(report.ingested), report.n_filters  # doctest: +SKIP
    """
    from .readers import ReadOptions

    started = time.perf_counter()
    read_options = ReadOptions(trust_pickle=trust_pickle)
    planned = _plan(sources, manifest, required, strict, keep_going, read_options)
    items = planned.items
    if create and not isinstance(store, Store):
        init_store(store, exist_ok=True).close()
    target = as_store(store, "a", lock_timeout=lock_timeout)
    report = IngestReport(match=planned.match, failed=list(planned.unrecognised))
    shas = [file_sha256(item.path) for item in items]
    report.bytes_read = sum(item.path.stat().st_size for item in items)
    total = len(items)
    if progress:
        progress(IngestEvent("start", 0, total, total_bytes=report.bytes_read))
    todo = _skip_known(target, items, shas, report, progress, planned.metadata)
    new = {shas[i] for i in todo}
    known = list({shas[i]: i for i in reversed(range(len(items))) if shas[i] not in new}.items())
    report.headroom_filled = _fill_headroom(target, [(sha, _reader(items[i], sha, read_options)) for sha, i in known])
    if jobs is None:  # worker processes start in ~1-3 s (imports): they pay only for a large batch of files
        todo_bytes = sum(items[i].path.stat().st_size for i in todo)
        jobs = (os.cpu_count() or 1) if todo_bytes >= PARALLEL_MIN_BYTES and len(todo) > 2 else 1
    options = PrepareOptions(target.dtype, read_options)
    work = [PrepareJob(i, items[i].spec, str(items[i].path), planned.metadata.get(items[i].key, {}), shas[i], options)
            for i in todo]
    # closing: a failure stops the workers at once, not when the traceback is collected
    with closing(_prepare_all(work, max(1, min(jobs, len(work))))) as prepared_models:
        for job, prepared, error in prepared_models:
            if error is not None:
                _failed(job, error, report, keep_going, total, progress)
            else:
                assert prepared is not None
                _commit(target, job, prepared, report, total, progress)
    first: dict[str, str] = {}  # the same bytes twice in this run: the later files are aliases of the first
    add_aliases(target, [(sha, name_for(item.spec, planned.metadata.get(item.key)), item.spec)
                        for item, sha in zip(items, shas) if first.setdefault(sha, item.spec) != item.spec])
    report.seconds = time.perf_counter() - started
    return report
