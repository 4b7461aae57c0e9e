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

from .._kernel import parse_kernel_key
from ..errors import UsageError
from ._style import (
    FILTER_CMAP,
    PAGE_FONT,
    PAGE_WIDTH,
    VERDICT_COLOURS,
    WIDE_WIDTH,
    group_colours,
    new_figure,
    style_axes,
    symmetric_limit,
    theme,
    wrap_label,
)

__all__ = ["coefficient_density_map", "degeneration_shares", "drift_boxplots", "drift_heatmap", "eigen_images",
           "ridge_plot"]

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
        raise UsageError(f"{what}: nothing to draw (an empty collection)")
    for label, value in pairs:
        if not isinstance(value, kind):
            raise TypeError(f"{what}: {label or 'an item'} is a {type(value).__name__}, expected {kind.__name__}")
    return pairs


def _tile_shape(shape: str, d: int) -> tuple[int, int]:
    try:
        sizes = parse_kernel_key(shape).sizes
    except UsageError:
        sizes = ()
    if len(sizes) == 2 and sizes[0] * sizes[1] == d:
        return sizes[0], sizes[1]
    return 1, d  # 1-D and 3-D kernels: one strip


# ----------------------------------------------------------------------------------------------- eigen-images
def eigen_images(bases: Any, *, n_components: int | None = None, theme_name: str = "light",
                 width: float = PAGE_WIDTH) -> Any:
    """The PCA basis of one or several selections as k×k tiles, with the cumulative explained variance.

    One row of tiles per selection (its label and number of filters above the row), one tile per principal
    component in order of explained variance, numbered 1, 2, … as on the cumulative curve's axis, with its
    share η of the variance (in %) under it. All tiles share one diverging colour map centred at zero with
    symmetric limits ±v (v = the largest |loading| shown), so a colour means the same loading in every
    tile. The panel below draws the cumulative explained-variance ratio of every selection.

    Parameters
    ----------
    bases : PCAResult, mapping label -> PCAResult, or a list of PCAResult / (label, PCAResult)
    n_components : int, optional
        Tiles per row (default: all d components).
    theme_name : {"light", "dark"}
    width : float
        Figure width in inches (text stays 10 pt).

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per selection (``gid`` "eigen:<row>") holding the row's tiles as one image (``gid``
        "tiles:<row>", the components side by side with NaN gaps), the tile numbers and η as texts; the curve
        panel has ``gid`` "cumulative" with one line per selection (``gid`` "cumulative:<row>"); the colour
        bar Axes "colorbar".

    Examples
    --------
    >>> from filterdb.analysis import fit_pca          # doctest: +SKIP
    >>> eigen_images({"all": fit_pca("zoo.fdb")})     # doctest: +SKIP
    """
    from ..analysis import PCAResult

    pairs = _named(bases, PCAResult, "bases")
    th = theme(theme_name)
    d = pairs[0][1].d
    if any(b.d != d for _, b in pairs):
        raise UsageError("bases: all selections must have the same kernel shape (values per filter) to compare")
    k = d if n_components is None else int(n_components)
    if not 1 <= k <= d:
        raise UsageError(f"n_components must be in [1, {d}], got {n_components!r}")
    kh, kw = _tile_shape(pairs[0][1].shape, d)
    limit = symmetric_limit(np.stack([b.components[:k] for _, b in pairs]))
    rows = len(pairs)
    tile = min(0.62, (width - 0.3) / (k + (k - 1) * 0.15))  # inches per tile, gaps of 15 % between tiles
    row_h = tile * (kh / kw if kh > 1 else 0.5) + 0.95  # label and numbers above, η below
    height = rows * row_h + 2.75
    fig = new_figure(width, height, th)
    grid = fig.add_gridspec(rows + 2, 1, height_ratios=[row_h] * rows + [1.9, 0.35], hspace=0.15)
    gap = 0.15 * kw  # in tile pixels
    image = None
    for r, (label, basis) in enumerate(pairs):
        ax = fig.add_subplot(grid[r])
        ax.set_gid(f"eigen:{r}")
        strip = np.full((kh, k * kw + (k - 1) * int(np.ceil(gap))), np.nan)
        step = kw + int(np.ceil(gap))
        for i in range(k):
            strip[:, i * step:i * step + kw] = basis.components[i].reshape(kh, kw)
        image = ax.imshow(strip, cmap=FILTER_CMAP, vmin=-limit, vmax=limit, interpolation="nearest",
                          gid=f"tiles:{r}")
        ax.set_axis_off()
        ax.set_title(f"{label or 'all'}: {basis.n_filters:,} filters", fontsize=PAGE_FONT, color=th.ink, loc="left",
                     pad=PAGE_FONT * 1.5)
        for i in range(k):
            centre = i * step + (kw - 1) / 2
            ax.text(centre, -0.55, f"{i + 1}", ha="center", va="bottom", fontsize=PAGE_FONT, color=th.ink,
                    fontweight="bold", gid=f"number:{r}:{i}")
            ax.text(centre, kh - 0.45, f"{100 * basis.explained_variance_ratio[i]:.0f}%", ha="center", va="top",
                    fontsize=PAGE_FONT, color=th.ink, gid=f"eta:{r}:{i}")
    curve = fig.add_subplot(grid[rows])
    style_axes(curve, th)
    curve.set_gid("cumulative")
    colours = group_colours(rows)
    for r, (label, basis) in enumerate(pairs):
        x = np.arange(1, d + 1)
        curve.plot(x, basis.cumulative, marker="o", markersize=3, linewidth=1.5, color=colours[r],
                   label=label or "all", gid=f"cumulative:{r}")
    curve.set_ylim(0, 1.02)
    curve.set_xlim(0.8, d + 0.2)
    curve.set_xticks(range(1, d + 1))
    curve.set_xlabel("components (numbered as the tiles)", fontsize=PAGE_FONT)
    curve.set_ylabel("cumulative η", fontsize=PAGE_FONT)
    if rows > 1:
        curve.legend(fontsize=PAGE_FONT, frameon=False, labelcolor=th.ink, loc="lower right")
    bar_ax = fig.add_subplot(grid[rows + 1])
    bar_ax.set_gid("colorbar")
    bar = fig.colorbar(image, cax=bar_ax, orientation="horizontal")
    bar.set_label(f"loading (blue < 0 < red, shared limits ±{limit:.2f})", color=th.ink, fontsize=PAGE_FONT)
    bar.ax.tick_params(colors=th.ink, labelsize=PAGE_FONT)
    bar.outline.set_edgecolor(th.ink)
    return fig


