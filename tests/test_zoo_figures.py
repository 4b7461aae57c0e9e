"""Zoo-level figures (filterdb.plotting zoo functions): what they draw, checked against the results they were given.

The results come from a small real store built once per session (conftest ``figure_zoo``,
filterdb.testing.build_figure_zoo): synthetic models with known filter distributions (smooth blobs, oriented
edges, noise), ingested through the store like any model.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="filterdb.plotting needs the 'plot' extra (matplotlib)")

from filterdb.analysis import coefficient_histograms, degeneration, drift, fit_pca
from filterdb.analysis._density import coefficient_density
from filterdb.plotting import (
    THEMES,
    VERDICT_COLOURS,
    coefficient_density_map,
    degeneration_shares,
    drift_boxplots,
    drift_heatmap,
    eigen_images,
    ridge_plot,
)

@pytest.fixture(scope="module")
def zoo(figure_zoo):
    """The session's figure zoo (filterdb.testing.build_figure_zoo), read-only."""
    return figure_zoo


@pytest.fixture(scope="module")
def results(zoo):
    basis = fit_pca(zoo)
    return {
        "basis": basis,
        "blobs": fit_pca(zoo, where="task = ?", params=["Blobs"]),
        "drift_task": drift(zoo, "task"),
        "drift_depth": drift(zoo, "depth"),
        "hist": coefficient_histograms(zoo, by="task", basis=basis),
        "density": coefficient_density(zoo, 0, 1, basis=basis, bins=64),
        "degeneration": degeneration(zoo, by="task"),
    }


def images_of(ax):
    return [im for im in ax.images]


def test_eigen_images_draw_every_component_with_shared_symmetric_limits(results):
    basis, blobs = results["basis"], results["blobs"]
    fig = eigen_images({"all": basis, "blobs": blobs})
    rows = [ax for ax in fig.axes if (ax.get_gid() or "").startswith("eigen:")]
    assert len(rows) == 2
    limits = {im.get_clim() for ax in rows for im in images_of(ax)}
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo == -hi and hi == pytest.approx(np.abs(np.stack([basis.components, blobs.components])).max())
    for r, (ax, b) in enumerate(zip(rows, (basis, blobs))):
        (image,) = images_of(ax)
        strip = image.get_array().filled(np.nan)
        tiles = [strip[:, c:c + 3] for c in range(0, strip.shape[1], 4)]  # 3 columns per tile, 1 gap column
        assert len(tiles) == 9
        for i, tile in enumerate(tiles):
            assert np.allclose(tile, b.components[i].reshape(3, 3))
        texts = {t.get_gid(): t.get_text() for t in ax.texts}
        # tiles are numbered 1..9, as the cumulative curve's x axis, with η in % under each
        assert [texts[f"number:{r}:{i}"] for i in range(9)] == [str(i + 1) for i in range(9)]
        assert texts[f"eta:{r}:0"] == f"{100 * b.explained_variance_ratio[0]:.0f}%"
        assert ax.get_title(loc="left") == f"{('all', 'blobs')[r]}: {b.n_filters:,} filters"
    (curve,) = [ax for ax in fig.axes if ax.get_gid() == "cumulative"]
    lines = {line.get_gid(): line for line in curve.lines}
    assert np.allclose(lines["cumulative:0"].get_ydata(), basis.cumulative)
    assert np.allclose(lines["cumulative:1"].get_ydata(), blobs.cumulative)
    assert list(lines["cumulative:0"].get_xdata()) == list(range(1, 10))
    four = eigen_images(basis, n_components=4)
    assert len([t for ax in four.axes for t in ax.texts if (t.get_gid() or "").startswith("number:")]) == 4


