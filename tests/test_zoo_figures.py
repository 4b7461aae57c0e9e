"""Zoo-level figures (filterdb.plotting zoo functions): what they draw, checked against the results they were given.

The results come from a small real store built in a temporary folder: synthetic models with known filter
distributions (smooth blobs, oriented edges, noise), ingested through the store like any model.
"""

from __future__ import annotations

import dataclasses

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
from filterdb.readers._registry import make_layer
from filterdb.store import init_store, open_store
from filterdb.types import ModelInfo, ModelRecord

TASKS = {"Blobs": 0.0, "Edges": 1.5, "Noise": None}  # task -> horizontal gradient added to a blob (None: noise)


def _weights(rng: np.random.Generator, task: str, o: int = 64, i: int = 32) -> np.ndarray:
    shift = TASKS[task]
    if shift is None:
        return rng.standard_normal((o, i, 3, 3)).astype(np.float32)
    yy, xx = np.mgrid[-1:2, -1:2]
    base = np.exp(-(xx**2 + yy**2) / 2.0) + shift * xx
    return (rng.normal(size=(o, i, 1, 1)) * base + 0.3 * rng.standard_normal((o, i, 3, 3))).astype(np.float32)


def build_zoo(path, n_per_task: int = 2, n_layers: int = 4):
    """A store of 3 tasks × n models × n_layers layers of 64×32 3×3 filters; 'edges-0' has one sparse layer
    (conv2: 48 of 64 output channels zero) and the noise models are random. Depths are set as a graph would."""
    init_store(path)
    store = open_store(path, "a")
    rng = np.random.default_rng(0)
    for task in TASKS:
        for m in range(n_per_task):
            layers = []
            for k in range(n_layers):
                w = _weights(rng, task)
                if task == "Edges" and m == 0 and k == 2:
                    w[:48] = 0.0
                layer = make_layer(f"conv{k}", "Conv", w)
                layers.append(dataclasses.replace(layer, conv_depth=k, conv_depth_norm=k / (n_layers - 1),
                                                  depth_source="graph"))
            record = ModelRecord(ModelInfo(source=f"{task}-{m}.onnx", format="onnx"), tuple(layers))
            store.ingest(record, {"Name": f"{task.lower()}-{m}", "Task": task, "Visual Category": "synthetic",
                                  "Training-Dataset": "none" if task == "Noise" else "toy"})
    return open_store(path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo") / "zoo.fdb")


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
    tiles = [ax for ax in fig.axes if (ax.get_gid() or "").startswith("eigen:")]
    assert len(tiles) == 2 * 9
    limits = {im.get_clim() for ax in tiles for im in images_of(ax)}
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo == -hi and hi == pytest.approx(np.abs(np.stack([basis.components, blobs.components])).max())
    for ax in tiles:
        _, row, comp = ax.get_gid().split(":")
        b = (basis, blobs)[int(row)]
        (image,) = images_of(ax)
        assert np.allclose(image.get_array(), b.components[int(comp)].reshape(3, 3))
        assert ax.get_title() == f"{comp}: {b.explained_variance_ratio[int(comp)]:.3f}"
    (curve,) = [ax for ax in fig.axes if ax.get_gid() == "cumulative"]
    lines = {line.get_gid(): line for line in curve.lines}
    assert np.allclose(lines["cumulative:0"].get_ydata(), basis.cumulative)
    assert np.allclose(lines["cumulative:1"].get_ydata(), blobs.cumulative)
    labels = [t.get_text() for ax in fig.axes if (ax.get_gid() or "").startswith("eigen-label") for t in ax.texts]
    assert labels == [f"all\n{basis.n_filters:,} filters", f"blobs\n{blobs.n_filters:,} filters"]
    assert eigen_images(basis, n_components=4).axes  # a single result and fewer tiles
    assert sum((ax.get_gid() or "").startswith("eigen:") for ax in eigen_images(basis, n_components=4).axes) == 4


def test_ridge_plot_has_groups_as_rows_and_coefficients_as_columns(results):
    hist = results["hist"]
    fig = ridge_plot(hist, components=4)
    cells = {ax.get_gid(): ax for ax in fig.axes}
    assert len(cells) == len(hist.groups) * 4
    row_labels = [cells[f"ridge:{r}:0"].get_ylabel().strip() for r in range(len(hist.groups))]
    assert row_labels == list(hist.groups)
    centres = (hist.edges[:-1] + hist.edges[1:]) / 2
    for r in range(len(hist.groups)):
        for c in range(4):
            ax = cells[f"ridge:{r}:{c}"]
            assert len([col for col in ax.collections if col.get_gid() == "kde"]) == 1
            line = ax.lines[0]
            x, y = line.get_xdata(), line.get_ydata()
            assert y.max() == pytest.approx(1.0) and y.min() >= 0
            # the KDE's mode sits near the histogram's weighted mean for these unimodal groups
            counts = hist.counts[r, c]
            mean = (centres * counts).sum() / counts.sum()
            spread = np.sqrt(((centres - mean) ** 2 * counts).sum() / counts.sum())
            assert abs(x[np.argmax(y)] - mean) < spread
    assert cells["ridge:2:3"].get_xlabel().startswith("c3 (η ")


def test_drift_heatmap_shows_the_matrix_in_display_order_with_sizes(results):
    result = results["drift_task"]
    fig = drift_heatmap(result)
    ax = fig.axes[0]
    assert ax.get_gid() == "drift-matrix"
    (image,) = ax.images
    assert np.allclose(image.get_array(), result.matrix)
    assert image.get_clim()[0] == 0.0
    labels = [t.get_text() for t in ax.get_yticklabels()]
    for i, (group, nf, nm) in enumerate(zip(result.groups, result.sizes["n_filters"], result.sizes["n_models"])):
        assert labels[i].startswith(group) and f"{nm} m" in labels[i] and labels[i].endswith(f"  {i}")
    # sorted as in the paper: ascending mean drift to the other groups, outliers last
    means = result.matrix.sum(axis=1) / (len(result.groups) - 1)
    assert list(means) == sorted(means)
    assert len(ax.texts) == len(result.groups) ** 2  # annotated
    assert "drift D" in fig.axes[1].get_ylabel()
    depth = drift_heatmap(results["drift_depth"])
    assert [t.get_text().split("  (")[0] for t in depth.axes[0].get_yticklabels()] == list(
        results["drift_depth"].groups)


def test_drift_boxplots_put_the_axes_side_by_side(results):
    fig = drift_boxplots({"task": results["drift_task"], "depth": results["drift_depth"]})
    ax = fig.axes[0]
    assert ax.get_gid() == "drift-boxplots"
    for label, key in (("task", "drift_task"), ("depth", "drift_depth")):
        (points,) = [c for c in ax.collections if c.get_gid() == f"pairs:{label}"]
        assert np.allclose(np.sort(points.get_offsets()[:, 1]), np.sort(results[key].upper_triangle()))
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("task\n3 groups · 3 pairs") and ticks[1].startswith("depth\n4 groups · 6 pairs")


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
    assert ax.get_xlabel().startswith("coefficient 0 (η") and ax.get_ylabel().startswith("coefficient 1 (η")


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