# ------------------------------------------------------------------------------------------------ ridge plots
def ridge_plot(hist: Any, *, components: Sequence[int] | int | None = None, theme_name: str = "light",
               max_groups: int = 24, model_weighting: bool | None = None, width: float = PAGE_WIDTH) -> Any:
    """The distribution of each PCA coefficient per group (the paper's ridge plots), drawn as the very
    histograms that drift compares.

    One panel per coefficient (three per row), one ridge per group inside it, offset vertically in the order
    of the groups: the group's share of filters per bin as a step line over a light fill, each ridge scaled
    to its own highest bin so that shapes compare. No smoothing: bins are the drift's bins, so two groups
    with a visible drift show visibly different ridges. A panel's x-range is the central 99.8 % of all
    groups. Group labels sit left of the first panel of each row; each group has its own colour.

    Parameters
    ----------
    hist : DriftResult or HistogramResult
        A :class:`~filterdb.analysis.DriftResult` draws its groups in the matrix's order and with its model
        weighting; a :class:`~filterdb.analysis.HistogramResult` in its own group order.
    components : int or list of int, optional
        Which coefficients (default: all d up to 9; an int n: the first n).
    max_groups : int
        Draw at most this many groups (the largest by filters), in their given order.
    model_weighting : bool, optional
        Each model of a group counts equally (default: the DriftResult's setting; filters count equally
        for a HistogramResult).

    Returns
    -------
    matplotlib.figure.Figure
        Panel Axes have ``gid`` "ridge:<component>"; each holds one step line per group (``gid``
        "ridge:<component>:<row>", heights scaled to a peak of 0.9 above the ridge's baseline, the row).
    """
    from ..analysis import DriftResult, group_distributions
    from ..analysis import HistogramResult

    names: tuple[str, ...]
    if isinstance(hist, DriftResult):
        if hist.histograms is None:
            raise UsageError("this DriftResult carries no histograms to draw")
        weighting = hist.model_weighting if model_weighting is None else model_weighting
        source = hist.histograms
        position = {g: i for i, g in enumerate(source.groups)}
        order = [position[g] for g in hist.groups]
    elif isinstance(hist, HistogramResult):
        weighting, source = bool(model_weighting), hist
        order = list(range(len(source.groups)))
    else:
        raise TypeError(f"hist must be a filterdb.analysis.DriftResult or HistogramResult, got {type(hist).__name__}")
    th = theme(theme_name)
    g_all, d, bins = source.counts.shape
    if components is None:
        comps = list(range(min(d, 9)))
    elif isinstance(components, bool):
        raise UsageError(f"components must be a count or a list of indices in [0, {d - 1}], got {components!r}")
    elif isinstance(components, (int, np.integer)):
        comps = list(range(min(d, int(components))))
    else:
        comps = [int(c) for c in components]
    if not comps or any(not 0 <= c < d for c in comps):
        raise UsageError(f"components must be indices in [0, {d - 1}], got {components!r}")
    if g_all > max_groups:
        keep = set(np.argsort(-np.asarray(source.n_filters), kind="stable")[:max_groups].tolist())
        order = [g for g in order if g in keep]
    names = tuple(source.groups[g] for g in order)
    probs = group_distributions(source, model_weighting=weighting)
    edges = np.asarray(source.edges, np.float64)
    eta = np.asarray(source.basis.explained_variance_ratio) if source.basis is not None else None
    rows, cols = len(order), min(3, len(comps))
    panel_rows = -(-len(comps) // cols)
    ridge_h = 0.2
    height = panel_rows * (rows * ridge_h + 0.65) + 0.3
    fig = new_figure(width, height, th)
    grid = fig.add_gridspec(panel_rows, cols, hspace=0.05, wspace=0.06)
    colours = group_colours(rows)
    for n, comp in enumerate(comps):
        ax = fig.add_subplot(grid[n // cols, n % cols])
        ax.set_gid(f"ridge:{comp}")
        ax.set_facecolor(th.paper)
        pooled = source.counts[:, comp].sum(axis=0).astype(np.float64)
        cdf = np.cumsum(pooled) / max(pooled.sum(), 1.0)
        lo = int(np.searchsorted(cdf, 0.001))
        hi = min(int(np.searchsorted(cdf, 0.999)) + 1, bins)
        if not hi > lo:
            lo, hi = 0, bins
        lo, hi = max(0, lo - 1), min(bins, hi + 1)
        x = edges[lo:hi + 1]
        for r, g in enumerate(order):
            p = probs[g, comp, lo:hi]
            peak = float(p.max())
            y = (p / peak if peak > 0 else p) * 0.9
            base = rows - 1 - r  # the first group on top
            ax.fill_between(x, base, base + np.append(y, y[-1]), step="post", color=colours[r], alpha=0.25,
                            linewidth=0)
            ax.stairs(base + y, x, baseline=base, color=colours[r], linewidth=1.1, gid=f"ridge:{comp}:{r}")
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(-0.05, rows)
        ax.set_xticks([])
        ax.set_yticks([])
        for side, spine in ax.spines.items():
            spine.set_visible(side == "bottom")
            spine.set_color(th.muted)
        title = f"{comp + 1}" + (f" · η {100 * eta[comp]:.0f}%" if eta is not None else "")
        ax.set_title(title, fontsize=PAGE_FONT, color=th.ink, pad=2)
        if n % cols == 0:
            ax.set_yticks(np.arange(rows) + 0.35, [_short(names[rows - 1 - i], 18) for i in range(rows)],
                          fontsize=PAGE_FONT, color=th.ink)
            ax.tick_params(axis="y", length=0, pad=2)
    return fig


# ------------------------------------------------------------------------------------------------------ drift
def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _value(v: float) -> str:
    """A drift value in three characters where possible: .09, .41, 1.2, 13."""
    if not np.isfinite(v):
        return "–"
    if v < 0.995:
        return f"{v:.2f}"[1:]
    return f"{v:.1f}" if v < 9.95 else f"{v:.0f}"


def drift_heatmap(result: Any, *, annotate: bool | None = None, theme_name: str = "light",
                  vmax: float | None = None, noise_floor: Mapping[str, float | None] | None = None,
                  ranking: Sequence[Any] | None = None, width: float = PAGE_WIDTH) -> Any:
    """The drift matrix of one axis as a heatmap, rows and columns in the result's display order, named on
    both axes; with the axis's ranking, a panel of each group's mean drift against its noise floor beside it.

    The colours encode the drift D (weighted symmetric KL divergence, nats) of the off-diagonal cells only,
    from 0 to ``vmax`` (default: the largest off-diagonal value): pass the same ``vmax`` to every heatmap of a
    page so that one colour means one value. Cells carry their values (without the leading zero: .09) when
    there are at most 12 groups. With ``noise_floor`` (group -> the drift between two random halves of the
    group; None or NaN: unknown), the diagonal is no heat colour but a grey cell with the floor as an
    italic number ("?" when unknown), and a pair counts as *beyond noise* only where its drift exceeds the
    larger floor of its two groups, both known: those cells keep their full colour and a bold number, every
    other cell is washed out (pale, its number in plain dark ink), so the pairs that differ stand out.

    Parameters
    ----------
    result : DriftResult or AxisStudy
        An :class:`~filterdb.analysis.AxisStudy` brings its floors and ranking (``noise_floor`` and
        ``ranking`` default to them).
    ranking : list of GroupShift, optional
        Each group's mean drift to the others and floor (``analysis.GroupShift``): drawn as bars beside the
        matrix, one per row, the floor as a black tick; bars beyond their floor in full colour.
    width : float
        Figure width in inches (PAGE_WIDTH for a phone, WIDE_WIDTH for a desktop page).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` (``gid`` "drift-matrix") holds one AxesImage of the off-diagonal matrix (``gid``
        "drift:<by>", the diagonal masked), the diagonal cells as rectangles with ``gid`` "floor", washed-out
        cells as rectangles with ``gid`` "within-noise"; the colour bar Axes has ``gid`` "colorbar"; the
        ranking panel (when drawn) ``gid`` "drift-ranking" with one bar per group (``gid`` "mean:<group>") and
        one floor tick per group with a floor (``gid`` "floor:<group>").
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgb
    from matplotlib.patches import Rectangle

    from ..analysis import DriftResult

    if hasattr(result, "drift") and hasattr(result, "ranking"):  # an AxisStudy
        noise_floor = result.floors if noise_floor is None else noise_floor
        ranking = result.ranking if ranking is None else ranking
        result = result.drift
    if not isinstance(result, DriftResult):
        raise TypeError(f"result must be a filterdb.analysis.DriftResult or AxisStudy, got {type(result).__name__}")
    th = theme(theme_name)
    g = len(result.groups)
    annotate = g <= 12 if annotate is None else annotate
    matrix = np.array(result.matrix, dtype=np.float64)
    off = ~np.eye(g, dtype=bool)
    floors = np.array([_floor(noise_floor, n) for n in result.groups])
    if vmax is None:
        top = float(np.nanmax(matrix[off])) if g > 1 else 0.0
        vmax = top if top > 0 else 1.0
    shown = np.where(off, matrix, np.nan)
    labels = [wrap_label(str(name), 14) for name in result.groups]
    longest = max(max(len(line) for line in lab.split("\n")) for lab in labels)
    label_in = 0.085 * longest + 0.25  # inches of PAGE_FONT text beside the rows / under the columns
    panel = ranking is not None and width >= 6.0 and g > 1
    side = min(0.5 * width if panel else width - label_in - 1.0, 0.45 * g + 0.5)  # the matrix, inches
    legend = None
    if noise_floor is not None:
        import textwrap

        legend = textwrap.fill("Diagonal, grey, italic: each group's noise floor (? = cannot be estimated). Bold "
                               "on full colour: the pair's drift exceeds the larger floor of its two groups; "
                               "pale: it does not.", int(width * 72 / (PAGE_FONT * 0.56)))
    legend_in = 0.2 + (0.19 * (legend.count("\n") + 1) if legend else 0.0)
    cell = side / max(g, 1)  # inches per column: two-line labels need room, narrow columns get one steeper line
    xlabels = labels if cell >= 0.5 else [wrap_label(str(name), 20, 1) for name in result.groups]
    rotation = 45 if cell >= 0.38 else 60
    x_in = 0.076 * max(len(lab.split("\n")[0]) for lab in xlabels) * np.sin(np.radians(rotation)) + 0.3
    fig = new_figure(width, side + x_in + legend_in + 0.8, th)
    grid = fig.add_gridspec(1, 2 if panel else 1, wspace=0.06,
                            width_ratios=[side + label_in, max(1.0, width - side - label_in - 0.4)] if panel else None)
    ax = fig.add_subplot(grid[0, 0])
    ax.set_gid("drift-matrix")
    style_axes(ax, th, grid=False)
    cmap = colormaps[DRIFT_CMAP].with_extremes(bad=th.paper)
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest",
                      gid=f"drift:{result.by}", aspect="auto")  # auto: rows line up with the ranking panel
    ax.set_xticks(range(g), xlabels, fontsize=PAGE_FONT, rotation=rotation, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(g), labels, fontsize=PAGE_FONT)
    ax.tick_params(length=0, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    norm = Normalize(0.0, vmax)
    wash = "#FFFFFF" if th.name == "light" else th.paper
    diagonal = "#E6E9ED" if th.name == "light" else "#2B3138"
    for a in range(g):
        for b in range(g):
            v = matrix[a, b]
            if a == b:
                if noise_floor is None:
                    continue
                ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, facecolor=diagonal, edgecolor=th.ink,
                                       linewidth=0.8, linestyle=(0, (2, 2)), gid="floor"))
                if annotate:
                    f = floors[a]
                    ax.text(b, a, _value(f) if np.isfinite(f) else "?", ha="center", va="center",
                            fontsize=PAGE_FONT, color=th.ink, fontstyle="italic")
                continue
            beyond = noise_floor is None or bool(np.isfinite(floors[a]) and np.isfinite(floors[b])
                                                 and v > max(floors[a], floors[b]))
            if not beyond:
                ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, facecolor=wash, edgecolor="none", alpha=0.62,
                                       gid="within-noise"))
            if annotate and np.isfinite(v):
                if beyond:
                    r, gr, bl = to_rgb(cmap(norm(v)))
                    ink = "#FFFFFF" if 0.299 * r + 0.587 * gr + 0.114 * bl < 0.55 else "#1F2328"
                    ax.text(b, a, _value(v), ha="center", va="center", fontsize=PAGE_FONT, color=ink,
                            fontweight="bold" if noise_floor is not None else "normal")
                else:
                    ax.text(b, a, _value(v), ha="center", va="center", fontsize=PAGE_FONT,
                            color="#1F2328" if th.name == "light" else th.ink)
    bar = fig.colorbar(image, ax=ax, location="top", shrink=0.8, pad=0.02, aspect=30)
    bar.ax.set_gid("colorbar")
    bar.set_label("drift D between two groups (nats)", color=th.ink, fontsize=PAGE_FONT)
    bar.ax.tick_params(colors=th.ink, labelsize=PAGE_FONT)
    bar.outline.set_edgecolor(th.ink)
    if panel and ranking is not None:
        _ranking_panel(fig.add_subplot(grid[0, 1]), result, ranking, th, cmap, norm)
    if legend:
        fig.supxlabel(legend, fontsize=PAGE_FONT, color=th.ink, x=0.01, ha="left")
    return fig


def _floor(floors: Mapping[str, float | None] | None, group: Any) -> float:
    value = None if floors is None else floors.get(str(group))
    return float("nan") if value is None else float(value)


def _ranking_panel(ax: Any, result: Any, ranking: Sequence[Any], th: Any, cmap: Any, norm: Any) -> None:
    """Each group's mean drift to the others (bars, rows as the matrix) and its noise floor (a black tick)."""
    style_axes(ax, th)
    ax.set_gid("drift-ranking")
    by_group = {str(r.group): r for r in ranking}
    g = len(result.groups)
    ax.set_ylim(g - 0.5, -0.5)
    ax.set_yticks([])
    top = 0.0
    for row, name in enumerate(result.groups):
        r = by_group.get(str(name))
        if r is None:
            continue
        beyond = bool(r.beyond_floor)
        ax.barh(row, r.mean_drift, height=0.6, color=cmap(norm(r.mean_drift)), alpha=1.0 if beyond else 0.3,
                edgecolor=th.ink if beyond else th.muted, linewidth=0.6, gid=f"mean:{name}")
        top = max(top, float(r.mean_drift), float(r.floor or 0.0))
        if r.floor is not None and np.isfinite(r.floor):
            ax.plot([r.floor, r.floor], [row - 0.42, row + 0.42], color=th.ink, linewidth=2.2, gid=f"floor:{name}")
        else:
            ax.text(r.mean_drift, row, "  no floor", va="center", ha="left", fontsize=PAGE_FONT, color=th.ink)
    ax.set_xlim(0, top * 1.3 if top > 0 else 1.0)
    ax.set_xlabel("mean drift to the other groups; | = noise floor", fontsize=PAGE_FONT)
    ax.set_title("beyond its floor: full colour", fontsize=PAGE_FONT, color=th.ink, loc="left")


def drift_boxplots(results: Any, *, theme_name: str = "light", width: float = PAGE_WIDTH) -> Any:
    """Boxplots of the upper triangles of several drift matrices, one row per axis, with the pairs drawn as
    points over the boxes.

    Parameters
    ----------
    results : DriftResult, mapping label -> DriftResult, or a list of DriftResult / (label, DriftResult)
        Labels default to each result's ``by``.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` has ``gid`` "drift-boxplots"; each axis' points are a collection with ``gid``
        "pairs:<label>"; the y tick labels name the axes and their number of groups and pairs.
    """
    from ..analysis import DriftResult

    pairs = [(label or str(r.by), r) for label, r in _named(results, DriftResult, "results")]
    th = theme(theme_name)
    fig = new_figure(width, 0.75 * len(pairs) + 1.0, th)
    ax = fig.add_subplot()
    ax.set_gid("drift-boxplots")
    style_axes(ax, th)
    data = [r.upper_triangle() for _, r in pairs]
    colours = group_colours(len(pairs))
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    sideways = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}  # renamed in 3.10
    boxes = ax.boxplot(data, widths=0.55, patch_artist=True, showfliers=False, **sideways,
                       medianprops={"color": th.ink, "linewidth": 1.4},
                       whiskerprops={"color": th.ink}, capprops={"color": th.ink},
                       boxprops={"edgecolor": th.ink})
    rng = np.random.default_rng(0)
    for i, ((label, _), values) in enumerate(zip(pairs, data)):
        boxes["boxes"][i].set_facecolor(colours[i])
        boxes["boxes"][i].set_alpha(0.45)
        jitter = rng.uniform(-0.16, 0.16, len(values))
        ax.scatter(values, np.full(len(values), i + 1) + jitter, s=10, color=colours[i],
                   edgecolors=th.ink, linewidths=0.3, zorder=3, gid=f"pairs:{label}")
    ax.set_yticks(range(1, len(pairs) + 1),
                  [f"{_short(label, 18)}\n{len(r.groups)} groups · {len(v)} pairs" for (label, r), v in zip(pairs, data)],
                  fontsize=PAGE_FONT)
    ax.invert_yaxis()
    ax.set_xlabel("drift D between two groups (nats)", fontsize=PAGE_FONT)
    ax.set_xlim(left=0)
    return fig


# ----------------------------------------------------------------------------------------------- 2-D density
def coefficient_density_map(density: Any, *, theme_name: str = "light", width: float = PAGE_WIDTH) -> Any:
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

    from ..analysis import DensityResult

    if not isinstance(density, DensityResult):
        raise TypeError(f"density must be a filterdb.analysis._density.DensityResult, got {type(density).__name__}")
    th = theme(theme_name)
    counts = np.asarray(density.counts, np.float64)
    shown = np.ma.masked_less_equal(counts.T, 0)  # rows: y bins
    top = float(counts.max()) if counts.max() > 0 else 1.0
    fig = new_figure(width, min(width * 0.85, 4.8), th)  # square data, at most 4.8 in tall on a wide page
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
    ax.set_xlabel(f"coefficient {density.i + 1} (η {100 * eta[density.i]:.0f}%)", fontsize=PAGE_FONT)
    ax.set_ylabel(f"coefficient {density.j + 1} (η {100 * eta[density.j]:.0f}%)", fontsize=PAGE_FONT)
    ax.set_aspect("equal", adjustable="box")
    bar = fig.colorbar(mesh, ax=ax, shrink=0.85, pad=0.02)
    bar.set_label("filters per bin (log scale)", color=th.ink, fontsize=PAGE_FONT)
    bar.ax.tick_params(colors=th.ink, labelsize=PAGE_FONT, which="both")
    bar.outline.set_edgecolor(th.ink)
    return fig


# ------------------------------------------------------------------------------------------------ degeneration
_KINDS = ("sparse", "low-diversity", "random")


def degeneration_shares(result: Any, *, measure: str = "layers", theme_name: str = "light",
                        max_groups: int = 30, width: float = PAGE_WIDTH) -> Any:
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
    from ..analysis import DegenerationResult

    if not isinstance(result, DegenerationResult):
        raise TypeError(f"result must be a filterdb.analysis.DegenerationResult, got {type(result).__name__}")
    if measure not in ("layers", "filters"):
        raise UsageError(f"measure must be 'layers' or 'filters', got {measure!r}")
    th = theme(theme_name)
    panels: list[tuple[str, Any, str]] = []
    if result.per_group is not None and len(result.per_group):
        frame = result.per_group
        if len(frame) > max_groups:
            frame = frame.nlargest(max_groups, "n_layers")
        panels.append(("degeneration-group", frame, str(result.by)))
    panels.append(("degeneration-depth", result.per_depth, "depth_decile"))
    heights = [0.36 * len(f) + 0.7 for _, f, _ in panels]
    if width >= 7.0:  # a wide page: the panels side by side
        fig = new_figure(width, max(heights) + 0.6, th)
        axes = fig.subplots(1, len(panels), squeeze=False)[0, :]
    else:
        fig = new_figure(width, sum(heights) + 0.5, th)
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    bar_h = 0.8 / len(_KINDS)
    for ax, (gid, frame, key) in zip(axes, panels):
        style_axes(ax, th)
        ax.set_gid(gid)
        labels = [str(v) for v in frame[key]]
        y = np.arange(len(frame))
        for k, kind in enumerate(_KINDS):
            ax.barh(y + (k - 1) * bar_h, frame[f"{kind}_{measure}"].to_numpy(float), height=bar_h,
                    color=VERDICT_COLOURS[kind], label=kind, gid=f"bars-{kind}")
        ax.set_yticks(y, [f"{_short(lab, 18)} ({int(n)})" for lab, n in zip(labels, frame["n_layers"])],
                      fontsize=PAGE_FONT)
        ax.invert_yaxis()
        top = float(np.nanmax(frame[[f"{k}_{measure}" for k in _KINDS]].to_numpy(float))) if len(frame) else 0.0
        ax.set_xlim(0, min(1.0, max(0.1, top * 1.15)))
        ax.set_xlabel(f"share of {'layers flagged' if measure == 'layers' else 'filters in flagged layers'}",
                      fontsize=PAGE_FONT)
        ax.set_title("per " + ("depth decile (layers)" if key == "depth_decile" else f"{key} (layers)"),
                     fontsize=PAGE_FONT, color=th.ink, loc="left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, fontsize=PAGE_FONT, frameon=False,
               labelcolor=th.ink)
    return fig
