"""Line and parameter counts of checkouts, side by side, as a markdown table (issue 21's closing note).

    python bench/code_counts.py BEFORE [MIDDLE ...] AFTER

Counted from the source (``ast``), nothing imported: the ``Store`` class (lines, methods and properties), the
files the seams touched, and the parameters of the analysis entry points (every parameter, keyword-only
included; a ``*`` marker is no parameter). A file or function missing from a checkout shows "-".
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FILES = ["store/_store.py", "store/_catalog.py", "store/_segments.py", "store/_maintenance.py", "store/_verify.py",
         "analysis/_settings.py", "analysis/degeneration.py", "analysis/drift.py", "analysis/kernels.py",
         "analysis/_selection.py", "selection.py"]
# (file, function): the analysis entry points
ENTRY_POINTS = [("analysis/drift.py", "drift"), ("analysis/drift.py", "run_drift"), ("analysis/study.py", "study"),
                ("analysis/pca.py", "fit_pca"), ("analysis/histograms.py", "coefficient_histograms"),
                ("analysis/degeneration.py", "degeneration")]


def _tree(root: Path, rel: str) -> ast.Module | None:
    path = root / "src" / "filterdb" / rel
    return ast.parse(path.read_text()) if path.is_file() else None


def store_class(root: Path) -> tuple[int, int] | None:
    """(lines, methods) of class Store."""
    tree = _tree(root, "store/_store.py")
    for node in tree.body if tree else []:
        if isinstance(node, ast.ClassDef) and node.name == "Store":
            methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            return (node.end_lineno or node.lineno) - node.lineno + 1, len(methods)
    return None


def file_lines(root: Path, rel: str) -> int | None:
    path = root / "src" / "filterdb" / rel
    return len(path.read_text().splitlines()) if path.is_file() else None


def parameters(root: Path, rel: str, name: str) -> int | None:
    tree = _tree(root, rel)
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            a = node.args
            return (len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None)
                    + (a.kwarg is not None))
    return None


def main() -> None:
    roots = [Path(p) for p in sys.argv[1:]]

    def row(what: str, values: list[object]) -> None:
        print(f"| {what} | " + " | ".join("-" if v is None else str(v) for v in values) + " |")

    print("| what | " + " | ".join(str(r) for r in roots) + " |\n|---" + "|---" * len(roots) + "|")
    classes = [store_class(r) for r in roots]
    row("class Store: lines", [c and c[0] for c in classes])
    row("class Store: methods and properties", [c and c[1] for c in classes])
    for rel in FILES:
        row(f"{rel}: lines", [file_lines(r, rel) for r in roots])
    for rel, name in ENTRY_POINTS:
        row(f"`{name}` parameters", [parameters(r, rel, name) for r in roots])


if __name__ == "__main__":
    main()
