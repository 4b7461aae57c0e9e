"""The zoo report (filterdb report STORE): a page that lays out a Study — findings first, one caveat box per
axis, folded model sections, failed parts as visible notes and a non-zero exit —, its links and safety, the
rule that report/ computes nothing, and the page in Chromium."""

from __future__ import annotations

import ast
import dataclasses
import html
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs the 'plot' extra (matplotlib)")

from browser import assert_report_renders, render
from helpers import parse, run_cli

from filterdb import ingest_record
from filterdb._format import number
from filterdb.analysis import Finding, study
from filterdb.report import build_zoo_report, write_zoo_report

SECTIONS = ("findings", "summary", "pca", "density", "drift", "ridge", "degeneration", "lineage", "prune",
            "models")
REPORT_DIR = Path(__file__).resolve().parents[1] / "src" / "filterdb" / "report"


@pytest.fixture(scope="module", autouse=True)
def figure_cache(tmp_path_factory):
    """The reports of this module cache their figures in a temporary folder, not the user's."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FILTERDB_CACHE_DIR", str(folder))
        yield folder / "report-figures"


@pytest.fixture(scope="module")
def zoo(figure_zoo):
    """The session's figure zoo (filterdb.testing.build_figure_zoo), read-only."""
    return figure_zoo


@pytest.fixture(scope="module")
def zoo_study(zoo):
    return study(zoo, by=["task", "depth"])


@pytest.fixture(scope="module")
def report(zoo_study, tmp_path_factory):
    steps = []
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = write_zoo_report(out, zoo_study, progress=steps.append)
    return result, steps


def _section(text: str, anchor: str) -> str:
    """The HTML of one h2 section: from its heading to the next h2."""
    start = text.index(f'<h2 id="{anchor}">')
    end = text.find("<h2 ", start + 1)
    return text[start:end if end > 0 else len(text)]


def test_the_page_opens_with_the_findings_and_their_numbers(report, zoo_study):
    result, _ = report
    text = result.path.read_text(encoding="utf-8")
    page = parse(text)
    assert [a for a in SECTIONS if a in page.ids] == list(SECTIONS)
    assert text.index('id="findings"') < text.index('id="summary"') < text.index('id="pca"')
    findings = html.unescape(_section(text, "findings"))
    assert zoo_study.findings
    for i, finding in enumerate(zoo_study.findings, 1):  # every finding, in the study's order, with its numbers
        assert finding.text in findings
        row = re.search(rf'<td class="num" data-label="#">{i}</td><td data-label="rule">{finding.kind}</td>'
                        r'<td data-label="numbers">(.*?)</td>', findings, re.S).group(1)
        for key, value in finding.numbers.items():
            assert key.replace("_", " ") in row
            if isinstance(value, float):
                assert number(value, digits=3) in row
    positions = [findings.index(f.text) for f in zoo_study.findings]
    assert positions == sorted(positions)
    # the axes side by side is the findings' figure, and the axes' ranking is its table, in the study's order
    assert 'alt="boxplots of the pairwise drift of each axis"' in findings
    ranked = re.findall(r'data-label="axis \(largest drift first\)">([^<]*)<', findings)
    assert ranked == [r.axis for r in zoo_study.axis_ranking]


def test_every_link_resolves_and_nothing_leaves_the_page(report):
    result, steps = report
    text = result.path.read_text(encoding="utf-8")
    page = parse(text)
    assert page.links and all(link.startswith("#") for link in page.links)
    assert {link[1:] for link in page.links} <= page.ids
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert steps[0] == "store summary" and steps[-1].startswith("model 6/6")


def test_main_figures_come_in_a_desktop_and_a_phone_drawing(report):
    text = report[0].path.read_text(encoding="utf-8")
    pictures = re.findall(r'<picture><source media="\(max-width: 700px\)" srcset="data:image/png;base64,[^"]+">'
                          r'<img src="data:image/png;base64,[^"]+" alt="([^"]*)" width="(\d+)"', text)
    alts = {alt for alt, _ in pictures}
    assert {"drift matrix by task", "drift matrix by depth", "boxplots of the pairwise drift of each axis",
            "2-D density of the first two PCA coefficients"} <= alts
    assert {int(w) for _, w in pictures} == {960}  # 9.6 in at 100 CSS px per inch on a desktop


def test_one_colour_scale_from_the_drift_between_groups(report, zoo_study):
    s = report[0].summary
    assert s["drift_scale_max"] == pytest.approx(max(float(a.drift.upper_triangle().max()) for a in zoo_study.axes))
    assert set(s["drift"]) == {"task", "depth"}
    task = zoo_study.axis("task")
    assert s["drift"]["task"]["most_shifted"] == [(r.group, r.mean_drift) for r in task.ranking if r.beyond_floor][:3]


