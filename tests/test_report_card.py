"""The HTML model report card: its content, its safety, the CLI option, and the page as Chromium renders it."""

from __future__ import annotations

import html
import os
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report card needs the 'plot' extra (matplotlib)")

from browser import png_distinct_rows, render

import filterdb
from filterdb.check import check_model
from filterdb.cli import main
from filterdb.readers import make_layer
from filterdb.report import model_card_html, write_model_card
from filterdb.types import ModelInfo, ModelRecord

SPARSE_MODEL = "face_detection_full_range_sparse.tflite"


@pytest.fixture(scope="module")
def card(corpus_path, tmp_path_factory):
    """card(key) -> (record, report, path of the written card)."""
    cache = {}
    folder = tmp_path_factory.mktemp("cards")

    def get(key):
        if key not in cache:
            record = filterdb.read_model(corpus_path(key))
            report = check_model(record)
            cache[key] = (record, report, write_model_card(folder / f"{key}.html", record, report))
        return cache[key]

    return get


def images_in(text):
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', text)


@pytest.mark.corpus
def test_card_of_a_model_with_degenerated_layers(card):
    _, report, path = card(SPARSE_MODEL)
    text = path.read_text(encoding="utf-8")
    alts = images_in(text)
    # metrics figure, the first layer as a grid and as RGB, and the degenerated layers (bounded at 6)
    assert alts[0].startswith("sparsity, normalised variance entropy and orthogonality")
    assert sum(a.startswith("filters of the first layer") for a in alts) == 1
    assert sum(a.endswith("as RGB tiles") for a in alts) == 1
    assert sum(a.startswith("filters of the degenerated layer") for a in alts) == 6
    n_bad = report.summary["n_degenerated"]["any"]
    assert f"Degenerated layers (6 of {n_bad} shown)" in text
    # the verdict table: one row per verdict, with its value and threshold
    table = text.split('id="verdicts"')[1].split('id="filters"')[0]
    verdicts = [v for layer in report.verdicts for v in layer]
    assert table.count("<tr>") == len(verdicts) + 1  # + header
    for v in verdicts[:10]:
        assert f"{v.value:.3f}" in table and f"{v.threshold:g}</td>" in table
    for section in ("summary", "metrics", "verdicts", "filters", "layers"):
        assert f'id="{section}"' in text
    assert text.count("How to read this.") == 3
    assert "<script" not in text and "http://" not in text and "https://" not in text


@pytest.mark.corpus
def test_card_of_a_healthy_model(card):
    _, _, path = card("onet.pt")
    text = path.read_text(encoding="utf-8")
    assert "No layer got a verdict." in text
    assert len(images_in(text)) == 3  # metrics, first-layer grid, first-layer RGB
    assert "Degenerated layers" not in text


@pytest.mark.corpus
def test_card_of_a_model_without_2d_filters_says_so(card):
    _, report, path = card("silero_vad.onnx")
    text = path.read_text(encoding="utf-8")
    assert "This model has no 2-D filters" in text
    assert "none with 2-D kernels (1-D)" in text  # the check's own note, passed through
    assert images_in(text) == []
    assert text.count("<tr") == len(report.layers) + 1  # the layers are still listed


def test_text_from_the_model_is_escaped():
    layer = make_layer('<img src=x onerror="alert(1)">', "Conv",
                       np.random.default_rng(0).standard_normal((32, 3, 3, 3)))
    record = ModelRecord(ModelInfo(source="<b>evil</b>.onnx", format="onnx", producer="<script>"), (layer,))
    text = model_card_html(record, check_model(record))
    assert "<script>" not in text and "<b>evil" not in text and "<img src=x" not in text
    assert html.escape('<img src=x onerror="alert(1)">') in text


def test_record_and_report_must_match():
    a = ModelRecord(ModelInfo(source="a", format="onnx"),
                    (make_layer("conv1", "Conv", np.ones((4, 3, 3, 3), dtype=np.float32)),))
    b = ModelRecord(ModelInfo(source="b", format="onnx"),
                    (make_layer("other", "Conv", np.ones((4, 3, 3, 3), dtype=np.float32)),))
    with pytest.raises(ValueError, match="report does not belong to record"):
        model_card_html(a, check_model(b))
    with pytest.raises(ValueError, match="max_degenerated must be an integer >= 0, got -1"):
        model_card_html(a, check_model(a), max_degenerated=-1)