def test_ridge_plot_draws_the_drift_histograms_in_the_matrix_order(results):
    from filterdb.analysis import group_distributions

    result = results["drift_task"]
    fig = ridge_plot(result, components=4)
    panels = {ax.get_gid(): ax for ax in fig.axes}
    assert set(panels) == {f"ridge:{c}" for c in range(4)}
    first = panels["ridge:0"]
    labels = [t.get_text() for t in first.get_yticklabels()]
    assert labels[::-1] == list(result.groups)  # top to bottom = the matrix's order
    hist = result.histograms
    probs = group_distributions(hist)
    position = {g: i for i, g in enumerate(hist.groups)}
    colours = set()
    for r, group in enumerate(result.groups):
        for c in range(4):
            (steps,) = [p for p in panels[f"ridge:{c}"].patches if p.get_gid() == f"ridge:{c}:{r}"]
            values, edges, base = steps.get_data()
            base = len(result.groups) - 1 - r
            height = values - base
            # no smoothing: the bins' probabilities of this group, scaled to a peak of 0.9
            p = probs[position[group], c]
            lo = int(np.searchsorted(hist.edges, edges[0]))
            expected = p[lo:lo + len(height)]
            assert np.allclose(height, expected / expected.max() * 0.9)
            colours.add(steps.get_edgecolor()[:3])
    assert len(colours) == len(result.groups)  # one colour per group
    assert panels["ridge:3"].get_title() .startswith("4 · η ")
    with pytest.raises(TypeError, match="DriftResult or HistogramResult"):
        ridge_plot(results["basis"])


def test_ridge_plot_of_histograms_keeps_their_order(results):
    hist = results["hist"]
    fig = ridge_plot(hist)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][::-1] == list(hist.groups)
    assert len(fig.axes) == 9


def test_drift_heatmap_names_both_axes_and_marks_the_noise_floor(results):
    from filterdb.analysis import GroupShift

    result = results["drift_task"]
    g = result.groups
    fig = drift_heatmap(result)
    ax = fig.axes[0]
    assert ax.get_gid() == "drift-matrix"
    (image,) = ax.images
    shown = image.get_array()
    off = ~np.eye(len(g), dtype=bool)
    assert np.allclose(shown[off], result.matrix[off]) and shown.mask[~off].all()  # the diagonal is no heat colour
    assert image.get_clim() == (0.0, pytest.approx(result.matrix[off].max()))  # scaled on the pairs only
    assert [t.get_text() for t in ax.get_yticklabels()] == list(g)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(g)
    # sorted as in the paper: ascending mean drift to the other groups, outliers last
    means = result.matrix.sum(axis=1) / (len(g) - 1)
    assert list(means) == sorted(means)
    assert len(ax.texts) == len(g) * (len(g) - 1)  # the pairs, annotated
    # noise floors: the diagonal shows each floor as an italic number ("?" when unknown); a pair is washed out
    # unless its drift exceeds the larger floor of its two groups, both known
    floors = {g[0]: 0.0, g[1]: float(result.matrix.max()) + 1.0, g[2]: None}
    fig = drift_heatmap(result, vmax=5.0, noise_floor=floors)
    ax = fig.axes[0]
    (image,) = ax.images
    assert image.get_clim() == (0.0, 5.0)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert [cells[(i, i)].get_text() for i in range(3)] == [".00", f"{floors[g[1]]:.1f}", "?"]
    assert all(cells[(i, i)].get_fontstyle() == "italic" for i in range(3))
    pale = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches if p.get_gid() == "within-noise"}
    assert pale == {(a, b) for a in range(3) for b in range(3) if a != b}  # group 1 is above them, group 2 unknown
    assert len([p for p in ax.patches if p.get_gid() == "floor"]) == 3
    beyond = drift_heatmap(result, noise_floor={g[0]: 0.0, g[1]: 0.0, g[2]: 0.0}).axes[0]
    assert not [p for p in beyond.patches if p.get_gid() == "within-noise"]
    assert all(t.get_fontweight() == "bold" for t in beyond.texts if t.get_fontstyle() != "italic")
    # the ranking beside the matrix: one bar per row at the group's mean drift, its floor as a tick
    ranking = [GroupShift(name, 2, 100, float(means[i]), floors[name], None if floors[name] is not None else "x",
                          None if floors[name] is None else bool(means[i] > floors[name])) for i, name in enumerate(g)]
    fig = drift_heatmap(result, noise_floor=floors, ranking=ranking, width=9.6)
    panel = next(a for a in fig.axes if a.get_gid() == "drift-ranking")
    bars = {p.get_gid(): p for p in panel.patches}
    for i, name in enumerate(g):
        assert bars[f"mean:{name}"].get_width() == pytest.approx(means[i])
        assert bars[f"mean:{name}"].get_y() + bars[f"mean:{name}"].get_height() / 2 == pytest.approx(i)  # its row
    ticks = {line.get_gid(): line.get_xdata()[0] for line in panel.lines}
    assert ticks == {f"floor:{g[0]}": 0.0, f"floor:{g[1]}": floors[g[1]]}
    assert fig.get_figwidth() == 9.6
    depth = drift_heatmap(results["drift_depth"])
    assert [t.get_text() for t in depth.axes[0].get_yticklabels()] == list(results["drift_depth"].groups)


