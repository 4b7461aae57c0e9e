"""What the terminal shows of stored text, and DataFrames for the store commands.

Every name, producer, path or cell that came from a file or a store goes through this module before it
reaches a terminal (docs/security.md, "What the terminal shows"):

- :func:`safe_text` shows the characters a terminal would obey instead of print — C0/C1 controls (ESC
  starts OSC titles, clear-screen, OSC 8 hyperlinks), DEL, bidi overrides and line separators — as visible
  escapes (``\\x1b``, ``\\u202e``);
- :func:`text_cell` makes a rich ``Text`` of it: a cell is text, never markup or emoji codes;
- :func:`markup_safe` is the same for a value put inside a markup string (``f"[bold]{markup_safe(name)}[/]"``);
- :func:`csv_cell` / :func:`csv_frame` add the spreadsheet-injection guard to CSV cells.

:func:`print_frame` prints a DataFrame as a table when every cell fits whole at the terminal's width, else
one block per row (no value is ever split or cut); CSV and JSON for scripts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

import click

from .._format import number
from ._app import console

if TYPE_CHECKING:
    import pandas as pd
    from rich.text import Text

__all__ = ["FORMAT_OPTION", "print_frame", "safe_text", "text_cell", "markup_safe", "csv_cell", "csv_frame", "json_safe_text",
           "print_blocks", "pack"]

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                             show_default=True, help="Output format (table: control characters shown escaped; "
                                                     "csv: also guarded against spreadsheet formulas; json: exact).")

# Integer columns that are identifiers or codes, not quantities: shown without thousands separators.
_PLAIN_INTEGERS = ("model_id", "layer_id", "layer_index", "version", "opset", "spatial_ndim", "groups")

# What a terminal obeys instead of showing: C0 controls, DEL and C1 controls (ESC/CSI/OSC sequences), the
# bidi embeddings, overrides and isolates that reorder a line (Trojan Source), and the Unicode line breaks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe_text(value: Any, *, newlines: bool = False) -> str:
    """``str(value)`` with every control, bidi and line-break character shown as a visible escape.

    ``newlines``: keep line feeds as line breaks (messages that span lines; a cell never does).

    >>> safe_text("conv\\x1b]0;pwned\\x07 \\u202eabc")
    'conv\\\\x1b]0;pwned\\\\x07 \\\\u202eabc'
    """
    text = str(value)
    if newlines:
        return "\n".join(_UNSAFE.sub(_visible, line) for line in text.split("\n"))
    return _UNSAFE.sub(_visible, text)


def text_cell(value: Any, style: str = "") -> Text:
    """A rich ``Text`` of :func:`safe_text`: shown literally (no markup, no ``:emoji:`` codes)."""
    from rich.text import Text

    return Text(safe_text(value), style=style)


def markup_safe(value: Any) -> str:
    """:func:`safe_text`, then rich's markup escape: for a stored value inside a markup string."""
    from rich.markup import escape

    return escape(safe_text(value))


def json_safe_text(text: str) -> str:
    """JSON text with DEL written as ``\\u007f``: the one control that JSON allows raw (and ASCII-only
    output keeps all others escaped). The data is unchanged: a JSON parser reads the same string."""
    return text.replace("\x7f", "\\u007f")


