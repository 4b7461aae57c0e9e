"""Figures of one model (filterdb.plotting): what they draw, checked against the numbers they were given."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="filterdb.plotting needs the 'plot' extra (matplotlib)")

from scipy import ndimage

import filterdb
from filterdb.check import VERDICT_KINDS, Thresholds, check_model
from filterdb.errors import MissingDependencyError
from filterdb.plotting import THEMES, layer_filters, metrics_vs_depth, rgb_filters
from filterdb.readers import make_layer
from filterdb.types import ModelInfo, ModelRecord

SPARSE_MODEL = "face_detection_full_range_sparse.tflite"


@pytest.fixture(scope="module")
def checked(corpus_path):
    cache = {}

    def get(key):
        if key not in cache:
            record = filterdb.read_model(corpus_path(key))
            cache[key] = (record, check_model(record))
        return cache[key]

    return get


def tiles_in(image_array: np.ndarray) -> int:
    """Count the tiles of a mosaic independently of the code that laid it out: connected finite regions."""
    mask = np.isfinite(image_array) if image_array.ndim == 2 else image_array[..., 3] > 0
    return int(ndimage.label(mask)[1])


def lines_with_gid(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


def points_with_gid(ax, gid):
    return sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == gid)


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["onet.pt", "320n.onnx", SPARSE_MODEL])
def test_metrics_vs_depth_draws_every_layer_and_the_thresholds(checked, key):
    _, report = checked(key)
    fig = metrics_vs_depth(report)
    panels = fig.axes[:3]
    assert [ax.get_gid() for ax in panels] == ["sparsity", "variance_entropy_norm", "orthogonality"]
    assert len(fig.axes) == 3
    t = report.thresholds
    (sparse,) = lines_with_gid(panels[0], "threshold-sparse")
    (random,) = lines_with_gid(panels[1], "threshold-random")
    (low,) = lines_with_gid(panels[1], "threshold-low-diversity")
    assert set(sparse.get_ydata()) == {t.sparse}
    assert set(random.get_ydata()) == {t.random}
    assert set(low.get_ydata()) == {t.low_diversity}
    assert not panels[2].lines  # orthogonality has no verdict, so no threshold
    rows = report.layers[[len(k) == 2 for k in report.layers["kernel"]]]
    for ax in panels:
        drawn = sum(len(c.get_offsets()) for c in ax.collections)
        assert drawn == int(np.isfinite(rows[ax.get_gid()].astype(float)).sum())
    # the drawn y values are the report's values, in some order
    drawn_sparsity = np.sort(np.concatenate([c.get_offsets()[:, 1] for c in panels[0].collections]))
    np.testing.assert_allclose(drawn_sparsity, np.sort(rows["sparsity"].astype(float).to_numpy()))


@pytest.mark.corpus
def test_degenerated_layers_are_marked_with_their_verdict(checked):
    record, _ = checked(SPARSE_MODEL)
    # entropy alone (random_corr_z=inf): a few of this trained model's small depthwise layers then read as random,
    # so every kind of marker is drawn (the default rule, with the neighbour-tap correlation, calls none random)
    report = check_model(record, Thresholds(random_corr_z=float("inf")))
    fig = metrics_vs_depth(report)
    first_kinds = [v[0].kind if v else None for v in report.verdicts]
    counts = {kind: first_kinds.count(kind) for kind in VERDICT_KINDS}
    assert counts["sparse"] >= 40 and counts["low-diversity"] >= 1 and counts["random"] >= 1
    sparsity_panel = fig.axes[0]
    for kind in ("sparse", "low-diversity", "random"):
        assert points_with_gid(sparsity_panel, f"verdict-{kind}") == counts[kind], kind
    healthy = sum(1 for k in first_kinds if k is None)
    assert points_with_gid(sparsity_panel, "healthy") == healthy
    legend = fig.legends[0]
    assert {"sparse", "low-diversity", "random", "threshold"} <= {t.get_text() for t in legend.get_texts()}


@pytest.mark.corpus
def test_healthy_model_has_no_verdict_markers(checked):
    _, report = checked("onet.pt")
    fig = metrics_vs_depth(report)
    assert all(not c.get_gid().startswith("verdict-") for ax in fig.axes[:3] for c in ax.collections)


@pytest.mark.corpus
@pytest.mark.parametrize("key,index", [("onet.pt", 0), ("onet.pt", 1), ("320n.onnx", 1), (SPARSE_MODEL, 2)])
def test_filter_grid_has_one_tile_per_filter_and_symmetric_limits(checked, key, index):
    record, _ = checked(key)
    layer = record.layers_2d[index]
    fig = layer_filters(layer, max_out=32, max_in=16)
    ax, colourbar = fig.axes
    assert colourbar.get_gid() == "colorbar"
    image = next(im for im in ax.images if im.get_gid().startswith("filters:"))
    out, inp = layer.weight.shape[:2]
    shown = layer.weight[:min(out, 32), :min(inp, 16)]
    assert tiles_in(image.get_array().filled(np.nan)) == shown.shape[0] * shown.shape[1]
    assert image.get_gid().endswith(f":{shown.shape[0] * shown.shape[1]}")
    vmin, vmax = image.get_clim()
    assert vmin == -vmax
    assert vmax == pytest.approx(float(np.abs(shown).max()), rel=1e-6)
    # tile (0, 0) is weight[0, 0], each weight drawn as an s×s block
    arr = image.get_array().filled(np.nan)
    kh, kw = layer.kernel
    s = next(i for i in range(1, arr.shape[1] + 1) if not np.isfinite(arr[0, i]) or i == arr.shape[1]) // kw
    np.testing.assert_allclose(arr[:kh * s:s, :kw * s:s], layer.weight[0, 0])


@pytest.mark.corpus
def test_depthwise_grid_shows_one_tile_per_channel(checked):
    record, _ = checked(SPARSE_MODEL)
    layer = next(layer for layer in record.layers_2d if layer.kind == "depthwise" and layer.weight.shape[0] >= 32)
    fig = layer_filters(layer, max_out=4, max_in=4)
    image = fig.axes[0].images[-1]
    assert tiles_in(image.get_array().filled(np.nan)) == 16  # bounded by max_out * max_in


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["onet.pt", "320n.onnx", SPARSE_MODEL])
def test_rgb_tiles_of_first_layers(checked, key):
    record, _ = checked(key)
    layer = record.layers_2d[0]
    assert layer.weight.shape[1] == 3
    fig = rgb_filters(layer, max_filters=20)
    (ax,) = fig.axes
    (image,) = ax.images
    arr = np.asarray(image.get_array())
    assert arr.shape[-1] == 4 and tiles_in(arr) == min(20, layer.weight.shape[0])
    assert image.get_gid().endswith(f":{min(20, layer.weight.shape[0])}")


def test_rgb_maps_zero_to_grey_and_the_sign_to_the_channel():
    weight = np.zeros((2, 3, 3, 3), dtype=np.float32)
    weight[1, 0] = 1.0  # filter 1: strongly positive on red only
    weight[1, 2] = -1.0  # ... and negative on blue
    arr = np.asarray(rgb_filters(make_layer("c", "Conv", weight)).axes[0].images[0].get_array())
    np.testing.assert_allclose(arr[0, 0, :3], 0.5)  # filter 0 is all zero: mid grey
    row = arr[0]
    lit = row[row[:, 3] > 0]
    np.testing.assert_allclose(lit[-1, :3], [1.0, 0.5, 0.0])


def test_bad_layers_are_refused_with_the_reason():
    conv1d = make_layer("audio", "Conv", np.ones((4, 2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"'audio' has 1-D kernels"):
        layer_filters(conv1d)
    with pytest.raises(ValueError, match=r"3 input channels"):
        rgb_filters(make_layer("c", "Conv", np.ones((4, 8, 3, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"max_out must be an integer >= 1, got 0"):
        layer_filters(make_layer("c", "Conv", np.ones((4, 8, 3, 3), dtype=np.float32)), max_out=0)
    with pytest.raises(ValueError, match=r"theme must be one of 'light', 'dark', got 'blue'"):
        layer_filters(make_layer("c", "Conv", np.ones((4, 8, 3, 3), dtype=np.float32)), theme_name="blue")
    empty = check_model(ModelRecord(ModelInfo(source="x", format="onnx"), (conv1d,)))
    with pytest.raises(ValueError, match="no layers with 2-D kernels"):
        metrics_vs_depth(empty)


def test_dark_theme_changes_ink_and_paper_not_data_colours():
    layer = make_layer("c", "Conv", np.random.default_rng(0).standard_normal((64, 16, 3, 3)))
    report = check_model(ModelRecord(ModelInfo(source="x", format="onnx"), (layer,)))
    light, dark = metrics_vs_depth(report), metrics_vs_depth(report, theme_name="dark")
    from matplotlib.colors import to_hex

    assert to_hex(dark.get_facecolor()) == THEMES["dark"].paper.lower()
    assert to_hex(light.get_facecolor()) == THEMES["light"].paper.lower()
    colours = [[to_hex(c) for c in coll.get_edgecolors()] for fig in (light, dark) for coll in fig.axes[0].collections]
    assert colours[: len(colours) // 2] == colours[len(colours) // 2:]


def test_figures_leave_no_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    layer = make_layer("c", "Conv", np.random.default_rng(0).standard_normal((8, 3, 3, 3)))
    layer_filters(layer), rgb_filters(layer)
    assert plt.get_fignums() == before


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    layer = make_layer("c", "Conv", np.ones((2, 3, 3, 3), dtype=np.float32))
    with pytest.raises(MissingDependencyError, match=r"drawing figures needs the 'matplotlib' package: "
                                                     r"pip install 'filterdb\[plot\]'"):
        layer_filters(layer)