def test_each_axis_has_its_groups_ranked_with_their_floors(report, zoo_study):
    text = html.unescape(report[0].path.read_text(encoding="utf-8"))
    for axis in zoo_study.axes:
        table = re.search(rf"The groups of {re.escape(axis.axis)}, most shifted first</summary>(.*?)</details>",
                          text, re.S).group(1)
        groups = re.findall(rf'data-label="{re.escape(axis.axis)}">([^<]*)<', table)
        assert groups == [r.group for r in axis.ranking]
        floors = re.findall(r'data-label="noise floor">([^<]*)<', table)
        assert floors == ["–" if r.floor is None else f"{r.floor:.2f}" for r in axis.ranking]


def _mixed_store(path):
    """Training data sets: ImageNet (one model holds 94 %), COCO (two equal models), an unknown value and a tiny
    group, and a one-model group (MNIST-big) whose floor cannot be estimated from one model."""
    from filterdb.readers import make_layer
    from filterdb.store import init_store, open_store
    from filterdb.types import ModelInfo, ModelRecord

    init_store(path)
    store = open_store(path, "a")
    rng = np.random.default_rng(3)
    for name, data, n, layers in (("big", "ImageNet", 400, 3), ("small", "ImageNet", 40, 2), ("c", "COCO", 200, 2),
                                  ("d", "COCO", 200, 2), ("u", "unknown", 300, 2), ("tiny", "MNIST", 30, 1)):
        record = ModelRecord(ModelInfo(source=f"{name}.onnx", format="onnx"), tuple(
            make_layer(f"conv{k}", "Conv", rng.standard_normal((n // 4, 4, 3, 3))) for k in range(layers)))
        ingest_record(store, record, {"Name": name, "Task": "Classification", "Training-Dataset": data})
    return open_store(path)


def test_one_caveat_box_per_axis_holds_every_caveat_of_that_axis(tmp_path):
    store = _mixed_store(tmp_path / "s.fdb")
    result = study(store, by=["training_dataset", "depth"])
    text = build_zoo_report(result, model_sections=False, workers=0).html
    for axis in result.axes:
        boxes = re.findall(rf'<div class="note caveats"><b>Caveats of {re.escape(axis.axis)}\.</b>(.*?)</div>', text,
                           re.S)
        expected = [*axis.left_out, *axis.notes]
        if not expected and not axis.dominant and all(r.floor is not None for r in axis.ranking):
            assert boxes == []
            continue
        (box,) = boxes  # one box, never one per group
        box = html.unescape(box)
        for caveat in expected:
            assert caveat in box
        for m in axis.dominant:  # each dominant model on one line, with every group it dominates and its share
            assert box.count(f"{m.model} holds ") == 1 and f"{m.share:.0%}" in box and m.group in box
    dataset = result.axis("training_dataset")
    assert [m.group for m in dataset.dominant] == ["ImageNet"]  # the caveat the page shows comes from the study
    assert "big holds 94% of ImageNet's filters." in html.unescape(text)


def test_a_failed_part_is_a_note_in_the_page_never_a_lost_report(zoo_study, tmp_path):
    broken = dataclasses.replace(zoo_study, density=None, errors={**zoo_study.errors, "density": "disk on fire"},
                                 findings=(Finding("most_shifted", "a finding without numbers", None),))  # type: ignore[arg-type]
    report = write_zoo_report(tmp_path / "r.html", broken, model_sections=False, workers=0)
    text = report.path.read_text(encoding="utf-8")
    assert not report.ok
    assert report.errors["study:density"] == "disk on fire"
    assert report.errors["page:findings"].startswith("TypeError")
    assert "This section could not be built." in text and "disk on fire" in text
    assert 'id="drift-task"' in text and 'id="models"' in text  # the other sections are all there


def test_a_part_the_study_did_not_compute_is_said_where_it_would_be(zoo_study):
    """A study's notes (a part left out on purpose, e.g. degeneration of a store without metrics) are shown in the
    findings and in the section the part would fill; they are no error."""
    noted = dataclasses.replace(zoo_study, degeneration=None, notes=("degeneration: the store holds no layer metrics",))
    report = build_zoo_report(noted, model_sections=False, workers=0)
    assert report.ok
    assert "Notes of the study." in _section(report.html, "findings")
    assert "the store holds no layer metrics" in _section(report.html, "degeneration")


def test_the_cli_writes_the_page_and_exits_1_when_a_part_failed(zoo, tmp_path, capsys):
    out = tmp_path / "zoo.html"
    code, stdout, _ = run_cli(capsys, "report", zoo.root, "-o", out, "--by", "task", "--no-models", "--no-progress",
                              "--figures", tmp_path / "img")
    assert code == 0 and f"report written to {out}" in stdout and "6 models" in stdout
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    pngs = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert pngs == ["degeneration.png", "density.png", "drift.png", "eigen-images.png", "ridge.png"]
    # visual_category has one group in this zoo: the study says so as a failed part; the page is still written
    code, stdout, err = run_cli(capsys, "report", zoo.root, "-o", out, "--by", "visual_category", "--by", "task",
                                "--no-models", "--no-progress")
    assert code == 1 and f"report written to {out}" in stdout
    assert "drift:visual_category" in err and "Traceback" not in err


def test_cli_errors_are_one_line(zoo, tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", zoo.root, "-o", tmp_path / "r.html", "--by", "taks")
    assert code == 2 and "unknown column 'taks'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "report", zoo.root, "-o", tmp_path / "missing" / "r.html")
    assert code == 1 and "does not exist" in err


def test_model_names_are_escaped(tmp_path):
    from filterdb.readers import make_layer
    from filterdb.store import init_store, open_store
    from filterdb.types import ModelInfo, ModelRecord

    init_store(tmp_path / "s.fdb")
    store = open_store(tmp_path / "s.fdb", "a")
    rng = np.random.default_rng(1)
    for name in ('<img src=x onerror="alert(1)">', "<script>b</script>"):
        record = ModelRecord(ModelInfo(source=f"{len(name)}.onnx", format="onnx"),
                             (make_layer('<b>conv</b>', "Conv", rng.standard_normal((40, 8, 3, 3))),))
        ingest_record(store, record, {"Name": name, "Task": name})
    store = open_store(tmp_path / "s.fdb")
    text = build_zoo_report(study(store), workers=0).html
    assert "<script>b" not in text and "<img src=x" not in text and "<b>conv" not in text
    assert "<script" not in text
    assert html.escape('<img src=x onerror="alert(1)">') in text


def test_figures_drawn_by_workers_equal_figures_drawn_here(zoo_study):
    one = build_zoo_report(zoo_study, workers=0, title="t", figure_cache=None)
    two = build_zoo_report(zoo_study, workers=2, title="t", figure_cache=None)
    strip = re.compile(r"built in [0-9.]+ s")
    assert strip.sub("", one.html) == strip.sub("", two.html)


def test_figures_are_cached_by_their_data(zoo_study, tmp_path):
    import base64

    cache = tmp_path / "figures"
    first = build_zoo_report(zoo_study, figure_cache=cache)
    pngs = sorted(cache.glob("*.png"))
    assert len(pngs) == first.html.count("data:image/png")  # every drawing of the page, each once in the cache
    marker = pngs[0].read_bytes() + b"cached"
    pngs[0].write_bytes(marker)
    again = build_zoo_report(zoo_study, figure_cache=cache)
    assert base64.b64encode(marker).decode() in again.html  # read back, not redrawn
    fresh = build_zoo_report(zoo_study, figure_cache=None)
    assert base64.b64encode(marker).decode() not in fresh.html


# -------------------------------------------------------------------------- report/ computes nothing
ALLOWED = {  # what report/ may import from the layers that compute: result types, the catalog's public reads
    "analysis": {"Study", "AxisStudy", "AxisRank", "Finding", "GroupShift", "Families", "DominantModel",
                 "StudySettings", "PCAResult", "DriftResult", "DensityResult", "DegenerationResult",
                 "HistogramResult"},
    "analysis.study": {"Study", "AxisStudy", "AxisRank", "Finding", "GroupShift", "Families", "DominantModel"},
    "store": {"Store", "as_store"},
    "check": {"judge_layers", "ModelReport", "LayerReport", "Thresholds", "Verdict", "VERDICT_KINDS",
              "BORDERLINE_SPREADS"},  # no check_model
    "lineage": {"lineage_figure", "Lineage", "Edge"},
}


def test_report_imports_no_analysis_and_writes_no_sql():
    """An AST scan of report/: no `.sql(` call, no SQL text, and from analysis, store, check and lineage only
    result types and public reads — never a function that computes (fit_pca, drift, make_plan, lineage, ...)."""
    for path in sorted(REPORT_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {"sql", "execute", "segments", "iter_filters"}, (path.name, node.lineno)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.search(r"\bSELECT\b.*\bFROM\b", node.value), (path.name, node.lineno)
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                package = node.module
                if package.split(".")[0] in {"analysis", "store", "check", "lineage"}:
                    names = {alias.name for alias in node.names}
                    allowed = ALLOWED.get(package, ALLOWED.get(package.split(".")[0], set()))
                    assert names <= allowed, (path.name, node.lineno, package, names - allowed)


# ------------------------------------------------------------------------------------------ in a browser
@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_chromium(report):
    result = assert_report_renders(report[0].path)
    headings = result.dom["headings"]
    assert headings[0] == "zoo.fdb"
    for heading in ("Findings", "Summary", "PCA basis of the filters (eigen-images)", "Drift by task",
                    "Drift by depth", "Degenerated layers", "Models"):
        assert heading in headings
    assert "How to read this." in result.dom["text"]


@pytest.mark.slow
@pytest.mark.browser
def test_report_follows_a_dark_system_theme(report):
    dark = assert_report_renders(report[0].path, dark=True).dom["background"]
    assert dark == "rgb(13, 17, 23)"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("width", [400, 1400])
def test_report_is_readable_on_a_phone_and_a_desktop(report, width, tmp_path_factory):
    """At 400 and 1400 px: no element wider than the window and no sideways scrolling (tables stack their
    cells on narrow screens), and every figure's smallest text is >= 10 px at the size it is shown.
    The screenshots are kept as test artefacts (pytest's tmp folder)."""
    result = render(report[0].path, width=width)
    shots = tmp_path_factory.mktemp("screenshots")
    (shots / f"report-{width}px.png").write_bytes(result.screenshot)
    dom = result.dom
    assert result.errors == []
    assert dom["bodyWidth"] <= dom["viewportWidth"] == width
    assert dom["overflowing"] == [] and dom["scrollers"] == []
    assert dom["smallestText"] >= 10
    for image in dom["images"]:
        if not image["width"]:
            continue  # inside a folded model section
        shown = image["textPx"] * image["width"] / image["naturalWidth"]
        assert shown >= 10, (image["alt"], round(shown, 1))
        assert image["width"] <= width - 20


@pytest.mark.slow
@pytest.mark.browser
def test_a_zoo_of_forty_models_is_a_short_page_with_wide_figures(tmp_path):
    """Forty models in four tasks and two data sets: at 1400 px the page stays under 15,000 px (model sections folded) and every
    main figure is shown at least 900 px wide."""
    from filterdb.readers import make_layer
    from filterdb.store import init_store, open_store
    from filterdb.types import ModelInfo, ModelRecord

    init_store(tmp_path / "s.fdb")
    store = open_store(tmp_path / "s.fdb", "a")
    rng = np.random.default_rng(5)
    for i in range(40):
        layers = tuple(make_layer(f"conv{k}", "Conv", rng.standard_normal((16, 8, 3, 3)) * (1 + i % 4))
                       for k in range(3))
        ingest_record(store, ModelRecord(ModelInfo(source=f"m{i}.onnx", format="onnx"), layers),
                      {"Name": f"model-{i:02d}", "Task": ("faces", "text", "objects", "audio")[i % 4],
                       "Training-Dataset": ("ImageNet", "COCO")[i % 2]})
    result = study(open_store(tmp_path / "s.fdb"), by=["task", "training_dataset"])
    page = write_zoo_report(tmp_path / "r.html", result, workers=0)
    assert page.ok, page.errors
    rendered = render(page.path, width=1400)
    (tmp_path.parent / "forty-models-1400px.png").write_bytes(rendered.screenshot)
    width, height = rendered.screenshot_size
    assert width == 1400 and height <= 15_000, height
    main = [i for i in rendered.dom["images"] if not re.match(r"model-\d\d: ", i["alt"])]  # not a model's figure
    assert len(main) >= 7
    for image in main:
        assert image["width"] >= 900, (image["alt"], image["width"])


def test_lineage_html_renders_a_lineage_result(tmp_path):
    """report.lineage_html takes lineage's result (families and edges) and renders a fragment: a heading, the trees
    as an inline PNG and one table row per edge, names escaped."""
    from filterdb.lineage import Edge, Lineage
    from filterdb.report import lineage_html

    forest = Lineage(families=(("<parent>", "child"), ("alone",)),
                     edges=(Edge("<parent>", "child", "derived", 0.91234, 0.8),))
    fragment = lineage_html(forest)
    assert '<h2 id="lineage">Model families</h2>' in fragment
    assert fragment.count("data:image/png;base64,") == 1 and "&lt;parent&gt;" in fragment and "<parent>" not in fragment
    rows = re.findall(r"<tr>(.*?)</tr>", fragment, re.S)[1:]  # the header row first
    assert len(rows) == 1 and "0.912" in rows[0] and "0.80" in rows[0]
    alone = lineage_html(Lineage(families=(("a",), ("b",)), edges=()))
    assert "No two models share weights." in alone and "data:image" not in alone
