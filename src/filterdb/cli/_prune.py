"""filterdb prune MODEL: a data-free prune plan — which conv layers to prune, by how much, and why."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from ._app import app, console
from ._common import max_memory_option, print_layers, read_with_progress
from ._table import markup_safe as escape
from ._table import safe_text, text_cell


def _shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise UsageError(f"--input-shape must be C,H,W (three positive integers), got {value!r}")
    return shape


@app.command("prune")
@click.argument("model")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="Share of the conv parameters (or FLOPs with --by flops) to remove.")
@click.option("--by", type=click.Choice(["params", "flops"]), default="params", show_default=True,
              help="What --target counts; flops needs --input-shape.")
@click.option("--input-shape", metavar="C,H,W", default=None,
              help="One input's channels, height and width, for FLOP counts (e.g. 3,224,224).")
@click.option("--free-only", is_flag=True,
              help="Remove only near-zero channels (--target is ignored): the plan that changes no output where "
                   "their bias is zero too.")
@click.option("--strategy", type=click.Choice(["novelty", "energy", "compensated"]), default=None,
              help="How channels are ranked (docs/prune.md); the default is the one the bench measured best.")
@click.option("--allocation", type=click.Choice(["share", "uniform", "global"]), default="uniform", show_default=True,
              help="How per-layer ratios are spread (docs/prune.md, \"Strategies\").")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object (PrunePlan.to_json).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the plan as JSON to this file (read it back with PrunePlan.from_json).")
@click.option("--trust-pickle", is_flag=True, help="Allow formats whose loading runs pickle code (trusted files only).")
@max_memory_option
def prune_command(model: str, target: float, by: str, input_shape: str | None, free_only: bool,
                  strategy: str | None, allocation: str, as_json: bool, output: str | None,
                  trust_pickle: bool) -> None:
    """Plan how to prune MODEL from its weights alone: per conv layer, the share of output channels to remove,
    the reason, and a data-free importance score for every channel.

    MODEL is anything `filterdb check` reads. Channels that are all near zero go first (removable with no
    change to the outputs where their bias is zero), then channels that nearly repeat a kept one, then the
    weakest by --strategy (default compensated: filter energy, near-duplicates first), with one ratio for every
    prunable layer (--allocation uniform, the default) or per-layer ratios (share, global) that meet --target. Apply a plan to a PyTorch module with filterdb.integrations.torch_pruning
    (a compensated plan's step merges duplicates and folds removed means into the next layer). The rules and
    the measured accuracy against uniform and global magnitude pruning: docs/prune.md.
    """
    from ..prune import PlanSettings, prune_plan

    record = read_with_progress(model, trust_pickle=trust_pickle, format=None)
    settings = PlanSettings(allocation=allocation) if strategy is None else PlanSettings(strategy=strategy,
                                                                                         allocation=allocation)
    plan = prune_plan(record, target=target, by=by, input_shape=_shape(input_shape),  # type: ignore[arg-type]
                      free_only=free_only, settings=settings)
    if output is not None:
        plan.to_json(output)
    if as_json:
        click.echo(plan.to_json(indent=None))
        return
    console.print(f"[bold]{escape(plan.model)}[/]", soft_wrap=True)
    console.print(escape(plan.headline()), soft_wrap=True)
    if plan.flops_total:
        console.print(f"FLOPs: {100 * (plan.flops_removed or 0) / plan.flops_total:.1f} % removed "
                      f"(input {'x'.join(map(str, plan.input_shape or ()))})")
    else:
        console.print("FLOPs: unknown (give --input-shape C,H,W)")
    table = Table(title="per layer", title_justify="left")
    for column, justify in (("layer", "left"), ("kind", "left"), ("out", "right"), ("remove", "right"),
                            ("ratio", "right"), ("reason", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "layer", min_width=12 if column == "layer" else None)  # type: ignore[arg-type]
    blocks = []
    for lp in plan.layers:
        cells = [lp.kind, str(lp.out_channels), str(lp.n_remove), f"{lp.ratio:.0%}", lp.reason]
        table.add_row(text_cell(lp.name), *(text_cell(c) for c in cells))
        blocks.append((safe_text(lp.name), [Text(f"{lp.kind}, {lp.out_channels} channels: remove {lp.n_remove} "
                                                 f"({lp.ratio:.0%}) — {lp.reason}")]))
    print_layers(console, table, blocks)
    for line in plan.notes:
        console.print(f"note: {escape(line)}", soft_wrap=True)
    if output is not None:
        console.print(f"plan written to {escape(output)}")
