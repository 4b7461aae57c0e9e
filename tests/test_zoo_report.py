"""The zoo report (filterdb report STORE): its sections, links and safety, the CLI, and the page in Chromium."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs the 'plot' extra (matplotlib)")

from browser import assert_report_renders, render
from helpers import parse

from filterdb import ingest_record
from filterdb.analysis import AnalysisError
from filterdb.cli import main
from filterdb.report import build_zoo_report, write_zoo_report

SECTIONS = ("summary", "pca", "density", "drift", "ridge", "degeneration", "lineage", "models")


@pytest.fixture(scope="module", autouse=True)
def figure_cache(tmp_path_factory):
    """The reports of this module cache their per-model figures in a temporary folder, not the user's."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FILTERDB_CACHE_DIR", str(folder))
        yield folder / "report-figures"


@pytest.fixture(scope="module")
def zoo(figure_zoo):
    """The session's figure zoo (filterdb.testing.build_figure_zoo), read-only."""
    return figure_zoo


@pytest.fixture(scope="module")
def report(zoo, tmp_path_factory):
    steps = []
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = write_zoo_report(out, zoo, by=["task", "depth"], progress=steps.append)
    return result, steps


def test_report_has_every_section_and_its_explanation(report, zoo):
    result, steps = report
    text = result.path.read_text(encoding="utf-8")
    page = parse(text)
    for section in SECTIONS:
        assert section in page.ids
    assert {"drift-task", "drift-depth", "drift-axes"} <= page.ids
    assert text.count("How to read this.") == 7  # pca, density, drift, ridge, degeneration, families, models
    assert text.count('class="zoom"') == len(page.images)  # every figure opens at full size
    models = zoo.models()
    for model_id, name in zip(models["model_id"], models["model"]):
        assert f"model-{model_id}" in page.ids
        assert f'<a href="#model-{model_id}">{html.escape(name)}</a>' in text
    # figures: eigen-images, density, 2 drift heatmaps, boxplots, ridge, degeneration, one per model
    alts = [img["alt"] for img in page.images]
    families = result.summary["families"]
    assert len(alts) == 7 + len(models) + (1 if families else 0)  # + the families' figure when there are any
    assert alts[0].startswith("eigen-images") and "drift matrix by task" in alts and "drift matrix by depth" in alts
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    assert steps[0] == "store summary" and "drift by depth" in steps and steps[-1].startswith("model 6/6")
    # a figure is a link to itself: the CSS shows the :target figure at full size over the page
    for ident in re.findall(r'<figure id="(fig-\d+)">', text):
        assert f'href="#{ident}"' in text and f'id="{ident}-at"' in text and f'href="#{ident}-at"' in text


def test_every_link_resolves_and_nothing_leaves_the_page(report):
    result, _ = report
    text = result.path.read_text(encoding="utf-8")
    page = parse(text)
    assert page.links and all(link.startswith("#") for link in page.links)
    assert {link[1:] for link in page.links} <= page.ids
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_summary_of_findings(report, zoo):
    s = report[0].summary
    assert s["n_models"] == 6 and s["n_filters_shape"] == int(zoo.layers()["n_filters"].sum())
    assert set(s["drift"]) == {"task", "depth"}
    assert s["drift"]["task"]["n_groups"] == 3
    # one colour scale for every matrix of the page: up to the largest drift or noise floor of any axis
    tops = [max(v["max"], *[f for f in v["noise_floor"].values() if f is not None]) for v in s["drift"].values()]
    assert s["drift_scale_max"] == pytest.approx(max(tops))
    assert len(s["explained_variance_ratio"]) == 9
    kinds = {k for entry in s["degenerated_layers"] for k in entry["verdicts"]}
    assert {"sparse", "random"} <= kinds
    sparse = [e for e in s["degenerated_layers"] if "sparse" in e["verdicts"]]
    assert [(e["model"], e["layer"]) for e in sparse] == [("edges-0", "conv2")]


