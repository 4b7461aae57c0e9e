"""Shared look of filterdb figures: colours that survive colour blindness and both page themes.

Data colours come from the Okabe–Ito palette (distinguishable under the common colour-vision deficiencies)
and were picked from its mid-luminance members, so each reads on white and on near-black backgrounds alike.
The ink (text, axes, grid) follows the theme. Filter tiles use one diverging map centred at zero, with
limits shared by every tile of a figure, so that colour means the same weight everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import UsageError, missing_dependency

__all__ = [
    "FILTER_CMAP",
    "PAGE_FONT",
    "PAGE_WIDTH",
    "WIDE_WIDTH",
    "HEALTHY",
    "THEMES",
    "THRESHOLD",
    "VERDICT_COLOURS",
    "VERDICT_MARKERS",
    "Theme",
    "group_colours",
    "new_figure",
    "smallest_text_pt",
    "symmetric_limit",
    "theme",
    "wrap_label",
]

ThemeName = Literal["light", "dark"]

# Okabe–Ito. Yellow (#F0E442) is left out: it vanishes on white.
BLUE = "#0072B2"
SKY = "#56B4E9"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#8C8C8C"

HEALTHY = SKY  # a layer without verdict: light enough for dark pages, dark enough for white ones
VERDICT_COLOURS: dict[str, str] = {
    "sparse": ORANGE,
    "low-diversity": PURPLE,
    "random": VERMILLION,
    "non-finite": GREY,
}
VERDICT_MARKERS: dict[str, str] = {"sparse": "s", "low-diversity": "D", "random": "^", "non-finite": "X"}
THRESHOLD = GREEN  # threshold lines: a hue no data point uses
FILTER_CMAP = "RdBu_r"  # diverging, blue < 0 < red, white at 0; readable with deuteranopia and protanopia

# Report figures are drawn for a phone's width: a page shows them at PAGE_WIDTH x 100 CSS px at most and
# shrinks them to ~360 px on a 400 px screen, where PAGE_FONT points still make 10 px text.
PAGE_WIDTH = 4.8  # inches
PAGE_FONT = 10.0  # points, the smallest text of a report figure
# The desktop version of a report's main figures: shown at 960 px on a page of 1,100 px or wider (text 10 pt =
# 14 px); phones get the PAGE_WIDTH version of the same figure (report/_html.py, a <picture> per figure).
WIDE_WIDTH = 9.6  # inches

# Paul Tol's "muted" qualitative scheme: nine hues told apart under the common colour-vision deficiencies.
_GROUP_COLOURS = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                  "#AA4499")


@dataclass(frozen=True)
class Theme:
    """Ink and paper of a figure."""

    name: str  # "light" or "dark"
    paper: str  # figure and axes background
    ink: str  # text, spines and ticks
    muted: str  # secondary text, grid lines
    gap: str  # background between filter tiles


THEMES: dict[str, Theme] = {
    "light": Theme("light", paper="#FFFFFF", ink="#1F2328", muted="#D0D7DE", gap="#D9DDE1"),
    "dark": Theme("dark", paper="#0D1117", ink="#E6EDF3", muted="#30363D", gap="#3B424B"),
}


def theme(name: str) -> Theme:
    """The :class:`Theme` called ``name``; raises ValueError naming the allowed values."""
    try:
        return THEMES[name]
    except (KeyError, TypeError):
        raise UsageError(f"theme must be one of {', '.join(map(repr, THEMES))}, got {name!r}") from None


def require_matplotlib() -> Any:
    """(matplotlib, Figure), or MissingDependencyError naming the 'plot' extra: call it before long work."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as e:
        raise missing_dependency("matplotlib", "drawing figures", "plot") from e
    return matplotlib, Figure


_matplotlib = require_matplotlib


def new_figure(width: float, height: float, th: Theme, *, layout: str | None = "constrained") -> Any:
    """A matplotlib Figure bound to the Agg canvas: no pyplot, no global state, nothing to close.

    A Figure made this way is freed with its last reference; pyplot never tracks it. ``layout=None`` leaves
    the placement to the caller (much faster to draw than the constrained layout).
    """
    _, Figure = _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width, height), facecolor=th.paper, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def group_colours(n: int) -> list[str]:
    """``n`` distinct colours for the groups of a figure: Tol's nine muted hues, then tab20's for more."""
    if n <= len(_GROUP_COLOURS):
        return list(_GROUP_COLOURS[:n])
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return [to_hex(cmap(i % 20)) for i in range(n)]


def smallest_text_pt(fig: Any) -> float:
    """The size in points of the smallest visible, non-empty text of a drawn figure (ticks, labels, notes)."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())]
    return float(min(sizes)) if sizes else float("nan")


def style_axes(ax: Any, th: Theme, *, grid: bool = True) -> None:
    """Apply the theme's ink to one Axes (spines, ticks, labels, grid)."""
    ax.set_facecolor(th.paper)
    for side, spine in ax.spines.items():
        spine.set_color(th.ink)
        spine.set_visible(side in ("left", "bottom"))
    ax.tick_params(colors=th.ink, labelcolor=th.ink, labelsize=PAGE_FONT)
    ax.xaxis.label.set_color(th.ink)
    ax.yaxis.label.set_color(th.ink)
    ax.title.set_color(th.ink)
    if grid:
        ax.grid(True, color=th.muted, linewidth=0.6, alpha=0.8)
        ax.set_axisbelow(True)


def symmetric_limit(values: np.ndarray) -> float:
    """The shared colour limit v of a diverging map over ``values``: the largest finite |w| (1.0 if none).

    Tiles are then drawn with limits (-v, v), so white is exactly zero.
    """
    finite = np.abs(values[np.isfinite(values)])
    v = float(finite.max()) if finite.size else 0.0
    return v if v > 0 else 1.0


def wrap_label(text: str, width: int = 16, lines: int = 2) -> str:
    """A group name for a tick label: wrapped after spaces, ``_``, ``-`` or ``/`` into at most ``lines`` lines of
    at most ``width`` characters (a longer word is cut), the last line ending in "…" when text is left over, so
    that no label runs into its neighbours or out of the figure."""
    import re

    out: list[str] = []
    line = ""
    for token in re.split(r"(?<=[ _/-])", str(text)):
        while token:
            if len(line) + len(token) <= width:
                line, token = line + token, ""
            elif line:
                out.append(line.rstrip())
                line = ""
            else:  # one word longer than a line
                out.append(token[:width])
                token = token[width:]
    if line.strip():
        out.append(line.rstrip())
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1].rstrip() + "…"
    return "\n".join(out)
