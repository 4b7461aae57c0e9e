"""The shared selection options: one declaration, one Selection, and commands that keep options of their own."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from filterdb.cli import main
from filterdb.cli._options import selection_options


@click.command()
@click.option("--by", "axes", multiple=True)  # a command's own repeatable --by, as `filterdb report` has
@selection_options(shape="3x3")
def own_by(axes, selection):
    click.echo(json.dumps({"axes": list(axes), **selection.to_dict()}))


@click.command()
@selection_options(shape=False, by="optional")
def no_shape(selection):
    click.echo(json.dumps(selection.to_dict()))


def test_a_command_keeps_its_own_by_next_to_the_shared_options():
    result = CliRunner().invoke(own_by, ["--by", "task", "--by", "depth", "--where", "task = ? AND n_filters > ?",
                                         "-p", "Classification", "-p", "16", "--shape", "5x5"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"axes": ["task", "depth"], "shape": "5x5",
                                         "where": "task = ? AND n_filters > ?", "params": ["Classification", 16],
                                         "by": None, "groups": None}


def test_without_a_shape_option_the_selection_has_none():
    result = CliRunner().invoke(no_shape, ["--by", "task"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["shape"] is None and json.loads(result.output)["by"] == "task"
    assert "--shape" not in CliRunner().invoke(no_shape, ["--help"]).output


@pytest.mark.parametrize("command", ["layers", "export", "report"])
def test_the_store_commands_declare_the_shared_options(command):
    result = CliRunner().invoke(__import__("filterdb.cli", fromlist=["app"]).app, [command, "--help"])
    assert result.exit_code == 0
    for option in ("--where", "-p, --param"):
        assert option in result.output


@pytest.mark.parametrize("args", [
    ["layers", "{store}", "-p", "1"],                         # a value without a --where to bind it to
    ["export", "{store}", "{out}", "--shape", "3X3"],         # a malformed kernel shape
    ["report", "{store}", "--shape", "3*3", "-o", "{out}"],
])
def test_selection_mistakes_exit_2_with_one_line(tmp_path, capsys, args):
    from filterdb.store import init_store

    init_store(tmp_path / "s.fdb").close()
    argv = [a.format(store=tmp_path / "s.fdb", out=tmp_path / "o.h5") for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert not (tmp_path / "o.h5").exists()
