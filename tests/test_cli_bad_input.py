"""Bad input never crashes: one clear line on stderr naming the file, exit code 1, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from filterdb.cli import main

# a real corpus file per format, to truncate
REAL_FILE = {
    ".onnx": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ".pt": "pnet.pt",
    ".safetensors": "silero_vad_16k.safetensors",
    ".hdf5": "emotion_model.hdf5",
    ".tflite": "face_detection_short_range.tflite",
    ".lz4": "pnet.lz4",
}
EXTENSIONS = [".onnx", ".pt", ".pth", ".bin", ".safetensors", ".h5", ".hdf5", ".keras", ".tflite", ".lz4", ".pkl"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_clean_error(code: int, err: str, path: Path | str) -> None:
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    assert Path(path).name in err.replace("\n", "")


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working dir and cache dir: the commands must leave them as they were."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("FILTERDB_CACHE_DIR", str(tmp_path / "cache"))
    return work


@pytest.mark.corpus
@pytest.mark.parametrize("suffix", sorted(REAL_FILE))
@pytest.mark.parametrize("command", ["check", "inspect"])
def test_truncated_file(suffix, command, corpus_path, sandbox, capsys):
    data = corpus_path(REAL_FILE[suffix]).read_bytes()
    bad = sandbox / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    before = listing(sandbox.parent)
    code, _, err = run_cli([command, str(bad), "--trust-pickle"], capsys)
    assert_clean_error(code, err, bad)
    assert listing(sandbox.parent) == before


@pytest.mark.parametrize("suffix", EXTENSIONS)
def test_random_bytes(suffix, sandbox, capsys):
    bad = sandbox / f"random{suffix}"
    bad.write_bytes(os.urandom(5000))
    before = listing(sandbox.parent)
    code, _, err = run_cli(["check", str(bad), "--trust-pickle"], capsys)
    assert_clean_error(code, err, bad)
    assert listing(sandbox.parent) == before


@pytest.mark.parametrize("suffix", EXTENSIONS)
def test_empty_file(suffix, sandbox, capsys):
    bad = sandbox / f"empty{suffix}"
    bad.write_bytes(b"")
    code, _, err = run_cli(["check", str(bad)], capsys)
    assert_clean_error(code, err, bad)
    assert "empty" in err


def test_text_file_with_a_model_extension(sandbox, capsys):
    bad = sandbox / "notes.onnx"
    bad.write_text("this is not a model\n" * 50)
    code, _, err = run_cli(["check", str(bad)], capsys)
    assert_clean_error(code, err, bad)


def test_unknown_extension_and_content(sandbox, capsys):
    bad = sandbox / "picture.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    code, _, err = run_cli(["check", str(bad)], capsys)
    assert_clean_error(code, err, bad)
    assert "supported" in err


@pytest.mark.corpus
def test_wrong_extension_is_read_by_content(corpus_path, sandbox, capsys):
    # decision: formats are recognised by their content, so a misnamed model still reads
    renamed = sandbox / "model.tflite"
    renamed.write_bytes(corpus_path("pnet.pt").read_bytes())
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(renamed), "--json"])
    assert exc.value.code == 0
    assert '"format": "pytorch"' in capsys.readouterr().out


def test_directory(sandbox, capsys):
    code, _, err = run_cli(["check", str(sandbox)], capsys)
    assert_clean_error(code, err, sandbox)
    assert "directory" in err


def test_missing_path(sandbox, capsys):
    missing = sandbox / "nope.onnx"
    code, _, err = run_cli(["check", str(missing)], capsys)
    assert_clean_error(code, err, missing)
    assert "no such file" in err
    assert listing(sandbox) == []


def test_pickle_is_refused_without_trust(sandbox, capsys):
    import pickle

    bad = sandbox / "model.pkl"
    bad.write_bytes(pickle.dumps({"conv.weight": [1.0, 2.0]}))
    code, _, err = run_cli(["check", str(bad)], capsys)
    assert_clean_error(code, err, bad)
    assert "--trust-pickle" in err


def test_debug_env_shows_the_traceback(sandbox):
    # the console script in a real process: no traceback by default, one with FILTERDB_DEBUG=1
    missing = str(sandbox / "nope.onnx")
    cmd = [sys.executable, "-m", "filterdb", "check", missing]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "nope.onnx" in plain.stderr
    debug = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "FILTERDB_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