def _halves_drift(zoo, basis, where, params):
    """The drift between the two hashed halves of a group's layers, computed here from the filters with numpy
    and scipy: the independent reference of the report's noise floor."""
    from scipy.special import rel_entr

    coeffs, halves = [], []
    for batch, layer_ids in zoo.iter_filters("3x3", where, params, with_layer_ids=True):
        coeffs.append(basis.transform(batch, scaled=True))
        halves.append(((layer_ids * 2654435761) % 4294967296) // 2147483648)
    c, h = np.concatenate(coeffs), np.concatenate(halves)
    bound = basis.bound()
    eps = float(np.finfo(np.float32).eps)
    total = 0.0
    for i, eta in enumerate(basis.explained_variance_ratio):
        # the authors' notebook: density histograms, empty bins set to float32 eps, then renormalised
        p, q = (np.histogram(c[h == k, i], bins=70, range=(-bound, bound), density=True)[0] for k in (0, 1))
        p[p == 0], q[q == 0] = eps, eps
        p, q = p / p.sum(), q / q.sum()
        total += eta * (rel_entr(p, q).sum() + rel_entr(q, p).sum())
    return total


def test_noise_floor_is_the_drift_between_random_halves_of_a_group(report, zoo):
    from filterdb.analysis import fit_pca

    s = report[0].summary
    basis = fit_pca(zoo)
    floors = s["drift"]["task"]["noise_floor"]
    assert set(floors) == {"Blobs", "Edges", "Noise"}
    for task, floor in floors.items():
        # float32 projections in the kernel against float64 here: a filter may change bins at an edge
        assert floor == pytest.approx(_halves_drift(zoo, basis, "task = ?", [task]), rel=1e-3)
    # the noise models are one distribution: their halves are close; a real shift (Blobs vs Noise) is far above
    assert s["drift"]["task"]["most_shifted"][0][0] in {"Noise", "Edges", "Blobs"}
    html_text = report[0].path.read_text(encoding="utf-8")
    assert "noise floor" in html_text and "hatched cells" in html_text


def test_unknown_is_left_out_small_groups_are_named_and_a_dominant_model_is_said(tmp_path):
    import numpy as np

    from filterdb.readers import make_layer
    from filterdb.store import init_store, open_store
    from filterdb.types import ModelInfo, ModelRecord

    init_store(tmp_path / "s.fdb")
    store = open_store(tmp_path / "s.fdb", "a")
    rng = np.random.default_rng(3)
    for name, data, n, layers in (("big", "ImageNet", 400, 3), ("small", "ImageNet", 40, 2), ("c", "COCO", 200, 2),
                                  ("d", "COCO", 200, 2), ("u", "unknown", 300, 2), ("tiny", "MNIST", 30, 1)):
        record = ModelRecord(ModelInfo(source=f"{name}.onnx", format="onnx"), tuple(
            make_layer(f"conv{k}", "Conv", rng.standard_normal((n // 4, 4, 3, 3))) for k in range(layers)))
        ingest_record(store, record, {"Name": name, "Task": "Classification", "Training-Dataset": data})
    result = build_zoo_report(open_store(tmp_path / "s.fdb"), by=["training_dataset"], model_sections=False,
                              workers=0)
    d = result.summary["drift"]["training_dataset"]
    assert d["n_groups"] == 2 and set(d["noise_floor"]) == {"ImageNet", "COCO"}
    assert d["left_out"] == [
        "Left out: unknown (600 filters, 1 model), an unknown training_dataset rather than a group of its own.",
        "Left out, fewer than 100 filters each (too few to fill a 70-bin histogram): MNIST (28 filters, 1 model)."]
    assert d["dominant"] == {"ImageNet": {"model": "big", "share": pytest.approx(1200 / 1280)}}  # COCO: 50 %, not more
    text = html.unescape(result.html)
    assert "One model dominates ImageNet: big holds 94% of its filters. filterdb report --per-model" in text
    assert "2,080 of the 2,708 3x3 filters of the PCA above (628 are in the groups left out below)" in text
    # the notes sit inside the heatmap's figure box
    figure = re.search(r'<figure id="fig-\d+">(?:(?!</figure>).)*drift matrix by training_dataset.*?</figure>',
                       result.html, re.S).group(0)
    assert "Left out: unknown" in html.unescape(figure) and "One model dominates" in html.unescape(figure)
    per_model = build_zoo_report(open_store(tmp_path / "s.fdb"), by=["training_dataset"], model_sections=False,
                                 per_model=True, workers=0)
    assert "each model weighted equally" in per_model.html
    assert per_model.summary["drift"]["training_dataset"]["max"] != d["max"]


def test_figures_drawn_by_workers_equal_figures_drawn_here(zoo):
    one = build_zoo_report(zoo, by=["task"], workers=0, title="t", figure_cache=None)
    two = build_zoo_report(zoo, by=["task"], workers=2, title="t", figure_cache=None)
    strip = re.compile(r"built in [0-9.]+ s")
    assert strip.sub("", one.html) == strip.sub("", two.html)


def test_figures_are_cached_by_their_data(zoo, tmp_path):
    import base64

    cache = tmp_path / "figures"
    first = build_zoo_report(zoo, by=["task"], figure_cache=cache)
    pngs = sorted(cache.glob("*.png"))
    assert len(pngs) == first.html.count("<img ") == len(zoo.models()) + 5  # per model + the 5 main figures
    marker = pngs[0].read_bytes() + b"cached"
    pngs[0].write_bytes(marker)
    again = build_zoo_report(zoo, by=["task"], figure_cache=cache)
    assert base64.b64encode(marker).decode() in again.html  # read back, not redrawn
    fresh = build_zoo_report(zoo, by=["task"], figure_cache=None)
    assert base64.b64encode(marker).decode() not in fresh.html


def test_an_axis_with_one_group_is_a_note_and_an_unknown_column_an_error(zoo):
    result = build_zoo_report(zoo, by=["visual_category", "task"], model_sections=False)
    assert "drift by &#x27;visual_category&#x27;: fewer than 2 groups to compare" in result.html
    assert set(result.summary["drift"]) == {"task"}
    assert 'id="model-' not in result.html
    with pytest.raises(AnalysisError, match="unknown column 'taks'"):
        build_zoo_report(zoo, by=["taks"])


def test_model_names_are_escaped(tmp_path):
    import numpy as np

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
    text = build_zoo_report(open_store(tmp_path / "s.fdb")).html
    assert "<script>b" not in text and "<img src=x" not in text and "<b>conv" not in text
    assert "<script" not in text
    assert html.escape('<img src=x onerror="alert(1)">') in text


def test_families_section_names_the_models_that_share_weights(tmp_path):
    """A model, its float16 copy and a pruned fine-tune of it form one family; an independent model stands apart."""
    import numpy as np

    from filterdb.readers import make_layer
    from filterdb.store import init_store, open_store
    from filterdb.types import ModelInfo, ModelRecord

    rng = np.random.default_rng(7)
    base = [rng.standard_normal((48, 16, 3, 3)), rng.standard_normal((64, 48, 3, 3))]
    pruned = [base[0][:40] + 0.05 * rng.standard_normal((40, 16, 3, 3)),
              base[1][:, :40] + 0.05 * rng.standard_normal((64, 40, 3, 3))]
    models = {"parent": base, "parent-fp16": [w.astype(np.float16).astype(np.float64) for w in base],
              "child-pruned": pruned, "stranger": [rng.standard_normal(w.shape) for w in base]}
    init_store(tmp_path / "s.fdb")
    store = open_store(tmp_path / "s.fdb", "a")
    for name, weights in models.items():
        layers = tuple(make_layer(f"conv{i}", "Conv", w) for i, w in enumerate(weights))
        ingest_record(store, ModelRecord(ModelInfo(source=f"{name}.onnx", format="onnx"), layers), {"Name": name})
    result = build_zoo_report(open_store(tmp_path / "s.fdb"), model_sections=False)
    (family,) = result.summary["families"]
    assert sorted(family) == ["child-pruned", "parent", "parent-fp16"]
    assert 'id="lineage"' in result.html and 'alt="model families as trees"' in result.html


def test_cli_writes_the_report_and_prints_its_path(zoo, tmp_path, capsys):
    out = tmp_path / "zoo.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", str(zoo.root), "-o", str(out), "--by", "task", "--no-models", "--no-progress",
              "--figures", str(tmp_path / "img")])
    stdout, _ = capsys.readouterr()
    assert exc.value.code == 0
    assert f"report written to {out}" in stdout and "6 models" in stdout
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    pngs = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert pngs == ["degeneration.png", "density.png", "drift.png", "eigen-images.png", "ridge.png"]
    assert all((tmp_path / "img" / p).stat().st_size < 150_000 for p in pngs)
    # again, now with every figure in the cache: the same files
    first = {p: (tmp_path / "img" / p).read_bytes() for p in pngs}
    with pytest.raises(SystemExit) as exc:
        main(["report", str(zoo.root), "-o", str(out), "--by", "task", "--no-models", "--no-progress",
              "--figures", str(tmp_path / "img")])
    assert exc.value.code == 0
    assert {p: (tmp_path / "img" / p).read_bytes() for p in pngs} == first


def test_cli_errors_are_one_line(zoo, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(zoo.root), "-o", str(tmp_path / "r.html"), "--by", "taks"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and "unknown column 'taks'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["report", str(zoo.root), "-o", str(tmp_path / "missing" / "r.html")])
    _, err = capsys.readouterr()
    assert exc.value.code == 1 and "does not exist" in err


# ------------------------------------------------------------------------------------------ in a browser
@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_chromium(report):
    result = assert_report_renders(report[0].path)
    headings = result.dom["headings"]
    assert headings[0] == "zoo.fdb"
    for heading in ("Summary", "PCA basis of the filters (eigen-images)", "Drift by task", "Drift by depth",
                    "Degenerated layers", "Models"):
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
        shown = image["textPx"] * image["width"] / image["naturalWidth"]
        assert shown >= 10, (image["alt"], round(shown, 1))
        assert image["width"] <= (width - 20 if width < 600 else 500)  # phone: the page's width; desktop: 100 px/in
