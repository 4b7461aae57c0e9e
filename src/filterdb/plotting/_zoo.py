"""Figures of a whole zoo: eigen-images, ridge plots, drift matrices, 2-D coefficient densities, degeneration.

Each function takes the result object of an analysis (:mod:`filterdb.analysis`) and returns a matplotlib
Figure bound to the Agg canvas; nothing is computed here that the analyses do not provide (apart from the
kernel density estimates that smooth the ridge plots) and nothing is written or shown. Artists that tests
and readers may want to find carry a ``gid`` (documented per function).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._style import (
    BLUE,
    FILTER_CMAP,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    SKY,
    VERDICT_COLOURS,
    VERMILLION,
    new_figure,
    style_axes,
    symmetric_limit,
    theme,
)

__all__ = ["coefficient_density_map", "degeneration_shares", "drift_boxplots", "drift_heatmap", "eigen_images",
           "ridge_plot"]

SERIES = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, GREY)  # lines of several selections
DRIFT_CMAP = "viridis"  # sequential, perceptually uniform, readable with colour-vision deficiencies
DENSITY_CMAP = "magma_r"  # sequential; light at low counts so that empty space stays paper-coloured


def _named(items: Any, kind: type, what: str) -> list[tuple[str, Any]]:
    """One result, a mapping label -> result, or a sequence of results / (label, result) pairs."""
    if isinstance(items, kind):
        pairs = [("", items)]
    elif isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    elif isinstance(items, Sequence) and not isinstance(items, str):
        pairs = [(str(x[0]), x[1]) if isinstance(x, tuple) else ("", x) for x in items]
    else:
        raise TypeError(f"{what} must be a {kind.__name__}, a mapping label -> {kind.__name__} or a list of them, "
                        f"got {type(items).__name__}")
    if not pairs:
        raise ValueError(f"{what}: nothing to draw (an empty collection)")
    for label, value in pairs:
        if not isinstance(value, kind):
            raise TypeError(f"{what}: {label or 'an item'} is a {type(value).__name__}, expected {kind.__name__}")
    return pairs


def _tile_shape(shape: str, d: int) -> tuple[int, int]:
    parts = [int(p) for p in str(shape).split("x") if p.isdigit()]
    if len(parts) == 2 and parts[0] * parts[1] == d:
        return parts[0], parts[1]
    return 1, d  # 1-D kernels (and anything else): one strip


# ----------------------------------------------------------------------------------------------- eigen-images
def eigen_images(bases: Any, *, n_components: int | None = None, theme_name: str = "light",
                 tile_inches: float = 0.62) -> Any:
    """The PCA basis of one or several selections as k×k tiles, with the cumulative explained variance.

    One row per selection (label at the left with its number of filters), one tile per principal
    component in order of explained variance, titled with its ratio η. All tiles share one diverging
    colour map centred at zero with symmetric limits ±v (v = the largest |loading| shown), so a colour
    means the same loading in every tile. The right panel draws the cumulative explained-variance ratio of
    every selection.

    Parameters
    ----------
    bases : PCAResult, mapping label -> PCAResult, or a list of PCAResult / (label, PCAResult)
    n_components : int, optional
        Tiles per row (default: all d components).
    theme_name : {"light", "dark"}

    Returns
    -------
    matplotlib.figure.Figure
        Tile Axes have ``gid`` "eigen:<row>:<component>" (one AxesImage each); the curve panel has ``gid``
        "cumulative" with one line per selection (``gid`` "cumulative:<row>"); the colour bar Axes "colorbar".

    Examples
    --------
    >>> from filterdb.analysis import fit_pca          # doctest: +SKIP
    >>> eigen_images({"all": fit_pca("zoo.fdb")})     # doctest: +SKIP
    """
    from ..analysis.pca import PCAResult

    pairs = _named(bases, PCAResult, "bases")
    th = theme(theme_name)
    d = pairs[0][1].d
    if any(b.d != d for _, b in pairs):
        raise ValueError("bases: all selections must have the same kernel shape (values per filter) to compare")
    k = d if n_components is None else int(n_components)
    if not 1 <= k <= d:
        raise ValueError(f"n_components must be in [1, {d}], got {n_components!r}")
    kh, kw = _tile_shape(pairs[0][1].shape, d)
    limit = symmetric_limit(np.stack([b.components[:k] for _, b in pairs]))
    rows = len(pairs)
    tile_w = tile_inches * max(1.0, kw / kh) if kh > 1 else tile_inches * 1.6
    width = min(13.0, max(7.5, 1.6 + k * tile_w + 3.4))
    height = max(2.4, rows * (tile_inches * (kh / kw if kh > 1 else 0.5) + 0.42) + 0.5)
    fig = new_figure(width, height, th)
    outer = fig.add_gridspec(1, 2, width_ratios=[k * tile_w + 1.2, 3.0], wspace=0.06)
    tiles = outer[0].subgridspec(rows, k + 1, width_ratios=[1.3] + [1.0] * k, wspace=0.08, hspace=0.45)
    image = None
    for r, (label, basis) in enumerate(pairs):
        head = fig.add_subplot(tiles[r, 0])
        head.set_axis_off()
        head.set_gid(f"eigen-label:{r}")
        head.text(1.0, 0.5, f"{label or 'all'}\n{basis.n_filters:,} filters", ha="right", va="center",
                  fontsize=8, color=th.ink, transform=head.transAxes, wrap=True)
        for i in range(k):
            ax = fig.add_subplot(tiles[r, i + 1])
            ax.set_gid(f"eigen:{r}:{i}")
            image = ax.imshow(basis.components[i].reshape(kh, kw), cmap=FILTER_CMAP, vmin=-limit, vmax=limit,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(th.muted)
            ax.set_title(f"{i}: {basis.explained_variance_ratio[i]:.3f}", fontsize=7, color=th.ink, pad=2)
    right = outer[1].subgridspec(2, 1, height_ratios=[4, 1], hspace=0.5)
    curve = fig.add_subplot(right[0])
    style_axes(curve, th)
    curve.set_gid("cumulative")
    for r, (label, basis) in enumerate(pairs):
        x = np.arange(1, d + 1)
        curve.plot(x, basis.cumulative, marker="o", markersize=3, linewidth=1.5, color=SERIES[r % len(SERIES)],
                   label=label or "all", gid=f"cumulative:{r}")
    curve.set_ylim(0, 1.02)
    curve.set_xlim(0.8, d + 0.2)
    curve.xaxis.get_major_locator().set_params(integer=True)
    curve.set_xlabel("components", fontsize=8)
    curve.set_ylabel("cumulative η", fontsize=8)
    curve.set_title("cumulative explained variance", fontsize=8, color=th.ink, loc="left")
    if rows > 1:
        curve.legend(fontsize=7, frameon=False, labelcolor=th.ink, loc="lower right")
    bar_ax = fig.add_subplot(right[1])
    bar_ax.set_gid("colorbar")
    bar = fig.colorbar(image, cax=bar_ax, orientation="horizontal")
    bar.set_label(f"loading (shared limits ±{limit:.2f})", color=th.ink, fontsize=7.5)
    bar.ax.tick_params(colors=th.ink, labelsize=7)
    bar.outline.set_edgecolor(th.ink)
    return fig


# ------------------------------------------------------------------------------------------------ ridge plots
def _kde_curve(centres: np.ndarray, weights: np.ndarray, grid: np.ndarray, bin_width: float) -> np.ndarray:
    """A Gaussian KDE (scipy) of binned data: bin centres weighted by their counts.

    Scott's bandwidth would collapse below the bin width for millions of filters and draw the bins
    themselves; the bandwidth is kept at least one bin width. Degenerate inputs (all mass in one bin) give
    a Gaussian bump of one bin width.
    """
    from scipy.stats import gaussian_kde

    w = np.asarray(weights, np.float64)
    total = w.sum()
    if total <= 0:
        return np.zeros_like(grid)
    mean = float((centres * w).sum() / total)
    std = float(np.sqrt(max((((centres - mean) ** 2) * w).sum() / total, 0.0)))
    if np.count_nonzero(w) < 2 or std <= 0:
        return np.exp(-0.5 * ((grid - mean) / bin_width) ** 2)
    neff = total**2 / (w**2).sum()
    factor = max(neff ** (-1 / 5), bin_width / std)
    return gaussian_kde(centres, weights=w, bw_method=factor)(grid)


def ridge_plot(hist: Any, *, components: Sequence[int] | int | None = None, theme_name: str = "light",
               max_groups: int = 24) -> Any:
    """The density of each PCA coefficient per group: groups as rows, coefficients as columns (the paper's
    ridge plots).

    Each cell is a Gaussian kernel density estimate (``scipy.stats.gaussian_kde``) of the group's streamed
    histogram of that coefficient (bin centres weighted by their counts), scaled to the cell's height so
    that shapes compare; a column shares its x-range (the central 99.8 % of all groups). Rows are in the
    order of ``hist.groups``.

    Parameters
    ----------
    hist : HistogramResult
        From :func:`filterdb.analysis.coefficient_histograms` (or a :class:`DriftResult`'s ``histograms``).
    components : int or list of int, optional
        Which coefficients (default: all d up to 9; an int n: the first n).
    max_groups : int
        Draw at most this many groups (the largest by filters), in their given order.

    Returns
    -------
    matplotlib.figure.Figure
        Cell Axes have ``gid`` "ridge:<row>:<component>" with one filled area (``gid`` "kde") each.
    """
    from ..analysis.histograms import HistogramResult

    if not isinstance(hist, HistogramResult):
        raise TypeError(f"hist must be a filterdb.analysis.HistogramResult, got {type(hist).__name__}")
    th = theme(theme_name)
    g_all, d, bins = hist.counts.shape
    if components is None:
        comps = list(range(min(d, 9)))
    elif isinstance(components, (int, np.integer)) and not isinstance(components, bool):
        comps = list(range(min(d, int(components))))
    else:
        comps = [int(c) for c in components]
    if not comps or any(not 0 <= c < d for c in comps):
        raise ValueError(f"components must be indices in [0, {d - 1}], got {components!r}")
    order = list(range(g_all))
    if g_all > max_groups:
        keep = set(np.argsort(-np.asarray(hist.n_filters), kind="stable")[:max_groups].tolist())
        order = [g for g in order if g in keep]
    edges = np.asarray(hist.edges, np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    width_bin = float(edges[1] - edges[0])
    eta = np.asarray(hist.basis.explained_variance_ratio) if hist.basis is not None else None
    rows, cols = len(order), len(comps)
    fig = new_figure(min(13.0, 1.9 + 1.25 * cols), max(2.4, 0.42 * rows + 1.1), th)
    grid = fig.add_gridspec(rows, cols, hspace=0.0, wspace=0.08)
    colour_of = [SERIES[r % len(SERIES)] for r in range(rows)]
    for c, comp in enumerate(comps):
        pooled = hist.counts[:, comp].sum(axis=0).astype(np.float64)
        cdf = np.cumsum(pooled) / max(pooled.sum(), 1.0)
        lo = edges[int(np.searchsorted(cdf, 0.001))]
        hi = edges[min(int(np.searchsorted(cdf, 0.999)) + 1, bins)]
        if not hi > lo:
            lo, hi = edges[0], edges[-1]
        pad = (hi - lo) * 0.05
        x = np.linspace(lo - pad, hi + pad, 256)
        for r, g in enumerate(order):
            ax = fig.add_subplot(grid[r, c])
            ax.set_gid(f"ridge:{r}:{comp}")
            ax.set_facecolor(th.paper)
            y = _kde_curve(centres, hist.counts[g, comp], x, width_bin)
            peak = float(y.max())
            y = y / peak if peak > 0 else y
            ax.fill_between(x, 0, y, color=colour_of[r], alpha=0.55, linewidth=0, gid="kde")
            ax.plot(x, y, color=colour_of[r], linewidth=0.9)
            ax.set_xlim(x[0], x[-1])
            ax.set_ylim(0, 1.08)
            ax.set_yticks([])
            for side, spine in ax.spines.items():
                spine.set_visible(side == "bottom")
                spine.set_color(th.muted)
            if r == rows - 1:
                ax.tick_params(axis="x", colors=th.ink, labelsize=6.5, length=2)
                ax.set_xlabel(f"c{comp}" + (f" (η {eta[comp]:.2f})" if eta is not None else ""), fontsize=7.5,
                              color=th.ink)
            else:
                ax.set_xticks([])
            if c == 0:
                label = hist.groups[g]
                label = label if len(label) <= 28 else label[:27] + "…"
                ax.set_ylabel(f"{label}  ", rotation=0, ha="right", va="center", fontsize=7.5, color=th.ink)
    return fig


# ------------------------------------------------------------------------------------------------------ drift
def _group_label(name: str, n_filters: int, n_models: int, limit: int = 30) -> str:
    name = name if len(name) <= limit else name[: limit - 1] + "…"
    return f"{name}  ({_compact(n_filters)} f · {n_models} m)"


def _compact(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def drift_heatmap(result: Any, *, annotate: bool | None = None, theme_name: str = "light") -> Any:
    """The drift matrix of one axis as a heatmap, rows and columns in the result's display order.

    Labels carry each group's size (filters "f", models "m"); the colour bar is the drift D (weighted
    symmetric KL divergence, nats); cells are annotated with their values when there are at most 14 groups.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` (``gid`` "drift-matrix") holds one AxesImage of the matrix (``gid`` "drift:<by>");
        ``fig.axes[1]`` is the colour bar.
    """
    from ..analysis.drift import DriftResult

    if not isinstance(result, DriftResult):
        raise TypeError(f"result must be a filterdb.analysis.DriftResult, got {type(result).__name__}")
    th = theme(theme_name)
    g = len(result.groups)
    annotate = g <= 14 if annotate is None else annotate
    labels = [_group_label(str(name), nf, nm) for name, nf, nm in
              zip(result.groups, result.sizes["n_filters"], result.sizes["n_models"])]
    side = min(11.0, max(4.2, 0.42 * g + 3.2))
    fig = new_figure(side + 1.4, side, th)
    ax = fig.add_subplot()
    ax.set_gid("drift-matrix")
    style_axes(ax, th, grid=False)
    vmax = float(result.matrix.max()) if result.matrix.size and result.matrix.max() > 0 else 1.0
    image = ax.imshow(result.matrix, cmap=DRIFT_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest",
                      gid=f"drift:{result.by}")
    ax.set_xticks(range(g), [str(i) for i in range(g)], fontsize=7.5)
    ax.set_yticks(range(g), [f"{lab}  {i}" for i, lab in enumerate(labels)], fontsize=7.5)
    ax.tick_params(length=0)
    ax.set_xlabel("group (same order as the rows)", fontsize=8)
    if annotate:
        from matplotlib.colors import Normalize

        norm = Normalize(0.0, vmax)
        for a in range(g):
            for b in range(g):
                v = result.matrix[a, b]
                ink = "#FFFFFF" if norm(v) < 0.55 else "#1F2328"  # viridis: dark at low values
                ax.text(b, a, f"{v:.2f}" if v < 10 else f"{v:.0f}", ha="center", va="center", fontsize=6.5,
                        color=ink)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("drift D (weighted symmetric KL, nats)", color=th.ink, fontsize=8)
    bar.ax.tick_params(colors=th.ink, labelsize=7)
    bar.outline.set_edgecolor(th.ink)
    ax.set_title(f"drift by {result.by}: {g} groups, {sum(result.sizes['n_filters']):,} filters", fontsize=9,
                 color=th.ink, loc="left")
    return fig


def drift_boxplots(results: Any, *, theme_name: str = "light") -> Any:
    """Boxplots of the upper triangles of several drift matrices side by side (one per axis), with the pairs
    drawn as points over the boxes.

    Parameters
    ----------
    results : DriftResult, mapping label -> DriftResult, or a list of DriftResult / (label, DriftResult)
        Labels default to each result's ``by``.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` has ``gid`` "drift-boxplots"; each axis' points are a collection with ``gid``
        "pairs:<label>"; the x tick labels name the axes and their number of pairs.
    """
    from ..analysis.drift import DriftResult

    pairs = [(label or str(r.by), r) for label, r in _named(results, DriftResult, "results")]
    th = theme(theme_name)
    fig = new_figure(min(11.0, max(4.5, 1.6 * len(pairs) + 2.0)), 3.6, th)
    ax = fig.add_subplot()
    ax.set_gid("drift-boxplots")
    style_axes(ax, th)
    data = [r.upper_triangle() for _, r in pairs]
    boxes = ax.boxplot(data, widths=0.55, patch_artist=True, showfliers=False,
                       medianprops={"color": th.ink, "linewidth": 1.4},
                       whiskerprops={"color": th.ink}, capprops={"color": th.ink},
                       boxprops={"edgecolor": th.ink})
    rng = np.random.default_rng(0)
    for i, ((label, _), values) in enumerate(zip(pairs, data)):
        boxes["boxes"][i].set_facecolor(SERIES[i % len(SERIES)])
        boxes["boxes"][i].set_alpha(0.45)
        jitter = rng.uniform(-0.16, 0.16, len(values))
        ax.scatter(np.full(len(values), i + 1) + jitter, values, s=9, color=SERIES[i % len(SERIES)],
                   edgecolors=th.ink, linewidths=0.3, zorder=3, gid=f"pairs:{label}")
    ax.set_xticks(range(1, len(pairs) + 1),
                  [f"{label}\n{len(r.groups)} groups · {len(v)} pairs" for (label, r), v in zip(pairs, data)],
                  fontsize=7.5)
    ax.set_ylabel("drift D between two groups (nats)", fontsize=8)
    ax.set_ylim(bottom=0)
    return fig


# ----------------------------------------------------------------------------------------------- 2-D density
def coefficient_density_map(density: Any, *, theme_name: str = "light") -> Any:
    """The joint density of two PCA coefficients over all selected filters, on a log colour scale.

    Empty bins stay paper-coloured; the colour bar counts filters per bin (log scale, so that the tails
    over many orders of magnitude stay visible next to the dense centre).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` (``gid`` "density") holds one QuadMesh (``gid`` "density:<i>:<j>") whose ``norm`` is
        a ``LogNorm``; ``fig.axes[1]`` is the colour bar.
    """
    from matplotlib.colors import LogNorm

    from ..analysis._density import DensityResult

    if not isinstance(density, DensityResult):
        raise TypeError(f"density must be a filterdb.analysis._density.DensityResult, got {type(density).__name__}")
    th = theme(theme_name)
    counts = np.asarray(density.counts, np.float64)
    shown = np.ma.masked_less_equal(counts.T, 0)  # rows: y bins
    top = float(counts.max()) if counts.max() > 0 else 1.0
    fig = new_figure(5.6, 4.6, th)
    ax = fig.add_subplot()
    ax.set_gid("density")
    style_axes(ax, th, grid=False)
    mesh = ax.pcolormesh(density.x_edges, density.y_edges, shown, cmap=DENSITY_CMAP,
                         norm=LogNorm(vmin=1.0, vmax=max(top, 10.0)), shading="flat", rasterized=True,
                         gid=f"density:{density.i}:{density.j}")
    nz = np.argwhere(counts > 0)
    if len(nz):  # zoom on the occupied part of the bound box
        (xa, ya), (xb, yb) = nz.min(axis=0), nz.max(axis=0)
        ax.set_xlim(density.x_edges[xa], density.x_edges[xb + 1])
        ax.set_ylim(density.y_edges[ya], density.y_edges[yb + 1])
    eta = density.basis.explained_variance_ratio
    ax.set_xlabel(f"coefficient {density.i} (η {eta[density.i]:.3f})", fontsize=8)
    ax.set_ylabel(f"coefficient {density.j} (η {eta[density.j]:.3f})", fontsize=8)
    ax.set_title(f"{density.n_filters:,} filters", fontsize=8.5, color=th.ink, loc="left")
    ax.set_aspect("equal", adjustable="box")
    bar = fig.colorbar(mesh, ax=ax, shrink=0.85, pad=0.02)
    bar.set_label("filters per bin (log scale)", color=th.ink, fontsize=8)
    bar.ax.tick_params(colors=th.ink, labelsize=7, which="both")
    bar.outline.set_edgecolor(th.ink)
    return fig


# ------------------------------------------------------------------------------------------------ degeneration
_KINDS = ("sparse", "low-diversity", "random")


def degeneration_shares(result: Any, *, measure: str = "layers", theme_name: str = "light",
                        max_groups: int = 30) -> Any:
    """Shares of degenerated layers per group and per depth decile, one bar per verdict kind.

    Parameters
    ----------
    result : DegenerationResult
    measure : {"layers", "filters"}
        Share of layers flagged, or share of filters sitting in flagged layers.

    Returns
    -------
    matplotlib.figure.Figure
        Axes ``gid`` "degeneration-group" (only when the result has ``per_group``) and "degeneration-depth";
        bars of a kind have ``gid`` "bars-<kind>", one bar per group / decile.
    """
    from ..analysis.degeneration import DegenerationResult

    if not isinstance(result, DegenerationResult):
        raise TypeError(f"result must be a filterdb.analysis.DegenerationResult, got {type(result).__name__}")
    if measure not in ("layers", "filters"):
        raise ValueError(f"measure must be 'layers' or 'filters', got {measure!r}")
    th = theme(theme_name)
    panels: list[tuple[str, Any, str]] = []
    if result.per_group is not None and len(result.per_group):
        frame = result.per_group
        if len(frame) > max_groups:
            frame = frame.nlargest(max_groups, "n_layers")
        panels.append(("degeneration-group", frame, str(result.by)))
    panels.append(("degeneration-depth", result.per_depth, "depth_decile"))
    n_rows_max = max(len(f) for _, f, _ in panels)
    fig = new_figure(11.0 if len(panels) == 2 else 6.5, max(3.4, 0.26 * n_rows_max + 1.6), th)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / len(_KINDS)
    for ax, (gid, frame, key) in zip(axes, panels):
        style_axes(ax, th)
        ax.set_gid(gid)
        labels = [str(v) for v in frame[key]]
        y = np.arange(len(frame))
        for k, kind in enumerate(_KINDS):
            ax.barh(y + (k - 1) * width, frame[f"{kind}_{measure}"].to_numpy(float), height=width,
                    color=VERDICT_COLOURS[kind], label=kind, gid=f"bars-{kind}")
        ax.set_yticks(y, [f"{lab if len(lab) <= 26 else lab[:25] + '…'}  ({int(n)} l)"
                          for lab, n in zip(labels, frame["n_layers"])], fontsize=7.5)
        ax.invert_yaxis()
        top = float(np.nanmax(frame[[f"{k}_{measure}" for k in _KINDS]].to_numpy(float))) if len(frame) else 0.0
        ax.set_xlim(0, min(1.0, max(0.1, top * 1.15)))
        ax.set_xlabel(f"share of {'layers flagged' if measure == 'layers' else 'filters in flagged layers'}",
                      fontsize=8)
        ax.set_title("per " + ("depth decile (conv_depth_norm)" if key == "depth_decile" else key), fontsize=8.5,
                     color=th.ink, loc="left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, fontsize=8, frameon=False, labelcolor=th.ink)
    return fig
