"""filterdb analyze STORE pca | drift | degeneration: the paper's analyses over a filter store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from .._format import count
from ._app import app, console, err_console
from ._options import execution_options, selection_options

if TYPE_CHECKING:
    from ..analysis import Execution, Selection
    from ..store import Store

_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")


def _store(ctx: click.Context) -> Store:
    from ..store import open_store

    return open_store(ctx.obj["store"])


def _print_json(data: Any) -> None:
    from ._common import json_safe

    click.echo(json.dumps(json_safe(data), indent=1))


@app.group("analyze")
@click.argument("store", type=click.Path(path_type=Path))
@click.pass_context
def analyze(ctx: click.Context, store: Path) -> None:
    """Analyse the filter distributions of STORE: PCA basis, drift matrices, degeneration."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


# what each sign rule means, in one line (a component's sign is arbitrary; the rule makes it reproducible)
SIGN_RULES_TEXT = {
    "loadings": "each component's largest |loading| is positive (scikit-learn >= 1.5); --sign-rule u-based "
                "gives the published eigen-images' signs",
    "u-based": "each component's largest |coefficient| over the filters is positive (scikit-learn 0.24.1, the "
               "published eigen-images)",
}
_PRESET = click.option(
    "--preset", type=click.Choice(["paper", "medical"]), default=None,
    help="The authors' settings. paper (CNN Filter DB notebook): 70 bins, range minmax, weights explained, "
         "pooled groups, basis and range fitted on every selected filter (unlabelled layers and small groups "
         "included; no group left out), sign rule u-based. medical (follow-up): range -3,3, weights uniform, "
         "pass its basis with --basis. Options given explicitly override the preset.")
_SIGN_RULE = click.option(
    "--sign-rule", type=click.Choice(["loadings", "u-based"]), default=None,
    help="Component signs: loadings (largest |loading| positive, scikit-learn >= 1.5; default) or u-based "
         "(largest |coefficient| over the filters positive, scikit-learn 0.24.1: the published eigen-images; "
         "one more pass).")


@analyze.command("pca")
@selection_options(shape_help="Kernel shape, e.g. 3x3, 5x5, 1x7.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Save the basis: .npz (reusable with drift --basis) or .json.")
@_PRESET
@_SIGN_RULE
@execution_options
@_JSON
@click.pass_context
def pca_cmd(ctx: click.Context, selection: Selection, out: Path | None, preset: str | None, sign_rule: str | None,
            execution: Execution, as_json: bool) -> None:
    """The PCA basis of the selected filters (each scaled by its max |w|); docs/reference.md §4.

    Components are numbered 1-9 (as in the report), by decreasing explained variance. A component's sign is
    arbitrary; the sign rule fixes it (printed under the table; see --sign-rule).
    """
    import time

    from ..analysis import fit_pca

    t0 = time.perf_counter()
    result = fit_pca(_store(ctx), selection=selection, execution=execution, sign_rule=sign_rule, preset=preset)
    seconds = time.perf_counter() - t0
    if out is not None:
        result.to_json(out) if out.suffix == ".json" else result.save(out)
    if as_json:
        _print_json(result.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"PCA of {count(result.n_filters)} {selection.shape} filters ({result.n_layers} layers, "
                        f"{result.n_models} models) in {seconds:.1f} s")
    table.add_column("component", justify="right")
    table.add_column("explained", justify="right")
    table.add_column("cumulative", justify="right")
    table.add_column("loadings")
    for i, (r, c, v) in enumerate(zip(result.explained_variance_ratio, result.cumulative, result.components)):
        table.add_row(str(i + 1), f"{r:.4f}", f"{c:.4f}", " ".join(f"{x:+.2f}" for x in v))  # 1-9, as the report
    console.print(table)
    console.print("mean: " + " ".join(f"{x:+.3f}" for x in result.mean))
    console.print(f"signs: {result.sign_rule}: {SIGN_RULES_TEXT[result.sign_rule]}", soft_wrap=True, markup=False)
    for note in result.selection.get("notes", []):
        err_console.print(f"note: {note}", markup=False)
    if out is not None:
        console.print(f"basis saved to {out}")


