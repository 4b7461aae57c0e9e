"""Figures of filterdb results: each function takes a result object and returns a matplotlib Figure.

Needs the 'plot' extra (matplotlib): ``pip install 'filterdb[plot]'``. Figures are bound to the Agg
canvas, never to pyplot, so they work headless and leave no global state behind.

Examples
--------
>>> from filterdb import read_model                                  # doctest: +SKIP
>>> from filterdb.check import check_model                           # doctest: +SKIP
>>> from filterdb.plotting import metrics_vs_depth, layer_filters    # doctest: +SKIP
>>> record = read_model("model.onnx")                                # doctest: +SKIP
>>> metrics_vs_depth(check_model(record)).savefig("depth.png")       # doctest: +SKIP
>>> layer_filters(record.layers_2d[0]).savefig("conv1.png")          # doctest: +SKIP
"""

from ._lineage import lineage_figure
from ._model import layer_filters, metrics_vs_depth, rgb_filters
# the house style, for figures drawn by other packages (lineage, monitor)
from ._style import (
    BLUE,
    FILTER_CMAP,
    GREY,
    ORANGE,
    PAGE_WIDTH,
    THEMES,
    THRESHOLD,
    VERDICT_COLOURS,
    VERDICT_MARKERS,
    VERMILLION,
    WIDE_WIDTH,
    Theme,
    new_figure,
    require_matplotlib,
    smallest_text_pt,
    style_axes,
    theme,
)
from ._zoo import (
    coefficient_density_map,
    degeneration_shares,
    drift_boxplots,
    drift_heatmap,
    eigen_images,
    ridge_plot,
)

__all__ = ["BLUE", "FILTER_CMAP", "GREY", "ORANGE", "PAGE_WIDTH", "THEMES", "THRESHOLD", "VERDICT_COLOURS", "VERDICT_MARKERS",
           "VERMILLION", "WIDE_WIDTH", "Theme", "coefficient_density_map", "degeneration_shares", "drift_boxplots", "drift_heatmap",
           "eigen_images", "layer_filters", "lineage_figure", "metrics_vs_depth", "new_figure", "require_matplotlib", "rgb_filters",
           "ridge_plot", "smallest_text_pt", "style_axes", "theme"]