def _guard_field(field: str) -> str:
    if field.startswith(_FORMULA_START) and not _is_number(field):
        return "'" + field
    return field


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A CSV cell made safe: text gets its controls escaped (:func:`safe_text`) and, when it starts with
    ``= + - @`` (or tab / CR) and is not a number, a leading ``'``, so that a spreadsheet shows it as text
    instead of running it as a formula. Anything that is not text (numbers: ``-0.5``) is left as it is."""
    if not isinstance(value, str):
        return value
    return _guard_field(safe_text(value) if _UNSAFE.search(value) else value)


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`csv_cell` applied to every text cell (numeric columns untouched)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype).startswith("str"):
            out[column] = out[column].map(csv_cell)
    return out


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (list, tuple)) and getattr(value, "ndim", 0) == 0 else False
    except (ImportError, TypeError, ValueError):
        return value is None


def _cell(value: Any, column: str = "") -> str:
    """The text of one cell (safe for a terminal)."""
    if column == "verdicts" and value is not None and not isinstance(value, str) and hasattr(value, "__len__"):
        return safe_text(", ".join(str(v) for v in value) or "ok")  # no verdict is what `check` calls ok
    if value is None or _is_missing(value):
        return ""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        items = value.tolist() if hasattr(value, "tolist") else value
        return safe_text(", ".join(str(v) for v in items))
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value))
    if column in _PLAIN_INTEGERS or column.endswith("_id"):
        return safe_text(value)
    if isinstance(value, (int, float)) or type(value).__name__.startswith(("int", "uint", "float")):
        return number(value)
    text = str(value)
    return "" if text in ("nan", "<NA>", "NaT", "None") else safe_text(text)


def _headers(names: list[str], widths: list[int]) -> list[str]:
    """Column headers that break after an underscore (never inside a word) down to their column's widest
    value, so that a header never makes its column wider than its values need."""
    out = []
    for name, width in zip(names, widths):
        parts = [p + "_" for p in name.split("_")]
        parts[-1] = parts[-1][:-1]
        target = max(width, max(len(p) for p in parts))
        lines = [""]
        for part in parts:
            if lines[-1] and len(lines[-1]) + len(part) > target:
                lines.append("")
            lines[-1] += part
        out.append("\n".join(lines))
    return out


def print_frame(frame: pd.DataFrame, fmt: str = "table", title: str | None = None, max_rows: int | None = None,
                key: Sequence[str] | None = None) -> None:
    """Print ``frame``: a table when every cell fits whole at the terminal's width, else one block per row.

    ``key``: the columns that name a row (the block's first line); default the first text column.
    CSV goes through :func:`csv_frame`; JSON is the exact data (JSON escapes controls itself).
    """
    if fmt == "csv":
        click.echo(csv_frame(frame).to_csv(index=False), nl=False)
        return
    if fmt == "json":
        click.echo(json_safe_text(frame.to_json(orient="records", date_format="iso", default_handler=str)))
        return
    shown = frame if max_rows is None else frame.head(max_rows)
    names = [safe_text(c) for c in frame.columns]
    cells = [[_cell(v, str(frame.columns[i])) for i, v in enumerate(row)] for row in shown.itertuples(index=False)]
    numeric = [str(frame[c].dtype).startswith(("int", "float", "Int", "Float", "UInt")) for c in frame.columns]
    if not _print_table(names, cells, numeric, title):
        if key is None:
            key = [c for c, is_number in zip(frame.columns, numeric) if not is_number][:1]
        print_blocks(names, cells, [list(frame.columns).index(k) for k in key if k in frame.columns], title)
    if max_rows is not None and len(frame) > max_rows:
        console.print(f"... {len(frame) - max_rows} more rows (use --limit or --format csv)", markup=False)


def _print_table(names: list[str], cells: list[list[str]], numeric: list[bool], title: str | None) -> bool:
    """Print a table if each column fits its widest cell and header word; False (nothing printed) if not."""
    from rich.table import Table
    from rich.text import Text

    widths = [max((len(r[i]) for r in cells), default=0) for i in range(len(names))]
    headers = names  # whole headers when they fit, else broken after underscores
    for headers in (names, _headers(names, widths)):
        columns = [max(w, *(len(line) for line in h.split("\n"))) for w, h in zip(widths, headers)]
        if sum(columns) + 3 * len(columns) + 1 <= console.width:
            break
    else:
        return False
    table = Table(title=text_cell(title) if title else None, show_lines=False, header_style="bold")
    for header, width, is_number in zip(headers, columns, numeric):
        header_text = Text("\n").join(text_cell(line) for line in header.split("\n"))  # broken after "_"
        table.add_column(header_text, justify="right" if is_number else "left", no_wrap=True, min_width=width)
    for row in cells:
        table.add_row(*(text_cell(c) for c in row))
    console.print(table)
    return True


def pack(parts: Sequence[str], width: int, sep: str = ", ") -> list[str]:
    """``parts`` joined by ``sep`` into lines of at most ``width`` characters, never breaking a part (a part
    longer than ``width`` gets a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


def print_blocks(names: Sequence[str], cells: Sequence[Sequence[str]], key: Sequence[int],
                 title: str | None = None) -> None:
    """One block per row: its number and key cells in bold, then ``column value`` pairs packed into lines of
    the terminal's width. A pair never breaks across lines; only a value longer than a whole line folds."""
    from rich.text import Text

    if title:
        console.print(text_cell(title, style="bold"))
    width = max(console.width, 20)
    indent = "    "
    for index, row in enumerate(cells, 1):
        head = " · ".join(row[i] for i in key if row[i]) or ""
        console.print(Text(f"{index:>3} ", style="bold") + text_cell(head, style="bold"), overflow="fold")
        line = Text(indent)
        for i, (name, value) in enumerate(zip(names, row)):
            if i in key:
                continue
            pair = Text.assemble((name, "dim"), " ", value or "–")
            sep = Text("   ") if line.cell_len > len(indent) else Text("")
            if line.cell_len > len(indent) and line.cell_len + len(sep) + pair.cell_len > width:
                console.print(line, overflow="fold")
                line, sep = Text(indent), Text("")
            line += sep
            line += pair
        if line.cell_len > len(indent):
            console.print(line, overflow="fold")