@analyze.command("drift")
@selection_options(by="required", shape_help="Kernel shape of the filters analysed, e.g. 5x5.")
@_PRESET
@click.option("--bins", type=int, default=None, metavar="N",
              help="Histogram bins per PCA coefficient, 1 to 10,000 [70].")
@click.option("--range", "range_", default=None, metavar="bound|minmax|LO,HI",
              help="Shared histogram range: bound (±(√d+‖μ‖), no extra pass; default), minmax (global min/max "
                   "of all coefficients, the paper; one more pass) or LO,HI with LO < HI, both finite (e.g. -3,3).")
@click.option("--weights", type=click.Choice(["explained", "uniform"]), default=None,
              help="Component weights: explained (η, the paper; default) or uniform (1/d, medical follow-up).")
@click.option("--basis", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="A basis saved by `analyze pca --out` (default: fit one on the selection).")
@click.option("--per-model", is_flag=True,
              help="Each model of a group weighs the same (mean of its models' distributions), against imbalance.")
@click.option("--min-filters", type=click.IntRange(0), default=None, metavar="N",
              help="Leave out (and name) groups with fewer filters [100; paper/medical: 0].")
@click.option("--min-models", type=click.IntRange(0), default=None, metavar="N",
              help="Leave out (and name) groups with fewer models [1; paper/medical: 0].")
@click.option("--fit-on", type=click.Choice(["groups", "selection"]), default=None,
              help="Fit the basis and a minmax range on the filters of the groups kept (default) or on every "
                   "selected filter, unlabelled layers included (the paper).")
@_SIGN_RULE
@click.option("--order", type=click.Choice(["mean", "name", "size", "none"]), default="mean", show_default=True,
              help="Row order: mean (ascending mean drift, outliers last; depth keeps decile order), name, size "
                   "(most filters first) or none (first seen).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the result as JSON.")
@execution_options
@_JSON
@click.pass_context
def drift_cmd(ctx: click.Context, selection: Selection, preset: str | None, bins: int | None, range_: str | None,
              weights: str | None, basis: Path | None, per_model: bool, min_filters: int | None,
              min_models: int | None, fit_on: str | None, sign_rule: str | None, order: str, out: Path | None,
              execution: Execution, as_json: bool) -> None:
    """The drift matrix between all groups of --by (docs/reference.md §5)."""
    import time

    from ..analysis import DriftSettings, run_drift
    from ..errors import UsageError

    rng: Any = range_
    if range_ is not None and range_ not in ("bound", "minmax"):
        try:
            rng = tuple(float(v) for v in range_.split(","))
        except ValueError:
            raise UsageError(f"--range must be 'bound', 'minmax' or LO,HI (e.g. -3,3), got {range_!r}") from None
        if len(rng) != 2:
            raise UsageError(f"--range LO,HI needs exactly two numbers (e.g. -3,3), got {range_!r}")
    t0 = time.perf_counter()
    settings = DriftSettings(preset=preset, bins=bins, range=rng, weights=weights, basis=basis,
                             model_weighting=per_model or None, min_filters=min_filters, min_models=min_models,
                             fit_on=fit_on, sign_rule=sign_rule, order=order, floors=True)
    result = run_drift(_store(ctx), selection, settings, execution)
    by = selection.by
    seconds = time.perf_counter() - t0
    if out is not None:
        result.to_json(out)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_drift(result, seconds)