@pytest.mark.parametrize("width", [4.8, 9.6])
def test_heatmap_labels_stay_inside_the_figure_and_apart(results, width):
    """Long group names, wrapped: every text of the drawn heatmap lies inside the figure, and no two tick labels of
    an axis overlap."""
    import dataclasses

    result = results["drift_depth"]
    names = ("Object detection and recognition", "visual_category_long_name", "faces",
             "optical character recognition (OCR)")[:len(result.groups)]
    long = dataclasses.replace(result, groups=names)
    floors = {n: 0.01 for n in names}
    fig = drift_heatmap(long, noise_floor=floors, ranking=None, width=width)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, text.get_text()
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, text.get_text()
    ax = fig.axes[0]
    rows = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    for a, b in zip(rows, rows[1:]):
        assert not a.overlaps(b)
    # rotated column labels: their boxes overlap by construction; their lines must not: the distance between two
    # neighbouring labels across the text direction holds all lines of a label
    columns = ax.get_xticklabels()
    step = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
    across = step * np.sin(np.radians(columns[0].get_rotation()))
    lines = max(t.get_text().count("\n") + 1 for t in columns)
    assert across >= lines * columns[0].get_fontsize() * fig.dpi / 72 * 1.1


def test_long_group_names_are_wrapped_never_clipped():
    from filterdb.plotting._style import wrap_label

    assert wrap_label("faces") == "faces"
    assert wrap_label("Object detection and recognition", 16) == "Object\ndetection and…"
    assert wrap_label("visual_category_long_name", 16) == "visual_category_\nlong_name"
    assert all(len(line) <= 16 for line in wrap_label("x" * 50, 16).split("\n"))


def test_drift_boxplots_put_the_axes_side_by_side(results):
    fig = drift_boxplots({"task": results["drift_task"], "depth": results["drift_depth"]})
    ax = fig.axes[0]
    assert ax.get_gid() == "drift-boxplots"
    for label, key in (("task", "drift_task"), ("depth", "drift_depth")):
        (points,) = [c for c in ax.collections if c.get_gid() == f"pairs:{label}"]
        assert np.allclose(np.sort(points.get_offsets()[:, 0]), np.sort(results[key].upper_triangle()))
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0].startswith("task\n3 groups · 3 pairs") and ticks[1].startswith("depth\n4 groups · 6 pairs")


@pytest.mark.parametrize("name", ["eigen", "ridge", "heatmap", "boxplots", "density", "degeneration"])
def test_report_figures_keep_text_readable_on_a_phone(results, name):
    """Each figure is drawn for a phone's width (4.8 in) and no text is below 10 pt: shown at ~360 px,
    text stays >= 10 px (the browser tests check the page itself)."""
    from matplotlib.text import Text

    fig = {"eigen": lambda: eigen_images({"all": results["basis"], "blobs": results["blobs"]}),
           "ridge": lambda: ridge_plot(results["drift_task"]),
           "heatmap": lambda: drift_heatmap(results["drift_depth"]),
           "boxplots": lambda: drift_boxplots([results["drift_task"], results["drift_depth"]]),
           "density": lambda: coefficient_density_map(results["density"]),
           "degeneration": lambda: degeneration_shares(results["degeneration"])}[name]()
    import io

    fig.savefig(io.BytesIO(), format="png", dpi=50)
    assert fig.get_figwidth() <= 4.8  # the phone drawing; the desktop one is 9.6 in with the same 10 pt text
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert sizes and min(sizes) >= 10


