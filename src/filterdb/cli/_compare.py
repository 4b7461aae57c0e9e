"""filterdb compare A B: the relation of two models (identical / same-weights / derived / unrelated)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from ._app import app, console, err_console
from ._table import markup_safe as escape  # stored names: controls shown escaped, never markup

if TYPE_CHECKING:
    from ..lineage import Comparison, ModelWeights

_COLOURS = {"identical": "blue", "same-weights": "yellow", "derived": "red", "unrelated": "green"}


def _weights(spec: str, store: str | None, trust_pickle: bool) -> ModelWeights:
    from ..lineage import weights_from_store, weights_of

    if store is not None:
        from ..store import open_store

        return weights_from_store(open_store(store), spec)
    if not err_console.is_terminal:
        return weights_of(spec, name=spec, trust_pickle=trust_pickle)
    with err_console.status(f"reading {escape(spec)} ...", spinner="dots"):
        return weights_of(spec, name=spec, trust_pickle=trust_pickle)


@app.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--store", "store", default=None, metavar="STORE",
              help="A and B are models of this store (a name, a model id or a sha256 prefix), not files.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object: {"relation", "score", "parent", "parent_confidence", "layers": [...]}.')
@click.option("--trust-pickle", is_flag=True, help="Allow formats whose loading runs pickle code (trusted files only).")
def compare_command(a: str, b: str, store: str | None, as_json: bool, trust_pickle: bool) -> None:
    """Tell whether model B is model A, a copy of its weights, derived from it, or unrelated.

    A and B are anything `filterdb check` takes (files in any format filterdb reads, pypi:... names), or models
    of a store with --store. Relations: identical (the same tensors bit for bit), same-weights (equal up to
    float16/bfloat16/int8 rounding, layout, format, batch-norm folding), derived (fine-tuned, pruned,
    re-headed or sharing a parent), unrelated (independently trained). For related models the likely parent is
    named with a confidence and each piece of direction evidence is listed (pruned zeros, removed channels,
    storage precision, added layers, a truncated backbone; weight norms only as weak evidence); weak or
    conflicting evidence gives "parent: unknown". The method and its measured accuracy: docs/lineage.md.
    """
    from ..lineage import compare_weights

    result = compare_weights(_weights(a, store, trust_pickle), _weights(b, store, trust_pickle))
    if as_json:
        click.echo(result.to_json())
        return
    colour = _COLOURS[result.relation]
    console.print(f"[bold {colour}]{result.relation}[/]  score {result.score:.3f}", soft_wrap=True)
    console.print(f"  A = {escape(result.a)}", soft_wrap=True)
    console.print(f"  B = {escape(result.b)}", soft_wrap=True)
    if result.parent_name is not None:
        console.print(f"parent: {escape(result.parent_name)} → {escape(result.child_name or '')} (confidence "
                      f"{result.parent_confidence:.2f})", soft_wrap=True)
    elif result.relation in ("same-weights", "derived"):
        console.print("parent: unknown (the direction evidence is weak or conflicts)")
    signal_texts = {s.text for s in result.signals}
    for line in result.evidence:
        if line not in signal_texts:
            console.print(f"  · {escape(line)}", soft_wrap=True)
    if result.signals:
        console.print("direction evidence:")
    for signal in result.signals:
        side = {"a": "A is the child", "b": "B is the child", None: "no side"}[signal.child]
        console.print(f"  · {signal.kind} ({side}): {escape(signal.text)}", soft_wrap=True)
    if result.layers:
        _layer_table(result)


def _layer_table(result: Comparison) -> None:
    """Two lines per paired layer, so that layer names stay whole at 80 columns."""
    console.print(f"layer matching: {len(result.layers)} paired; unpaired A {result.unpaired_a}, "
                  f"B {result.unpaired_b}")
    console.print("  [dim]kernel  channels A/B  matched  similarity  chance  same[/]")
    for m in result.layers:
        same = "exact" if m.exact else ("rounded" if m.rounded else "")
        console.print(f"  {escape(m.layer_a)} ↔ {escape(m.layer_b)}", soft_wrap=True)
        console.print(f"    {m.kernel:<6} {f'{m.channels_a}/{m.channels_b}':>11} {m.share:>8.0%} {m.similarity:>11.4f} "
                      f"{m.chance:>7.3f}  {same}")
