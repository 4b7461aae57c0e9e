"""The lineage figure: a store's model families drawn as trees (takes a :class:`filterdb.lineage.Lineage`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._style import BLUE, GREY, ORANGE, VERMILLION, new_figure, theme as get_theme

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["lineage_figure"]

_COLOURS = {"identical": BLUE, "same-weights": ORANGE, "derived": VERMILLION, "siblings": GREY}


def _layout(family: tuple[str, ...], edges: list[Any]) -> dict[str, tuple[float, float]]:
    """Depth from the roots (models with no parent) down; siblings spread evenly."""
    children: dict[str, list[str]] = {m: [] for m in family}
    has_parent = set()
    for e in edges:
        children[e.parent].append(e.child)
        has_parent.add(e.child)
    roots = [m for m in family if m not in has_parent] or [family[0]]
    depth: dict[str, int] = {}
    queue = [(r, 0) for r in roots]
    while queue:  # breadth first: each model visited once, so linear in the family
        model, d = queue.pop(0)
        if model in depth:
            continue
        depth[model] = d
        queue.extend((c, d + 1) for c in children[model])
    for m in family:
        depth.setdefault(m, 0)
    rows: dict[int, list[str]] = {}
    for m in family:
        rows.setdefault(depth[m], []).append(m)
    return {m: (i - (len(ms) - 1) / 2, -d) for d, ms in rows.items() for i, m in enumerate(ms)}


def lineage_figure(result: Any, *, theme: str = "light", max_families: int = 12) -> Figure:
    """A matplotlib Figure of the first ``max_families`` families with more than one model.

    ``result`` is a :class:`filterdb.lineage.Lineage` (or any object with ``families`` and ``edges``). One row
    per family, parents above children, 4.8 in wide with 10 pt text (the report's rule: readable on a phone);
    arrows are coloured by relation (blue identical, orange same weights, vermillion derived); an edge whose
    direction is unknown is a line without a head, siblings (a shared unknown parent) a dashed grey one.
    """
    th = get_theme(theme)
    families = [f for f in result.families if len(f) > 1][:max_families]
    rows = []
    for family in families:
        edges = [e for e in result.edges if e.parent in family]
        pos = _layout(family, edges)
        rows.append((family, edges, pos, 1 + max(-y for _, y in pos.values())))
    heights = [0.9 + 0.75 * levels for *_, levels in rows] or [1.2]
    fig = new_figure(4.8, min(sum(heights), 40.0), th)
    axes = fig.subplots(max(1, len(rows)), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    if not rows:
        axes[0].text(0.5, 0.5, "no two models of the store share weights", ha="center", va="center",
                     fontsize=10, color=th.ink)
        axes[0].set_axis_off()
        return fig
    for ax, (family, edges, pos, _) in zip(axes, rows):
        for e in edges:
            (x0, y0), (x1, y1) = pos[e.parent], pos[e.child]
            directed = getattr(e, "directed", True)
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="-|>" if directed else "-", color=_COLOURS.get(e.relation, GREY),
                                        lw=1.4, shrinkA=7, shrinkB=7,
                                        linestyle="--" if e.relation == "siblings" else "-"))
            if e.relation in ("derived", "siblings"):  # copies score 1: their colour says it
                ax.text((x0 + x1) / 2 + 0.06, (y0 + y1) / 2, f"{e.score:.2f}", fontsize=10, color=th.ink,
                        ha="left", va="center")
        for model, (x, y) in pos.items():
            ax.plot([x], [y], "o", color=th.ink, markersize=5)
            ax.text(x, y + 0.18, model, fontsize=10, color=th.ink, ha="center", va="bottom")
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
        ax.set_ylim(min(ys) - 0.3, max(ys) + 0.6)
        ax.set_axis_off()
        ax.set_facecolor(th.paper)
    return fig
