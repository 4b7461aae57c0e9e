"""filterdb demo end to end on a reduced zoo: store, study, report, summary; a second run reuses everything."""

from __future__ import annotations

import contextlib
import io
import re
import time

import pytest

pytest.importorskip("matplotlib", reason="the demo's report needs the 'plot' extra (matplotlib)")

from test_zoo_report import assert_report_renders, parse

from filterdb.cli import main
from filterdb.store import open_store

REDUCED = ("digits-cnn-w2*", "digits-overparam*", "pnet.pt", "onet.pt")


def run_demo(*args):
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["demo", "--no-progress", *args])
        except SystemExit as e:
            code = e.code
        else:
            code = 0
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - started


@pytest.fixture(scope="module")
def demo(tmp_path_factory, corpus_path):
    pytest.importorskip("torch", reason="the digits family is trained with torch")
    corpus_path("pnet.pt"), corpus_path("onet.pt")  # skips when the package index cannot be reached (cached after)
    work = tmp_path_factory.mktemp("demo")
    args = ["--workdir", str(work), *[a for p in REDUCED for a in ("--models", p)]]
    first = run_demo(*args)
    second = run_demo(*args)
    return work, first, second


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.slow
def test_demo_builds_the_store_runs_the_study_and_writes_the_report(demo):
    work, (code, out, err, seconds), _ = demo
    assert code == 0, err
    assert seconds < 60
    names = set(open_store(work / "store.fdb").models()["model"])
    assert {"digits-cnn-w2", "digits-cnn-w2-untrained", "digits-cnn-w2-pruned", "digits-overparam"} <= names
    assert len(names) == 7  # the 4 digits models matching the patterns, the ONNX export of one, P-Net, O-Net
    assert re.search(r"filterdb demo — 7 models, [\d,]+ conv layers, [\d,]+ filters", out)
    assert "7 ingested now, 0 already in the store" in out
    assert "drift by task" in out and "most shifted:" in out
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
    _, (_, _, _, first_seconds), (code, out, err, seconds) = demo
    assert code == 0, err
    assert "0 ingested now, 7 already in the store" in out
    assert "digits: reusing" not in out  # progress lines never reach stdout
    assert seconds < first_seconds


@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.browser
def test_the_demo_report_renders_in_chromium(demo):
    work = demo[0]
    result = assert_report_renders(work / "report.html")
    assert result.dom["headings"][0] == "filterdb demo zoo"


@pytest.mark.corpus
def test_demo_without_digits_needs_no_torch(tmp_path, corpus_path):
    corpus_path("pnet.pt"), corpus_path("rnet.pt")
    code, out, err, _ = run_demo("--workdir", str(tmp_path), "--no-digits", "--models", "pnet.pt", "--models",
                                 "rnet.pt", "--figures", str(tmp_path / "img"))
    assert code == 0, err
    assert "2 models" in out and not (tmp_path / "digits").exists()
    # two groups of one task cannot drift: said in the page, not an error
    assert "figures: " in out and (tmp_path / "img" / "eigen-images.png").exists()


def test_demo_models_pattern_that_matches_nothing_is_a_user_error(tmp_path):
    code, _, err, _ = run_demo("--workdir", str(tmp_path), "--no-digits", "--models", "no-such-model*")
    assert code == 1
    assert "no file of the zoo matches" in err and "pnet.pt" in err
