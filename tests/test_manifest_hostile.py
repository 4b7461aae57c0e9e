"""Hostile manifests: bounded time and memory, one clear error (the inputs are generated here).

The process-level tests run `filterdb ingest` in a child process and read its peak memory (VmHWM) and
exit code; the 120 s timeout only stops a hang, it is not a speed claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import PEAK_KIB_SOURCE

from filterdb import ingest_record
from filterdb.manifest import MAX_COLUMNS, ManifestError, load_manifest
from filterdb.store import StoreError, init_store
from filterdb.testing import synthetic_record, write_manifest

SRC = str(Path(__file__).resolve().parents[1] / "src")

CHILD = """
import json, resource, sys
from filterdb.cli import main
""" + PEAK_KIB_SOURCE + """
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "peak_mb": _peak_kib() / 1024}))
"""


def run_cli(*argv) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic YAML alias bomb: width**levels strings from a few hundred bytes."""
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    lines.append(f"models: [{{file: m.onnx, name: n, task: t, visual_category: v, training_dataset: d, "
                 f"notes: *l{levels}}}]")
    return "\n".join(lines) + "\n"


def alias_flood(n: int) -> str:
    """Many aliases, each small (what the alias limit is for)."""
    rows = "\n".join(f"  - {{<<: *d, file: m{i}.onnx, name: n{i}}}" for i in range(n))
    return "defaults: &d {task: t, visual_category: v, training_dataset: d}\nmodels:\n" + rows + "\n"


@pytest.fixture()
def model(tmp_path):
    """A small real model file (safetensors, written here)."""
    from safetensors.numpy import save_file

    record = synthetic_record(1)
    path = tmp_path / "m.safetensors"
    save_file({layer.name + ".weight": layer.weight for layer in record.layers}, str(path))
    return path


def test_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path, model):
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text(billion_laughs().replace("m.onnx", model.name))
    assert len(manifest.read_bytes()) < 1000  # 9**9 = 387 M strings
    with pytest.raises(ManifestError, match="row 1, column 'notes': a value is text or a number, not a list"):
        load_manifest(manifest)
    result, err = run_cli("ingest", tmp_path / "db", "--init", "--manifest", manifest, "--no-progress")
    assert result["code"] == 1 and "not a list" in err and "unexpected" not in err
    assert result["peak_mb"] < 1024, result  # the bomb itself would need gigabytes
    assert not (tmp_path / "db").exists()  # refused before the store was touched


def test_too_many_yaml_aliases(tmp_path):
    manifest = tmp_path / "flood.yaml"
    manifest.write_text(alias_flood(10_001))
    with pytest.raises(ManifestError, match="more than 10,000 aliases"):
        load_manifest(manifest, required=[])
    manifest.write_text(alias_flood(50))  # a real manifest's use of aliases still works
    assert len(load_manifest(manifest).rows) == 50


def test_thousands_of_extra_columns_are_refused(tmp_path, model):
    row = {"file": model.name, "Name": "n", "Task": "t", "Visual Category": "v", "Training-Dataset": "d"}
    row.update({f"extra {i}": "x" for i in range(3000)})
    manifest = write_manifest(tmp_path / "wide.csv", [row])
    with pytest.raises(ManifestError, match=f"more than {MAX_COLUMNS} distinct columns"):
        load_manifest(manifest)
    result, err = run_cli("ingest", tmp_path / "db", "--init", "--manifest", manifest, "--no-progress")
    assert result["code"] == 1 and "distinct columns" in err and not (tmp_path / "db").exists()
    # the same through the Python API: the store bounds the columns of the models view
    store = init_store(tmp_path / "api")
    with pytest.raises(StoreError, match="more than 512"):
        ingest_record(store, synthetic_record(2), {f"extra {i}": "x" for i in range(3000)})
    assert store.models().empty
    row = {k: v for k, v in row.items() if not k.startswith("extra")} | {f"extra {i}": "x" for i in range(200)}
    assert len(load_manifest(write_manifest(tmp_path / "ok.csv", [row])).extra_columns) == 200


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deeply_nested_manifest(tmp_path, suffix):
    manifest = tmp_path / f"deep{suffix}"
    manifest.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ManifestError, match="nested too deeply|flat mapping"):
        load_manifest(manifest)


@pytest.mark.parametrize("value", ["[1, 2]", "{a: 1}"])
def test_values_must_be_scalars(tmp_path, value):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{file: m.onnx, name: n, task: {value}}}\n")
    with pytest.raises(ManifestError, match="row 1, column 'task': a value is text or a number"):
        load_manifest(manifest, required=[])


def test_oversized_manifest_is_refused_unread(tmp_path):
    manifest = tmp_path / "huge.csv"
    with open(manifest, "wb") as fh:  # sparse: no disk space used
        fh.truncate(65 << 20)
    with pytest.raises(ManifestError, match="more than the 67,108,864 a manifest may have"):
        load_manifest(manifest)


def test_require_file_is_accepted(tmp_path, model, capsys):
    manifest = write_manifest(tmp_path / "zoo.csv", [{"file": model.name, "Name": "n"}])
    loaded = load_manifest(manifest, required=["file", "name"])
    assert loaded.required == ("name",)
    from filterdb.cli import main

    with pytest.raises(SystemExit) as info:
        main(["ingest", str(tmp_path / "db"), "--init", "--manifest", str(manifest), "--require", "file",
              "--no-progress"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert "ingested 1 model(s)" in out
