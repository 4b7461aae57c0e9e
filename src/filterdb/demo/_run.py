"""run_demo: the whole demo pipeline (zoo manifest, downloads, ingest, report) as one library call."""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from ._zoo import build_demo_zoo

__all__ = ["DemoProgress", "DemoResult", "run_demo", "source_file_name"]

REPORT_TITLE = "filterdb demo zoo"


class DemoProgress(Protocol):
    """What :func:`run_demo` reports while it runs (the library never prints; the CLI draws it)."""

    def phase(self, name: str, total: int, what: str = "") -> None:
        """A new phase ("zoo", "download", "ingest", "report") of ``total`` steps begins."""

    def step(self, text: str) -> None:
        """One step of the current phase is done."""

    def say(self, text: str) -> None:
        """A status line inside the current phase (e.g. a digits model trained)."""


class _Silent:
    def phase(self, name: str, total: int, what: str = "") -> None:
        pass

    def step(self, text: str) -> None:
        pass

    def say(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` built and found."""

    store_path: Path  # the filter store, in the work folder
    report_path: Path  # the HTML report
    summary: dict[str, Any]  # the report's summary: n_models, n_filters, drift, degenerated_layers, figures, ...
    n_ingested: int  # model files ingested by this run
    n_skipped: int  # model files already in the store
    notes: tuple[str, ...] = ()  # what was left out and why
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: zoo, download, ingest, report, total


def source_file_name(spec: str) -> str:
    """The file name a zoo source ends in: ``"pypi:pkg==1#pkg/data/pnet.pt"`` -> ``"pnet.pt"``."""
    return spec.rsplit("#", 1)[-1].rstrip("/").rsplit("/", 1)[-1]


def run_demo(report_path: str | os.PathLike[str], *, workdir: str | os.PathLike[str] | None = None,
             include_digits: bool = True, models: Sequence[str] = (), figures_dir: str | os.PathLike[str] | None = None,
             progress: DemoProgress | None = None, train_digits: bool = False) -> DemoResult:
    """Build a filter store from the demo zoo, run the study and write the HTML report.

    Parameters
    ----------
    report_path : path
        The HTML file to write; its folder must exist.
    workdir : path, optional
        Folder for the manifest, the store (``store.fdb``) and the digits models. Default: ``demo/`` in
        filterdb's cache folder. Downloads are cached and the store is content-addressed, so a second run
        only writes the report again.
    include_digits : bool, default True
        Add the digits family (small CNNs shipped with the package; no framework needed).
    models : sequence of str
        Glob patterns: only the zoo's files whose name matches one of them (e.g. ``"pnet.pt"``, ``"digits-*"``).
    figures_dir : path, optional
        Also save the report's main figures as PNGs in this folder.
    progress : DemoProgress, optional
        Told of each phase and step.
    train_digits : bool, default False
        Train the digits family here with torch (and scikit-learn) instead of using the shipped files. The
        trained files and their store are kept apart (``digits-trained/``, ``store-trained.fdb``), so that a
        torch release that trains slightly different weights never mixes them with the shipped ones.

    Returns
    -------
    DemoResult

    Raises
    ------
    filterdb.errors.UsageError
        The report's folder does not exist, or no zoo file matches ``models``.
    filterdb.errors.MissingDependencyError
        matplotlib is missing, or torch/scikit-learn with ``train_digits``.

    Examples
    --------
    >>> result = run_demo("demo.html", include_digits=False, models=["pnet.pt"])  # doctest: +SKIP
    >>> result.summary["n_models"]  # doctest: +SKIP
    1
    """
    from ..analysis import study
    from ..ingest import IngestEvent, ingest
    from ..report import write_zoo_report
    from .._cache import cache_dir
    from ..sources import is_source_name, resolve_source
    from ..store import open_store

    from ..plotting import require_matplotlib

    require_matplotlib()  # the report needs matplotlib: say so before any work (MissingDependencyError)
    display = progress or _Silent()
    report = Path(os.fspath(report_path)).expanduser().absolute()
    if not report.parent.is_dir():  # say so before minutes of work, not after
        raise UsageError(f"--output: {report.parent} is not a folder; create it or write the report elsewhere")
    work = Path(os.fspath(workdir)).expanduser() if workdir is not None else cache_dir() / "demo"
    store_path = work / ("store-trained.fdb" if train_digits else "store.fdb")
    started = time.perf_counter()

    display.phase("zoo", 3, f"building the zoo manifest in {work}")
    zoo = build_demo_zoo(work, include_digits=include_digits, train=train_digits, progress=display.say)
    sources = list(zoo.sources)
    if models:
        sources = [s for s in sources if any(fnmatch.fnmatch(source_file_name(s), p) for p in models)]
        if not sources:
            raise UsageError(f"--models {' '.join(models)}: no file of the zoo matches; the zoo has "
                             + ", ".join(source_file_name(s) for s in zoo.sources))
    t_zoo = time.perf_counter()

    display.phase("download", len(sources), f"{len(sources)} model files (cached after the first run)")
    for spec in sources:  # cached after the first run: resolving is a file check
        display.step(source_file_name(spec))
        if is_source_name(spec) and not Path(spec).exists():
            resolve_source(spec)
    t_download = time.perf_counter()

    display.phase("ingest", len(sources), f"{len(sources)} model files into {store_path}")

    def on_event(event: IngestEvent) -> None:
        if event.kind != "start":
            display.step(source_file_name(event.spec) + (" (already stored)" if event.kind == "skipped" else ""))

    ingested = ingest(store_path, sources, manifest=zoo.manifest_path, create=True, progress=on_event)
    t_ingest = time.perf_counter()

    store = open_store(store_path)
    n_models = len(store.models())
    display.phase("report", 10 + n_models, f"the study of {n_models} models and its figures")
    result = study(store, progress=display.step)
    written = write_zoo_report(report, result, store, title=REPORT_TITLE, progress=display.step,
                               figures_dir=None if figures_dir is None else Path(os.fspath(figures_dir)))
    summary = dict(written.summary)
    # the summary states the study's findings (their rules: docs/report.md), also when the page's section failed
    summary.setdefault("findings", [f.to_dict() for f in result.findings])
    t_report = time.perf_counter()
    seconds = {"zoo": t_zoo - started, "download": t_download - t_zoo, "ingest": t_ingest - t_download,
               "report": t_report - t_ingest, "total": t_report - started}
    return DemoResult(store_path=store_path, report_path=written.path or report, summary=summary,
                      n_ingested=len(ingested.ingested), n_skipped=len(ingested.skipped), notes=tuple(zoo.notes),
                      seconds=seconds)