def _print_drift(result: Any, seconds: float) -> None:
    """The matrix with each group's noise floor on the diagonal and cells not above it marked; a ranked list
    when the matrix is wider than the terminal (no value is ever split or cut)."""
    from rich.table import Table

    by, groups, m = result.by, result.groups, result.matrix
    g = len(groups)
    floors = result.floors
    n = sum(result.sizes["n_filters"])
    means = m.sum(axis=1) / max(g - 1, 1)

    def floor_text(grp: str) -> str:
        f = floors.get(grp)
        return f"{f:.3f}" if f is not None else "none"

    def cell(a: int, b: int) -> str:
        if a == b:
            return "-"
        above = result.above_floor(a, b)
        return f"{m[a, b]:.3f}" + ("" if above else "~" if above is False else "?")

    labels = [f"{i + 1} {grp}" for i, grp in enumerate(groups)]
    title = f"drift by {by} ({count(n)} filters, {g} groups, {seconds:.1f} s)"
    from rich import box

    table = Table(title=title, box=box.SIMPLE, pad_edge=False)
    for name, justify in ((str(by), "left"), ("filters", "right"), ("models", "right"), ("floor", "right"),
                          ("mean", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for i in range(g):
        table.add_column(str(i + 1), justify="right", no_wrap=True)
    for i, grp in enumerate(groups):
        table.add_row(labels[i], count(result.sizes["n_filters"][i]), str(result.sizes["n_models"][i]),
                      floor_text(grp), f"{means[i]:.3f}", *(cell(i, j) for j in range(g)))
    wide = console.options.update_width(1 << 16)  # measure unconstrained: rich clamps to the given width
    if console.measure(table, options=wide).maximum <= console.width:  # it fits: no value is wrapped or cut
        console.print(table)
    else:  # too wide for the terminal: the groups by mean drift, then the pairs, largest first
        console.print(title, markup=False)
        console.print("groups by mean drift to the others (floor: the drift between two halves of the group):",
                      markup=False)
        for i in np.argsort(-means, kind="stable"):
            f = floors.get(groups[i])
            verdict = ("no floor: " + result.floor_notes.get(groups[i], "unknown") if f is None else
                       "above its floor" if means[i] > f else "within its floor")
            console.print(f"  {means[i]:.3f}  {groups[i]}  (floor {floor_text(groups[i])}, {verdict}; "
                          f"{count(result.sizes['n_filters'][i])} filters, {result.sizes['n_models'][i]} models)",
                          markup=False, soft_wrap=False)
        pairs = sorted(((m[a, b], a, b) for a in range(g) for b in range(a + 1, g)), reverse=True)
        shown = pairs[:20]
        console.print(f"pairs, largest drift first ({len(shown)} of {len(pairs)}):", markup=False)
        for v, a, b in shown:
            console.print(f"  {cell(a, b):<7} {groups[a]} / {groups[b]}", markup=False)
    s = result.summary()
    console.print("~: not above the larger noise floor of the two groups; ?: a group without a floor (one model or "
                  "too few layers)", markup=False)
    console.print(f"upper triangle: mean {s['mean']:.3f}, median {s['median']:.3f}, min {s['min']:.3f}, "
                  f"max {s['max']:.3f} ({s['max_pair'][0]} / {s['max_pair'][1]}); range {result.range_mode} "
                  f"[{result.range[0]:.3f}, {result.range[1]:.3f}], {result.bins} bins, weights {result.weights}"
                  + (", per-model" if result.model_weighting else "") + f", signs {result.basis.sign_rule}"
                  + (f", preset {result.preset}" if result.preset else ""), markup=False)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)


@analyze.command("degeneration")
@selection_options(shape=None, by="optional", shape_help="Only layers of this kernel shape (default: all 2-D).",
                   by_help="Group by a layers column, 'depth' or an SQL expression.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the result as JSON.")
@_JSON
@click.pass_context
def degeneration_cmd(ctx: click.Context, selection: Selection, out: Path | None, as_json: bool) -> None:
    """Share of sparse / low-diversity / random layers and of the filters in them."""
    from ..analysis import degeneration

    by = selection.by
    result = degeneration(_store(ctx), selection=selection)
    if out is not None:
        result.to_json(out)
    if as_json:
        _print_json(result.to_dict())
        return
    from ._table import print_frame

    cols = ["n_models", "n_layers", "n_filters", "sparse_layers", "low-diversity_layers", "random_layers",
            "any_layers", "any_filters"]
    if result.per_group is not None:
        print_frame(result.per_group[[by, *cols]].round(3), "table", title=f"degeneration by {by}")
    print_frame(result.per_depth[["depth_decile", *cols]].round(3), "table", title="degeneration by depth decile")
    print_frame(result.per_model[["model", *cols]].round(3), "table", title="degeneration per model")
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