def test_write_is_atomic_and_replaces(tmp_path):
    record = ModelRecord(ModelInfo(source="m.onnx", format="onnx"),
                         (make_layer("conv1", "Conv", np.random.default_rng(0).standard_normal((8, 3, 3, 3))),))
    target = tmp_path / "card.html"
    target.write_text("old")
    write_model_card(target, record, check_model(record))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["card.html"]  # no temporary file left behind


@pytest.mark.corpus
def test_cli_writes_the_card_and_still_prints_the_table(corpus_path, tmp_path, capsys):
    out_file = tmp_path / "out.html"
    with pytest.raises(SystemExit) as exc:
        main(["check", str(corpus_path("onet.pt")), "--html", str(out_file)])
    out, err = capsys.readouterr()
    assert exc.value.code == 0
    assert "conv1" in out and "degenerated layers" in out  # the table and the summary, as without --html
    assert "report card written to" in err
    assert out_file.read_text(encoding="utf-8").count("<img ") == 3


@pytest.mark.corpus
def test_cli_html_with_json_keeps_stdout_pure_json(corpus_path, tmp_path, capsys):
    import json

    out_file = tmp_path / "out.html"
    with pytest.raises(SystemExit) as exc:
        main(["check", str(corpus_path("onet.pt")), "--json", "--html", str(out_file)])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0 and json.loads(out)["model"]["n_conv_layers"] == 4
    assert out_file.exists()


def test_cli_html_to_an_unwritable_place_is_a_user_error(tmp_path, capsys):
    record_path = tmp_path / "m.safetensors"
    from safetensors.numpy import save_file

    save_file({"conv1.weight": np.ones((8, 3, 3, 3), dtype=np.float32)}, str(record_path))
    with pytest.raises(SystemExit) as exc:
        main(["check", str(record_path), "--html", str(tmp_path / "missing" / "card.html")])
    _, err = capsys.readouterr()
    assert exc.value.code == 1 and "cannot write the report card there" in err


# ------------------------------------------------------------------------------------------ in a browser
def assert_page_renders(path, *, n_images, dark=False):
    result = render(path, dark=dark)
    assert result.errors == [], result.errors
    width, height = result.screenshot_size
    assert width == 1280 and height >= 900
    assert png_distinct_rows(result.screenshot) >= 20  # not a blank page
    images = result.dom["images"]
    assert len(images) == n_images
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert 0 < image["width"] <= 1280  # scaled into the page, not overflowing it
    assert result.dom["bodyWidth"] <= result.dom["viewportWidth"]  # no horizontal scrolling
    assert result.dom["scripts"] == 0
    outside = [u for u in result.requests if not u.startswith(("file://", "data:"))]
    assert outside == []  # the page is self-contained
    return result


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("key,n_images", [("onet.pt", 3), (SPARSE_MODEL, 9), ("silero_vad.onnx", 0)])
def test_card_renders_in_chromium(card, key, n_images):
    _, _, path = card(key)
    result = assert_page_renders(path, n_images=n_images)
    assert result.dom["headings"][0] == os.path.basename(key)
    if n_images:
        assert "Layer metrics against depth" in result.dom["headings"]
    else:
        assert "No 2-D filters" in result.dom["headings"]


@pytest.mark.corpus
@pytest.mark.slow
def test_card_follows_a_dark_system_theme(card):
    _, _, path = card("onet.pt")
    light = render(path).dom["background"]
    dark = assert_page_renders(path, n_images=3, dark=True).dom["background"]
    assert light != dark
    assert dark == "rgb(13, 17, 23)"


@pytest.mark.slow
def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The helper must be able to fail: a broken image and a console error are reported."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="broken">'
                    "<script>console.error('boom')</script></body></html>", encoding="utf-8")
    result = render(page)
    assert result.dom["images"][0]["naturalWidth"] == 0
    assert any("boom" in e for e in result.errors)