def test_density_map_uses_a_log_scale_and_counts_every_filter(zoo, results):
    from matplotlib.colors import LogNorm

    density = results["density"]
    assert density.n_filters == int(density.counts.sum()) == int(zoo.layers()["n_filters"].sum())
    # the streamed counts equal a direct 2-D histogram of the coefficients
    coeffs = np.concatenate([density.basis.transform(b, scaled=True)[:, :2] for b in zoo.iter_filters()])
    direct, _, _ = np.histogram2d(coeffs[:, 0], coeffs[:, 1], bins=[density.x_edges, density.y_edges])
    assert np.abs(direct - density.counts).sum() <= 0.001 * density.n_filters  # float32 vs float64 at bin edges
    fig = coefficient_density_map(density)
    ax = fig.axes[0]
    assert ax.get_gid() == "density"
    (mesh,) = [c for c in ax.collections if c.get_gid() == "density:0:1"]
    assert isinstance(mesh.norm, LogNorm)
    assert "log scale" in fig.axes[1].get_ylabel()
    assert ax.get_xlabel().startswith("coefficient 1 (η") and ax.get_ylabel().startswith("coefficient 2 (η")


def test_density_arguments_are_checked(zoo):
    with pytest.raises(ValueError, match="different components"):
        coefficient_density(zoo, 1, 1)
    with pytest.raises(ValueError, match=r"component index in \[0, 8\]"):
        coefficient_density(zoo, 0, 9)


def test_degeneration_shares_per_group_and_depth(results):
    result = results["degeneration"]
    fig = degeneration_shares(result)
    axes = {ax.get_gid(): ax for ax in fig.axes}
    assert set(axes) == {"degeneration-group", "degeneration-depth"}
    for gid, frame in (("degeneration-group", result.per_group), ("degeneration-depth", result.per_depth)):
        ax = axes[gid]
        for kind in ("sparse", "low-diversity", "random"):
            bars = [p for p in ax.patches if p.get_gid() == f"bars-{kind}"]
            assert len(bars) == len(frame)
            assert np.allclose([b.get_width() for b in bars], frame[f"{kind}_layers"])
            assert all(b.get_facecolor()[:3] == pytest.approx(_rgb(VERDICT_COLOURS[kind])) for b in bars)
    noise = list(result.per_group["task"]).index("Noise")
    assert [p for p in axes["degeneration-group"].patches if p.get_gid() == "bars-random"][noise].get_width() == 1.0
    filters = degeneration_shares(result, measure="filters")
    sparse = [p for p in filters.axes[0].patches if p.get_gid() == "bars-sparse"]
    assert np.allclose([b.get_width() for b in sparse], result.per_group["sparse_filters"])


def _rgb(colour):
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


@pytest.mark.parametrize("theme_name", ["light", "dark"])
def test_figures_follow_the_theme(results, theme_name):
    paper = _rgb(THEMES[theme_name].paper)
    for fig in (eigen_images(results["basis"], theme_name=theme_name),
                ridge_plot(results["hist"], theme_name=theme_name),
                drift_heatmap(results["drift_task"], theme_name=theme_name),
                drift_boxplots([results["drift_task"]], theme_name=theme_name),
                coefficient_density_map(results["density"], theme_name=theme_name),
                degeneration_shares(results["degeneration"], theme_name=theme_name)):
        assert fig.get_facecolor()[:3] == pytest.approx(paper)
        import io

        fig.savefig(io.BytesIO(), format="png", dpi=50)  # draws without error


def test_wrong_inputs_are_named(results):
    with pytest.raises(TypeError, match="HistogramResult"):
        ridge_plot(results["basis"])
    with pytest.raises(TypeError, match="DriftResult"):
        drift_heatmap(results["hist"])
    with pytest.raises(TypeError, match="expected DriftResult"):
        drift_boxplots([results["basis"]])
    with pytest.raises(ValueError, match="n_components must be in"):
        eigen_images(results["basis"], n_components=10)
    with pytest.raises(ValueError, match="measure must be"):
        degeneration_shares(results["degeneration"], measure="models")
    with pytest.raises(ValueError, match="theme must be one of"):
        eigen_images(results["basis"], theme_name="sepia")
