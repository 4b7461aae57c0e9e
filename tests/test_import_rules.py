"""The import table of docs/architecture.md is the package's real import graph, checked both ways.

Every top-level package or module of filterdb has a row; the row lists exactly the filterdb units its code
imports (at module level, inside functions and under TYPE_CHECKING alike). An import the table does not
allow fails, and so does an allowed import nobody makes any more: the table cannot go stale.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import filterdb

PACKAGE = Path(filterdb.__file__).parent
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
ROOT = "filterdb"  # the unit of the package's own __init__.py


def unit_of(path: Path) -> str:
    """The top-level unit a source file belongs to: its package, its module, or the root."""
    parts = path.relative_to(PACKAGE).parts
    if len(parts) > 1:
        return parts[0]
    name = parts[0].removesuffix(".py")
    return ROOT if name == "__init__" else name


def module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return [ROOT, *parts]


def imported_units(source: str, package: list[str], units: set[str]) -> set[str]:
    """The filterdb units that one source file imports; ``package`` is the dotted package it lives in."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (package[: len(package) - node.level + 1] if node.level else [])
            base = base + (node.module.split(".") if node.module else [])
            # `from filterdb import errors` names a unit; `from filterdb import check_model` names the root
            targets = [base + [alias.name] if base == [ROOT] else base for alias in node.names]
        else:
            continue
        for target in targets:
            if not target or target[0] != ROOT:
                continue
            found.add(target[1] if len(target) > 1 and target[1] in units else ROOT)
    return found


def actual_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py")]
    units = {unit_of(p) for p in files}
    graph: dict[str, set[str]] = defaultdict(set)
    for path in files:
        unit = unit_of(path)
        here = module_name(path)
        package = here if path.name == "__init__.py" else here[:-1]
        graph[unit] |= imported_units(path.read_text(), package, units) - {unit}
    return {unit: graph[unit] for unit in units}


def documented_graph() -> dict[str, set[str]]:
    """Rows of the table under '## Import direction': `units` | `allowed imports` | notes."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Import direction", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|") or set(cells[0]) <= set("-: "):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        if not names:
            continue  # the header row
        allowed = set(re.findall(r"`([^`]+)`", cells[1]))
        for name in names:
            assert name not in table, f"{name} has two rows in the import table"
            table[name] = allowed
    return table


def test_every_unit_has_a_row_and_no_row_is_for_a_unit_that_is_gone() -> None:
    actual, documented = actual_graph(), documented_graph()
    assert sorted(set(actual) - set(documented)) == [], "units without a row in docs/architecture.md"
    assert sorted(set(documented) - set(actual)) == [], "rows for units that no longer exist"


def test_imports_are_exactly_what_the_table_allows() -> None:
    actual, documented = actual_graph(), documented_graph()
    undocumented = {u: sorted(actual[u] - documented[u]) for u in actual if actual[u] - documented.get(u, set())}
    stale = {u: sorted(documented[u] - actual[u]) for u in actual if u in documented and documented[u] - actual[u]}
    assert undocumented == {}, "imports the table does not allow (fix the code or the table)"
    assert stale == {}, "allowed imports no module makes any more (drop them from the table)"


def test_nothing_imports_the_cli() -> None:
    importers = sorted(unit for unit, targets in actual_graph().items() if "cli" in targets and unit != "cli")
    assert importers in ([], ["__main__"])


def test_the_check_reads_relative_and_absolute_imports() -> None:
    """The parser itself, on hand-written imports of a module in analysis/: each form maps to its unit."""
    units = {"analysis", "store", "errors", "check", ROOT}
    source = ("from ..store import Store\nfrom .. import errors\nimport filterdb.check\n"
              "from filterdb import check_model\nfrom . import pca\nimport numpy\n")
    assert imported_units(source, [ROOT, "analysis"], units) == {"store", "errors", "check", ROOT, "analysis"}


def regenerated_table() -> str:
    """The table as the code is now, keeping each row's description (and '?' for a new unit's)."""
    text = ARCHITECTURE.read_text().split("## Import direction", 1)[1].split("\n## ", 1)[0]
    described = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0]) if len(cells) >= 3 else []
        if len(names) == 1:
            described[names[0]] = cells[2]
    graph = actual_graph()
    order = [u for u in described if u in graph] + sorted(set(graph) - set(described))
    rows = ["| unit | imports exactly these filterdb units | what it is |", "|---|---|---|"]
    for unit in order:
        imports = ", ".join(f"`{t}`" for t in sorted(graph[unit])) or "nothing of filterdb"
        rows.append(f"| `{unit}` | {imports} | {described.get(unit, '?')} |")
    return "\n".join(rows)


if __name__ == "__main__":  # print the table to paste into docs/architecture.md after a change of imports
    print(regenerated_table())
