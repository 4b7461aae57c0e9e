"""Figures of one model: layer metrics against depth, and grids of a layer's filters.

Each function takes a result object (a :class:`~filterdb.check.ModelReport` or a
:class:`~filterdb.ConvLayer`) and returns a matplotlib Figure; nothing is computed here that the
analyses do not already provide, and nothing is written or shown.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._kernel import parse_kernel_key
from ..check import VERDICT_KINDS, ModelReport, Thresholds, judge_layers
from ..errors import UsageError
from ..types import ConvLayer
from ._style import (
    FILTER_CMAP,
    HEALTHY,
    PAGE_FONT,
    PAGE_WIDTH,
    THRESHOLD,
    VERDICT_COLOURS,
    VERDICT_MARKERS,
    new_figure,
    style_axes,
    symmetric_limit,
    theme,
)

__all__ = ["layer_filters", "metrics_vs_depth", "rgb_filters"]

# (column, axis label, y-limits floor/ceiling)
_PANELS = (
    ("sparsity", "sparsity", (0.0, 1.0)),
    ("variance_entropy_norm", "entropy (norm.)", (0.0, 1.1)),
    ("orthogonality", "orthogonality", (0.0, 1.0)),
)
_TITLES = {
    "sparsity": "sparsity: share of ~0 filters",
    "variance_entropy_norm": "variance entropy, normalised (1 = random)",
    "orthogonality": "orthogonality (1 = orthogonal filters)",
}


def metrics_vs_depth(report: Any, *, thresholds: Thresholds | None = None, theme_name: str = "light",
                     width: float = PAGE_WIDTH) -> Any:
    """Sparsity, normalised variance entropy and orthogonality of every 2-D layer against its depth.

    One panel per metric, sharing the depth axis (``conv_depth``: 0 is the first conv level). Threshold
    lines are drawn where a verdict uses the metric (sparse; low-diversity and random) and named in the
    panel's title, so that no label covers a point. Layers with a verdict are drawn with the verdict's
    colour and marker in every panel; depthwise and grouped layers are hollow. Layers without a value (e.g.
    entropy of 1×1 layers) are counted in the panel's title. Text is at least 10 pt on a figure
    ``width`` inches wide (default: a phone's width, see the report).

    Parameters
    ----------
    report : ModelReport or pandas.DataFrame
        As :func:`filterdb.check.check_model` returns it, or a layer metrics table (one model's rows of a
        store's ``layers`` view, or :func:`filterdb.metrics.layer_metrics`), judged here with
        :func:`filterdb.check.judge_layers`.
    thresholds : Thresholds, optional
        Cut-offs for a layer metrics table (default: those of ``filterdb check``); a ModelReport carries its own.
    theme_name : {"light", "dark"}
        Ink and paper of the figure; data colours are the same in both.
    width : float
        Figure width in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Three Axes (``fig.axes[:3]``) with ``gid`` "sparsity", "variance_entropy_norm", "orthogonality";
        threshold lines have ``gid`` "threshold-<verdict>", verdict markers "verdict-<kind>".

    Examples
    --------
    >>> from filterdb import read_model                               # doctest: +SKIP
    >>> from filterdb.check import check_model                        # doctest: +SKIP
    >>> fig = metrics_vs_depth(check_model(read_model("model.onnx")))  # doctest: +SKIP
    >>> fig.savefig("metrics.png")                                     # doctest: +SKIP
    """
    frame, layer_verdicts, t = _judged(report, thresholds)
    th = theme(theme_name)
    is_2d = np.array([len(k) == 2 for k in frame["kernel"]], dtype=bool)
    if not is_2d.any():
        raise UsageError("the model has no layers with 2-D kernels: there are no filter metrics to plot")
    rows = frame[is_2d]
    verdicts = [v for v, keep in zip(layer_verdicts, is_2d) if keep]
    depth = np.array([np.nan if d is None else float(d) for d in rows["conv_depth"]], dtype=float)
    if np.isnan(depth).any():  # no graph depth: fall back to the layer's position
        depth = np.arange(len(rows), dtype=float)
    hollow = np.array([k in ("depthwise", "grouped") for k in rows["kind"]], dtype=bool)
    first_kind = [layer[0].kind if layer else None for layer in verdicts]

    # A fixed layout (margins in inches) instead of the constrained one: a report draws dozens of these.
    missing = [f"{label}: {int((~np.isfinite(np.asarray(rows[c], dtype=float))).sum())}" for c, label, _ in _PANELS
               if not np.isfinite(np.asarray(rows[c], dtype=float)).all()]
    foot = 0.2 * len(missing) * (1 + (width < 6))  # lines of the note under the x label (wrapped when narrow)
    height = 6.0 + foot
    fig = new_figure(width, height, th, layout=None)
    fig.subplots_adjust(left=0.62 / width, right=1 - 0.12 / width, top=1 - 0.78 / height,
                        bottom=(0.55 + foot) / height, hspace=0.42)
    axes = fig.subplots(len(_PANELS), 1, sharex=True)
    missing = []
    for ax, (column, label, (lo, hi)) in zip(axes, _PANELS):
        style_axes(ax, th)
        ax.set_gid(column)
        values = np.asarray(rows[column], dtype=float)
        ok = np.isfinite(values)
        healthy = ok & np.array([k is None for k in first_kind])
        for is_hollow in (False, True):
            sel = healthy & (hollow == is_hollow)
            if sel.any():
                ax.scatter(depth[sel], values[sel], s=22, marker="o", linewidths=1.1, zorder=3,
                           facecolors="none" if is_hollow else HEALTHY, edgecolors=HEALTHY,
                           label="depthwise / grouped" if is_hollow else "no verdict", gid="healthy")
        for kind in VERDICT_KINDS:
            sel = np.array([k == kind for k in first_kind]) & ok
            if sel.any():
                colour = VERDICT_COLOURS[kind]
                ax.scatter(depth[sel], values[sel], s=46, marker=VERDICT_MARKERS[kind], zorder=4,
                           facecolors=[("none" if h else colour) for h in hollow[sel]], edgecolors=colour,
                           linewidths=1.3, label=kind, gid=f"verdict-{kind}")
        title = _TITLES[column]
        if column == "sparsity":
            _threshold(ax, t.sparse, "sparse")
            title += f"; sparse ≥ {t.sparse:g}"
        elif column == "variance_entropy_norm":
            _threshold(ax, t.random, "random")
            _threshold(ax, t.low_diversity, "low-diversity")
            title = f"entropy (norm.); random > {t.random:g}, low div. < {t.low_diversity:g}"
        n_missing = int((~ok).sum())
        if n_missing:
            why = " (1×1 kernels or too few filters)" if column == "variance_entropy_norm" else ""
            missing.append(f"{label}: {n_missing} of {len(values)} layers without a value{why}")
        ax.set_title(title, fontsize=PAGE_FONT, color=th.ink, loc="left", pad=3)
        top = max(hi, float(np.nanmax(values)) * 1.05) if ok.any() else hi
        ax.set_ylim(min(lo, float(np.nanmin(values)) - 0.05) if ok.any() else lo, top)
        ax.yaxis.set_major_locator(_ticks(3))
    axes[-1].set_xlabel("conv depth (0 = first conv level)", fontsize=PAGE_FONT)
    axes[-1].xaxis.set_major_locator(_ticks(6, integer=True))
    if missing:
        chars = int(width * 72 / (PAGE_FONT * 0.55))  # characters of PAGE_FONT text per line
        fig.text(0.01, 0.01, "\n".join(textwrap.fill(m, chars) for m in missing), fontsize=PAGE_FONT, color=th.ink,
                 va="bottom", ha="left", alpha=0.8)
    handles, labels = _legend_entries(axes)
    legend = fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize=PAGE_FONT,
                        frameon=False, labelcolor=th.ink, handletextpad=0.2, columnspacing=0.8, borderaxespad=0.2)
    legend.set_gid("legend")
    return fig


def _ticks(n: int, *, integer: bool = False) -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=n, integer=integer)


def _judged(report: Any, thresholds: Thresholds | None) -> tuple[Any, list[list[Any]], Thresholds]:
    """(layer table with (kh, kw) kernels, verdicts per layer, thresholds) of a report or a layer metrics table."""
    if isinstance(report, ModelReport):
        return report.layers, report.verdicts, report.thresholds
    if not hasattr(report, "columns") or not hasattr(report, "reset_index"):
        raise TypeError(f"report must be a filterdb.check.ModelReport or a layer metrics DataFrame, "
                        f"got {type(report).__name__}")
    t = thresholds or Thresholds()
    frame = report.reset_index(drop=True).copy()
    frame["kernel"] = [parse_kernel_key(k, what="kernel").sizes if isinstance(k, str) else tuple(k)
                       for k in frame["kernel"]]
    import pandas as pd

    frame["conv_depth"] = pd.Series([None if pd.isna(d) else int(d) for d in frame["conv_depth"]], dtype=object)
    return frame, judge_layers(frame, t).verdicts(), t


def _threshold(ax: Any, value: float, kind: str) -> None:
    ax.axhline(value, color=THRESHOLD, linestyle="--", linewidth=1.2, zorder=2, gid=f"threshold-{kind}",
               label=f"threshold: {kind}")


def _legend_entries(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Proxy handles: filled markers for every kind present (a panel's first handle may be hollow)."""
    from matplotlib.lines import Line2D

    present = {label for ax in axes for label in ax.get_legend_handles_labels()[1]}
    handles, labels = [], []

    def add(label: str, **style: Any) -> None:
        handles.append(Line2D([], [], linestyle="none", **style))
        labels.append(label)

    if "no verdict" in present:
        add("no verdict", marker="o", color=HEALTHY, markersize=5)
    if "depthwise / grouped" in present:
        add("depthwise (hollow)", marker="o", markerfacecolor="none", markeredgecolor=HEALTHY, markersize=5)
    for kind in VERDICT_KINDS:
        if kind in present:
            add(kind, marker=VERDICT_MARKERS[kind], color=VERDICT_COLOURS[kind], markersize=6.5)
    handles.append(Line2D([], [], color=THRESHOLD, linestyle="--", linewidth=1.2))
    labels.append("threshold")
    return handles, labels


def _check_2d(layer: ConvLayer, what: str) -> None:
    if not isinstance(layer, ConvLayer):
        raise TypeError(f"layer must be a filterdb.ConvLayer, got {type(layer).__name__}")
    if layer.spatial_ndim != 2:
        raise UsageError(f"layer {layer.name!r} has {layer.spatial_ndim}-D kernels {layer.kernel}: {what} "
                         "needs 2-D filters")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def layer_filters(layer: ConvLayer, *, max_out: int = 32, max_in: int = 16, vmax: float | None = None,
                  theme_name: str = "light", tile_inches: float = 0.3) -> Any:
    """A grid of a layer's 2-D filters, drawn with one diverging colour map centred at 0.

    One tile per (output, input) channel pair of the first ``max_out`` × ``max_in`` channels, with output
    channels along the longer side of the grid (for a transposed convolution the weight's first axis is
    its input channel; the labels say so). A layer with one input channel per filter (depthwise) is laid
    out row-major in a near-square grid instead. All tiles share the colour limits (-v, v),
    v = max |w| of the tiles shown (or ``vmax``), so white is exactly zero in every tile.

    Parameters
    ----------
    layer : ConvLayer
        A layer with 2-D kernels.
    max_out, max_in : int
        How many output and input channels to show: the first ones.
    vmax : float, optional
        Colour limit; default the largest |w| shown.
    theme_name : {"light", "dark"}
    tile_inches : float
        Size of one tile in inches (the figure is clamped to 3 – 11 inches wide).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0].images[-1]`` is the mosaic of the tiles: filter values, NaN in the gaps
        (``gid`` "filters:<rows>x<cols>:<n tiles>"), drawn over the grey gap grid (``gid`` "gaps");
        ``fig.axes[1]`` is the colour bar.

    Examples
    --------
    >>> import numpy as np
    >>> from filterdb.readers._registry import make_layer
    >>> layer = make_layer("conv1", "Conv", np.random.default_rng(0).standard_normal((8, 3, 3, 3)))
    >>> layer_filters(layer).axes[0].images[-1].get_gid()
    'filters:3x8:24'
    """
    _check_2d(layer, "a filter grid")
    max_out, max_in = _positive_int(max_out, "max_out"), _positive_int(max_in, "max_in")
    th = theme(theme_name)
    w = np.asarray(layer.weight, dtype=np.float32)
    n_first, n_second = int(w.shape[0]), int(w.shape[1])
    first, second = ("input", "output") if layer.kind == "transpose" else ("output", "input")
    if n_second == 1 and n_first > 1:  # depthwise: one filter per channel, reflow into a square
        n = min(n_first, max_out * max_in)
        cols = min(n, max(1, math.ceil(math.sqrt(n))))
        rows = math.ceil(n / cols)
        tiles = [(i // cols, i % cols, w[i, 0]) for i in range(n)]
        shown = f"{n} of {n_first} filters (one per channel, row by row)"
        tile_inches *= 1.5  # few, small tiles: draw them larger
        x_label = y_label = ""
    else:
        a, b = min(n_first, max_out), min(n_second, max_in)
        shown = f"{a} of {n_first} {first} × {b} of {n_second} {second} channels"
        if a >= b:  # the longer side runs along x: wide figures suit pages
            rows, cols, x_label, y_label = b, a, f"{first} channel", f"{second} channel"
            tiles = [(j, i, w[i, j]) for i in range(a) for j in range(b)]
        else:
            rows, cols, x_label, y_label = a, b, f"{second} channel", f"{first} channel"
            tiles = [(i, j, w[i, j]) for i in range(a) for j in range(b)]
    limit = symmetric_limit(np.stack([t[2] for t in tiles])) if vmax is None else float(vmax)
    if not math.isfinite(limit) or limit <= 0:
        raise UsageError(f"vmax must be a finite number > 0, got {vmax!r}")
    kh, kw = layer.kernel
    mosaic, occupied, pitch, tile_px = _mosaic(tiles, rows, cols, kh, kw)
    fig_w = min(11.0, max(4.5, cols * tile_inches * max(1.0, kw / kh) + 1.4))
    fig_h = min(11.0, max(2.0, rows * tile_inches * max(1.0, kh / kw) + 1.0))
    fig = new_figure(fig_w, fig_h, th)
    ax = fig.add_subplot()
    style_axes(ax, th, grid=False)
    _gap_layer(ax, mosaic, occupied, th.gap)
    image = ax.imshow(mosaic, cmap=FILTER_CMAP, vmin=-limit, vmax=limit, interpolation="nearest",
                      extent=(0, mosaic.shape[1], mosaic.shape[0], 0), gid=f"filters:{rows}x{cols}:{len(tiles)}")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0, labelsize=7)
    if x_label:
        _channel_ticks(ax.xaxis, cols, pitch[1], tile_px[1])
        _channel_ticks(ax.yaxis, rows, pitch[0], tile_px[0])
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_ylabel(y_label, fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    _title(fig, layer, f"{layer.kind} {kh}×{kw}  ·  {shown}  ·  colour limits ±{limit:.3g}", th)
    bar = fig.colorbar(image, ax=ax, shrink=0.9, aspect=20, pad=0.015, fraction=0.04)
    bar.set_label("weight", color=th.ink, fontsize=8)
    bar.ax.tick_params(colors=th.ink, labelsize=7)
    bar.outline.set_edgecolor(th.ink)
    bar.ax.set_gid("colorbar")
    return fig


def _mosaic(tiles: Sequence[tuple[int, int, np.ndarray]], rows: int, cols: int, kh: int, kw: int,
            ) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
    """Tiles on one canvas, NaN between them; each weight is s×s pixels so that gaps can be thinner.

    Returns the canvas ((H, W) or (H, W, C)), a mask of the occupied cells, the tile pitch and the tile size
    in canvas pixels (y, x).
    """
    s = max(1, 12 // max(kh, kw))
    th_px, tw_px = kh * s, kw * s
    gap = max(1, max(th_px, tw_px) // 6)
    extra = tiles[0][2].shape[2:] if tiles[0][2].ndim == 3 else ()
    canvas = np.full((rows * (th_px + gap) - gap, cols * (tw_px + gap) - gap, *extra), np.nan, dtype=np.float32)
    occupied = np.zeros(canvas.shape[:2], dtype=bool)  # tiles and the gaps left of and above them
    for r, c, tile in tiles:
        y, x = r * (th_px + gap), c * (tw_px + gap)
        canvas[y:y + th_px, x:x + tw_px] = np.repeat(np.repeat(tile, s, axis=0), s, axis=1)
        occupied[max(0, y - gap):y + th_px, max(0, x - gap):x + tw_px] = True
    return canvas, occupied, (th_px + gap, tw_px + gap), (th_px, tw_px)


def _gap_layer(ax: Any, mosaic: np.ndarray, occupied: np.ndarray, colour: str) -> None:
    """The grid lines between tiles, drawn under the tiles: a neutral grey that keeps all-zero (white)
    tiles visible, and nothing where a row of the grid is not full."""
    from matplotlib.colors import to_rgba

    gaps = occupied & np.isnan(mosaic if mosaic.ndim == 2 else mosaic[..., 0])
    layer = np.zeros(gaps.shape + (4,), dtype=np.float32)
    layer[gaps] = to_rgba(colour)
    ax.imshow(layer, interpolation="nearest", extent=(0, gaps.shape[1], gaps.shape[0], 0), zorder=0.5,
              gid="gaps")


def rgb_filters(layer: ConvLayer, *, max_filters: int = 64, scale: str = "layer", theme_name: str = "light",
                tile_inches: float = 0.45) -> Any:
    """The filters of a first layer on 3 input channels, each drawn as one RGB tile.

    Weights map to colours as 0.5 + w / (2 v): zero is mid grey, and channel order is assumed RGB (a
    model trained on BGR input shows red and blue swapped). ``scale="layer"`` uses one v = max |w| for the
    whole layer, so tiles compare with each other; ``scale="filter"`` uses each filter's own max |w|, which
    shows the pattern of weak filters too.

    Parameters
    ----------
    layer : ConvLayer
        A 2-D convolution whose filters have 3 input channels (weight shape (O, 3, kh, kw)).
    max_filters : int
        Show the first this many filters.
    scale : {"layer", "filter"}
    theme_name : {"light", "dark"}
    tile_inches : float

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` holds one RGBA AxesImage, the tiles on a transparent canvas
        (``gid`` "rgb:<rows>x<cols>:<n tiles>").

    Examples
    --------
    >>> import numpy as np
    >>> from filterdb.readers._registry import make_layer
    >>> layer = make_layer("conv1", "Conv", np.random.default_rng(0).standard_normal((8, 3, 3, 3)))
    >>> rgb_filters(layer).axes[0].images[0].get_gid()
    'rgb:1x8:8'
    """
    _check_2d(layer, "RGB tiles")
    if layer.kind == "transpose" or layer.weight.shape[1] != 3:
        raise UsageError(f"layer {layer.name!r} has weight shape {tuple(layer.weight.shape)}: RGB tiles need a "
                         "convolution with 3 input channels per filter, (O, 3, kh, kw)")
    if scale not in ("layer", "filter"):
        raise UsageError(f"scale must be 'layer' or 'filter', got {scale!r}")
    max_filters = _positive_int(max_filters, "max_filters")
    th = theme(theme_name)
    w = np.nan_to_num(np.asarray(layer.weight, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    n = min(int(w.shape[0]), max_filters)
    cols = min(n, 16)
    rows = math.ceil(n / cols)
    layer_limit = symmetric_limit(w[:n])
    tiles = []
    for i in range(n):
        tile = np.transpose(w[i], (1, 2, 0))  # (kh, kw, 3)
        limit = symmetric_limit(tile) if scale == "filter" else layer_limit
        rgba = np.concatenate([np.clip(0.5 + tile / (2 * limit), 0.0, 1.0), np.ones(tile.shape[:2] + (1,))], axis=2)
        tiles.append((i // cols, i % cols, rgba))
    kh, kw = layer.kernel
    mosaic, _, _, _ = _mosaic(tiles, rows, cols, kh, kw)
    mosaic = np.nan_to_num(mosaic, nan=0.0)  # gaps: alpha 0, the paper shows through
    fig = new_figure(min(11.0, max(4.5, cols * tile_inches + 0.2)), rows * tile_inches * kh / kw + 0.6, th)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest", gid=f"rgb:{rows}x{cols}:{n}")
    ax.set_axis_off()
    how = "one scale for the layer" if scale == "layer" else "each filter scaled to its own max |w|"
    _title(fig, layer, f"{n} of {w.shape[0]} filters as RGB  ·  {kh}×{kw}  ·  {how}  ·  grey = 0", th)
    return fig


def _channel_ticks(axis: Any, n: int, pitch: int, size: int) -> None:
    step = 1 if n <= 8 else (4 if n <= 32 else 8)
    ticks = list(range(0, n, step))
    axis.set_ticks([t * pitch + size / 2 for t in ticks], [str(t) for t in ticks])


def _title(fig: Any, layer: ConvLayer, details: str, th: Any) -> None:
    width = max(40, int(fig.get_figwidth() * 13))  # characters of 8.5 pt text that fit the figure
    details = textwrap.fill(details, width=width, break_long_words=False)
    fig.suptitle(f"{_short(layer.name)}\n{details}", x=0.01, ha="left", fontsize=8.5, color=th.ink,
                 linespacing=1.4)


def _short(name: str, limit: int = 60) -> str:
    """Layer names can be long (TFLite joins fused op names with ';'): keep the head and the tail."""
    from .._names import display_name

    name = display_name(name)  # a fused TFLite op lists every op it absorbed: the conv's own op name
    return name if len(name) <= limit else name[: limit // 2 - 1] + "…" + name[-(limit // 2 - 1):]
