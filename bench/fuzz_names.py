"""A fuzzing campaign of hostile names: escape sequences, bidi overrides, rich markup and spreadsheet formulas
in layer, producer, model and metadata names, through every table command (issue 17, items 6, 7, 11).

Run by hand (CI runs a bounded slice in tests/test_fuzz_names.py):

    PYTHONPATH=src .venv/bin/python bench/fuzz_names.py [--names 200] [--seed 0]

Builds real ONNX files (onnx.helper) whose Conv weights and producer carry the names, and a JSON manifest
whose model names and metadata carry them, ingests them into a real store, then runs every command of
``tests/fuzz_names.table_commands`` on every file. A case is one (command, file) run; it *holds* when the
command exits 0, its stdout and stderr carry no control, bidi or line-break character (JSON output: none
raw), and markup names appear literally. Prints the counts tried / held / failed, and the failures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_names import build_store, hostile_names, table_commands, terminal_problems  # noqa: E402

from filterdb.cli import main as cli_main  # noqa: E402


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=200, help="seeded mixed names beside the fixed cases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    names = hostile_names(args.seed, args.names)
    with tempfile.TemporaryDirectory() as tmp:
        store, files = build_store(Path(tmp), names)
        tried, failures = 0, []
        for model in files:
            for argv in table_commands(store, model):
                tried += 1
                code, out, err = run(argv)
                problems = terminal_problems(out) + terminal_problems(err)
                if code != 0 or problems:
                    failures.append(f"{' '.join(argv[:1] + argv[2:])} on {model.name}: exit {code}; "
                                    f"{problems[:2]} {err.strip()[:200]}")
    print(f"hostile names: {len(names)} ({len(files)} ONNX files, {len(table_commands(store, files[0]))} commands "
          f"each); cases tried {tried}, held {tried - len(failures)}, failed {len(failures)} "
          f"({time.perf_counter() - start:.0f} s)")
    for line in failures:
        print("  FAILED", line)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
