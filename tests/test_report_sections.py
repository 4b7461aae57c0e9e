"""The zoo report as a sequence of sections: contents, figure numbering, saved figures, models without 2-D kernels,
caller mistakes, and the fixed-decimal numbers of its tables. The page lays out a Study (filterdb.analysis.study)."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs the 'plot' extra (matplotlib)")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from filterdb import read_model
from filterdb._format import number
from filterdb.analysis import study
from filterdb.errors import UsageError
from filterdb.ingest import ingest
from filterdb.report import Page, Rendered, build_zoo_report

CONTENTS = ["findings", "summary", "pca", "drift", "degeneration", "lineage", "prune", "models"]
MAIN_FIGURES = ["eigen-images.png", "density.png", "drift.png", "ridge.png", "degeneration.png"]


class _Outline(HTMLParser):
    """Document-order ids of h2 headings and figures, the contents' links and the figures' images."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.figures: list[str] = []
        self.contents: list[str] = []
        self.images: list[str] = []
        self.ids: list[str] = []
        self._in_nav = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "h2":
            self.h2.append(a.get("id", ""))
        elif tag == "figure":
            self.figures.append(a["id"])
        elif tag == "nav":
            self._in_nav = True
        elif tag == "a" and self._in_nav:
            self.contents.append(a["href"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "source":  # the phone drawing of a main figure
            self.images.append(a["srcset"])

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False


def outline(text: str) -> _Outline:
    parser = _Outline()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module", autouse=True)
def figure_cache(tmp_path_factory):
    """Reports of this module cache their figures in a temporary folder, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FILTERDB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """One model of three 3x3 layers at depths 0, 0.5 and 1 (three depth groups of 1,024 filters each) and one
    model whose only convolutions have 1-D and 3-D kernels."""
    folder = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    safetensors_numpy.save_file({f"features.{i}.weight": rng.standard_normal((128, 8, 3, 3)).astype(np.float32)
                                 for i in range(3)}, str(folder / "plain.safetensors"))
    safetensors_numpy.save_file({"conv3d.weight": rng.standard_normal((8, 4, 3, 3, 3)).astype(np.float32),
                                 "conv1d.weight": rng.standard_normal((8, 4, 5)).astype(np.float32)},
                                str(folder / "odd.safetensors"))
    ingest(folder / "s.fdb", [folder / "plain.safetensors", folder / "odd.safetensors"], create=True, jobs=1)
    return folder / "s.fdb"


@pytest.fixture(scope="module")
def store_study(store_path):
    return study(store_path)


@pytest.fixture(scope="module")
def built(store_study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    return build_zoo_report(store_study, workers=0, figures_dir=folder), folder


def test_contents_list_every_section_in_page_order(built):
    report, _ = built
    page = outline(report.html)
    assert page.contents == [f"#{a}" for a in CONTENTS]
    assert page.h2 == CONTENTS  # each section starts with its heading, in the order of the contents
    assert len(page.ids) == len(set(page.ids))  # no anchor twice


def test_figures_are_numbered_once_across_sections(built):
    report, _ = built
    page = outline(report.html)
    assert page.figures == [f"fig-{i}" for i in range(1, len(page.figures) + 1)]
    # every figure's zoom link and close link point at that figure
    for ident in page.figures:
        assert f'href="#{ident}"' in report.html and f'href="#{ident}-at"' in report.html
    # the main figures, the side-by-side drift of the axes is absent (one axis), plus one per 2-D model
    assert len(page.figures) == len(MAIN_FIGURES) + 1


def test_saved_figures_are_the_pictures_of_the_page(built):
    report, folder = built
    assert report.summary["axes"] == ["depth"]
    assert report.summary["figures"] == [str(folder / name) for name in MAIN_FIGURES]
    assert sorted(p.name for p in folder.iterdir()) == sorted(MAIN_FIGURES)
    shown = {base64.b64decode(src.split(",", 1)[1]) for src in outline(report.html).images}
    for name in MAIN_FIGURES:
        assert (folder / name).read_bytes() in shown, name


def test_a_model_without_2d_kernels_gets_a_note_instead_of_a_figure(built, store_path):
    report, _ = built
    kernels = {layer.kernel for layer in read_model(store_path.parent / "odd.safetensors").layers}
    assert kernels == {(5,), (3, 3, 3)}  # what the section is about: 1-D and 3-D kernels only
    sections = dict(re.findall(r'<details class="model" id="(model-\d+)">(.*?)</details>', report.html, re.S))
    by_name = {re.search(r'<span class="model-name">(.*?)</span>', body).group(1): body for body in sections.values()}
    assert set(by_name) == {"plain.safetensors", "odd.safetensors"}
    assert "<figure" in by_name["plain.safetensors"] and "nothing to plot" not in by_name["plain.safetensors"]
    assert "<figure" not in by_name["odd.safetensors"]
    assert "No conv layer of this model has 2-D kernels with stored metrics" in by_name["odd.safetensors"]


@pytest.mark.parametrize("option", [{"max_model_sections": -1}, {"max_model_sections": True}, {"workers": -1}])
def test_a_bad_option_is_a_usage_error_before_any_work(store_study, option):
    with pytest.raises(UsageError, match=next(iter(option))):
        build_zoo_report(store_study, **option)


def test_the_report_takes_a_study_not_a_store(store_path):
    with pytest.raises(UsageError, match="takes a filterdb.analysis.Study"):
        build_zoo_report(store_path)  # type: ignore[arg-type]



def test_plotting_parameter_mistakes_are_usage_errors(store_path):
    from filterdb.plotting import eigen_images, layer_filters

    with pytest.raises(UsageError, match="nothing to draw"):
        eigen_images([])
    conv3d = next(layer for layer in read_model(store_path.parent / "odd.safetensors").layers
                  if layer.name == "conv3d")
    with pytest.raises(UsageError, match="3-D kernels"):
        layer_filters(conv3d)
    assert issubclass(UsageError, ValueError)  # callers that caught ValueError still do


def test_page_extend_renumbers_the_figures_of_a_fragment():
    png = Rendered(b"\x89PNG-a", width_in=4.0, dpi=100.0, smallest_pt=8.0)
    page = Page("p").figure(png, alt="first")
    fragment = Page("").heading("Part", anchor="part").figure(png, alt="second").figure(png, alt="third")
    text = page.extend(fragment).render()
    assert re.findall(r'<figure id="(fig-\d+)">', text) == ["fig-1", "fig-2", "fig-3"]
    assert re.findall(r'alt="(\w+)"', text) == ["first", "second", "third"]
    assert text.index('id="part"') < text.index('alt="second"')


@pytest.mark.parametrize(("value", "decimals", "shown"), [
    (0.5, 3, "0.500"), (0.12345, 2, "0.12"), (2.0, 0, "2"), (None, 3, "–"), (float("nan"), 2, "–"),
    (np.float32(0.25), 3, "0.250"), (np.int64(7), 0, "7"), (float("inf"), 2, "inf"), (1234.5, 1, "1,234.5"),
])
def test_fixed_decimals_for_table_columns(value, decimals, shown):
    assert number(value, decimals=decimals, missing="–") == shown


def test_kernel_shapes_most_filters_first_ties_by_name(built):
    report, _ = built
    table = re.search(r"Filters per kernel shape</summary>(.*?)</details>", report.html, re.S).group(1)
    rows = re.findall(r'data-label="kernel">([^<]*)</td>.*?data-label="filters">([^<]*)</td>', table, re.S)
    # 3 layers of 128×8 filters; conv3d and conv1d hold 8×4 filters each: a tie, broken by the shape's name
    assert rows == [("3x3", "3,072"), ("3x3x3", "32"), ("5", "32")]
