"""Hostile names never reach the terminal raw (issue 17, items 6, 7, 11): escape sequences, bidi overrides, rich
markup and spreadsheet formulas in layer, producer, model and metadata names, through every table command
(a bounded slice of bench/fuzz_names.py). The names come from real ONNX files and a real manifest."""

from __future__ import annotations

import csv
import io
import json

import pytest

from filterdb._names import display_name
from fuzz_names import (FIXED, build_store, hostile_names, plain, run_in_pty, shown_form, table_commands,
                        terminal_problems)
from helpers import run_cli

SEED = 17
N_MIXED = 7  # + the fixed cases; the campaign in bench/fuzz_names.py runs hundreds


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    names = hostile_names(SEED, N_MIXED)
    store, files = build_store(root, names)
    return names, store, files


def _layer_names(files, names, per_model=8):
    """The layer names build_store wrote into the first file (a '#j' suffix on a repeated name)."""
    chunk = [name for _, name in names][:per_model]
    return [f"{name}{'' if chunk.index(name) == j else f'#{j}'}" for j, name in enumerate(chunk)]


def test_no_command_lets_a_control_or_bidi_character_through(hostile, capsys):
    names, store, files = hostile
    tried = 0
    for model in files:
        for argv in table_commands(store, model):
            code, out, err = run_cli(capsys, *argv)
            tried += 1
            assert code == 0, (argv, err)
            assert terminal_problems(out) == [], argv
            assert terminal_problems(err) == [], argv
    assert tried == len(files) * len(table_commands(store, files[0]))


def test_every_name_is_shown_visibly_escaped(hostile, capsys):
    names, store, files = hostile
    _, out, _ = run_cli(capsys, "check", files[0])
    for name in _layer_names(files, names):
        assert shown_form(display_name(name)) in out, repr(name)
    _, out, _ = run_cli(capsys, "sql", store, "SELECT layer, producer FROM layers")
    for _, name in names[:8]:
        assert shown_form(name) in out, repr(name)
    assert "owned" in out and "click" in out and "hidden" in out  # the payload is shown, not obeyed


def test_markup_in_a_stored_name_is_text(hostile, capsys):
    """A layer named '[/bold]x' used to fail `layers` and `sql` for the whole store; '[link=…]y[/link]' was a
    hyperlink."""
    names, store, files = hostile
    for argvs in ([["layers", store]], [["sql", store, "SELECT layer FROM layers"]],
                  [["check", files[1]], ["check", files[2]]], [["inspect", files[1]], ["inspect", files[2]]]):
        shown = ""
        for argv in argvs:  # the markup names sit in the 2nd and 3rd file
            code, out, err = run_cli(capsys, *argv)
            assert code == 0, err
            shown += out
        for literal in ("[/bold]x", "[link=https://example.invalid/]y[/link]", "[bold red on white]z", "[/]"):
            assert literal in shown, (argvs, literal)


def test_a_real_terminal_gets_no_escape_sequence_from_a_name(hostile):
    """In a pseudo-terminal rich colours its output (SGR codes): those are the only sequences there."""
    _, store, files = hostile
    for argv in (["layers", str(store)], ["check", str(files[0])], ["sql", str(store), "SELECT * FROM layers"]):
        text = run_in_pty(argv, columns=120)
        assert "\x1b]" not in text and "\x1b[2J" not in text and "\x9b" not in text and "\x9d" not in text
        assert terminal_problems(text, tty=True) == [], argv
        assert "conv\\x1b]0" in plain(text)


def test_csv_cells_are_guarded_against_formulas_but_numbers_are_not(hostile, capsys):
    names, store, files = hostile
    formulas = [name for what, name in FIXED if what.startswith("csv-") and not name.startswith(("\t", "\r"))]
    for argv, column in ((["layers", store, "--format", "csv"], "layer"), (["check", files[2], "--csv"], "name")):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0
        rows = list(csv.DictReader(io.StringIO(out)))
        cells = [row[column] for row in rows]
        for formula in formulas:
            matching = [c for c in cells if c.lstrip("'").startswith(formula)]
            assert matching and all(c.startswith("'") for c in matching), (argv, formula, matching)
        for cell in (value for row in rows for value in row.values()):
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            if cell.startswith("-"):
                float(cell)  # only numbers may start with a minus: the negative metrics stay numbers
        negative = [row for row in rows if row.get("neighbour_corr", "").startswith("-")]
        assert negative, "the fixture must have negative numbers to prove they are left alone"
    # tab and CR first: shown escaped, so no cell starts with them either
    _, out, _ = run_cli(capsys, "layers", store, "--format", "csv")
    assert "\\t=1+1" in out and "\\r=1+1" in out


def test_json_keeps_the_exact_names(hostile, capsys):
    names, store, files = hostile
    _, out, _ = run_cli(capsys, "check", files[0], "--json")
    assert [layer["name"] for layer in json.loads(out)["layers"]] == _layer_names(files, names)
    _, out, _ = run_cli(capsys, "layers", store, "--format", "json")
    stored = {row["layer"] for row in json.loads(out)}
    assert set(_layer_names(files, names)) <= stored
    assert terminal_problems(out) == []  # exact data, written with JSON escapes
