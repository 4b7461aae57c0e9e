"""filterdb demo end to end on a reduced zoo: store, study, report, summary; a second run reuses everything."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib", reason="the demo's report needs the 'plot' extra (matplotlib)")

from browser import assert_report_renders
from helpers import parse

from filterdb.cli import main
from filterdb.store import open_store

REDUCED = ("digits-cnn-w2*", "digits-overparam*", "pnet.pt", "onet.pt")


def run_demo(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["demo", "--no-progress", *args])
        except SystemExit as e:
            code = e.code
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, corpus_path):
    pytest.importorskip("torch", reason="the digits family is trained with torch")
    corpus_path("pnet.pt"), corpus_path("onet.pt")  # skips when the package index cannot be reached (cached after)
    work = tmp_path_factory.mktemp("demo")
    args = ["--workdir", str(work), "-o", str(work / "report.html"), *[a for p in REDUCED for a in ("--models", p)]]
    first = run_demo(*args)
    second = run_demo(*args)
    return work, first, second


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.slow
def test_demo_builds_the_store_runs_the_study_and_writes_the_report(demo):
    work, (code, out, err), _ = demo
    assert code == 0, err
    names = set(open_store(work / "store.fdb").models()["model"])
    assert {"digits-cnn-w2", "digits-cnn-w2-untrained", "digits-cnn-w2-pruned", "digits-overparam"} <= names
    assert len(names) == 7  # the 4 digits models matching the patterns, the ONNX export of one, P-Net, O-Net
    assert re.search(r"filterdb demo — 7 models, [\d,]+ conv layers, [\d,]+ filters", out)
    assert "7 ingested now, 0 already in the store" in out
    assert "By task, the groups furthest from the others" in out  # the study's most_shifted finding
    # every degeneration kind of the family, on its known layers
    assert "digits-cnn-w2-untrained: conv2 [random], conv3 [random]" in out
    assert "digits-cnn-w2-pruned: conv2 [sparse], conv3 [sparse]" in out
    assert "digits-overparam: conv4 [low-diversity], conv5 [low-diversity]" in out
    assert f"report: {work / 'report.html'}" in out
    page = parse((work / "report.html").read_text(encoding="utf-8"))
    assert {"pca", "drift", "degeneration", "models"} <= page.ids
    assert {link[1:] for link in page.links} <= page.ids


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.slow
def test_a_second_run_reuses_the_store_and_the_downloads(demo):
    _, _, (code, out, err) = demo
    assert code == 0, err
    assert "0 ingested now, 7 already in the store" in out
    assert "digits: reusing" not in out  # progress lines never reach stdout


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.browser
def test_the_demo_report_renders_in_chromium(demo):
    work = demo[0]
    result = assert_report_renders(work / "report.html")
    assert result.dom["headings"][0] == "filterdb demo zoo"


@pytest.mark.corpus
def test_demo_without_digits_needs_no_torch(tmp_path, corpus_path, monkeypatch):
    corpus_path("pnet.pt"), corpus_path("rnet.pt")
    monkeypatch.chdir(tmp_path)  # the report goes to the current folder by default
    proc = subprocess.run([sys.executable, "-m", "filterdb", "demo", "--workdir", str(tmp_path / "work"),
                           "--no-digits", "--models", "pnet.pt", "--models", "rnet.pt", "--figures",
                           str(tmp_path / "img")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert "2 models" in out and not (tmp_path / "work" / "digits").exists()
    # two groups of one task cannot drift: said in the page, not an error
    assert "figures: " in out and (tmp_path / "img" / "eigen-images.png").exists()
    report = tmp_path / "filterdb-demo-report.html"
    assert report.is_file() and f"report: {report}" in out
    assert not (tmp_path / "work" / "report.html").exists()
    # piped, stderr shows one line per phase, in order
    phases = [m.group(1) for m in re.finditer(r"^\[ *[\d.]+ s\] (zoo|download|ingest|report):", err, re.M)]
    assert phases == ["zoo", "download", "ingest", "report"], err


def test_demo_models_pattern_that_matches_nothing_is_a_user_error(tmp_path):
    code, _, err = run_demo("--workdir", str(tmp_path), "--no-digits", "--models", "no-such-model*")
    assert code == 2  # a usage mistake
    assert "no file of the zoo matches" in err and "pnet.pt" in err


def test_demo_report_folder_must_exist(tmp_path):
    code, _, err = run_demo("--workdir", str(tmp_path), "--no-digits", "-o", str(tmp_path / "nowhere" / "r.html"))
    assert code == 2 and "is not a folder" in err


class _Recorder:
    """A DemoProgress that keeps what it was told."""

    def __init__(self):
        self.phases, self.steps = [], []

    def phase(self, name, total, what=""):
        self.phases.append((name, total))

    def step(self, text):
        self.steps.append(text)

    def say(self, text):
        pass


@pytest.mark.corpus
def test_run_demo_is_the_library_call_behind_the_command(tmp_path, corpus_path):
    from filterdb.demo import DemoResult
    from filterdb.demo import run_demo as run_demo_library
    from filterdb.errors import UsageError

    corpus_path("pnet.pt")
    progress = _Recorder()
    first = run_demo_library(tmp_path / "r.html", workdir=tmp_path / "work", include_digits=False,
                             models=["pnet.pt"], progress=progress)
    assert isinstance(first, DemoResult)
    assert first.report_path == tmp_path / "r.html" and first.report_path.is_file()
    assert first.store_path == tmp_path / "work" / "store.fdb"
    assert len(open_store(first.store_path).models()) == 1
    assert first.summary["n_models"] == 1 and (first.n_ingested, first.n_skipped) == (1, 0)
    assert [name for name, _ in progress.phases] == ["zoo", "download", "ingest", "report"]
    assert progress.phases[1] == ("download", 1) and "pnet.pt" in progress.steps
    assert set(first.seconds) == {"zoo", "download", "ingest", "report", "total"}
    again = run_demo_library(tmp_path / "r.html", workdir=tmp_path / "work", include_digits=False, models=["pnet.pt"])
    assert (again.n_ingested, again.n_skipped) == (0, 1)
    with pytest.raises(UsageError, match="no file of the zoo matches"):
        run_demo_library(tmp_path / "r.html", workdir=tmp_path / "work", include_digits=False, models=["nothing*"])
    with pytest.raises(UsageError, match="is not a folder"):
        run_demo_library(tmp_path / "absent" / "r.html", workdir=tmp_path / "work", include_digits=False)
