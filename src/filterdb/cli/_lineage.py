"""filterdb lineage STORE: the store's model families as parent → child trees."""

from __future__ import annotations

import click

from .._atomic import atomic_write_text
from ._app import app, console, err_console
from ._similar import fingerprint_progress
from ._table import markup_safe as escape  # stored names: controls shown escaped, never markup


@app.command("lineage")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object: {"families": [[model, ...], ...], "edges": [{"parent", "child", '
                   '"relation", "score"}, ...]}.')
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the families as a figure with its edge table to this HTML file.")
@click.option("--exhaustive/--no-exhaustive", default=None,
              help="Compare every pair of models with a layer shape in common, not only the fingerprints' "
                   "candidates [on for stores of at most 200 models].")
@click.option("--progress/--no-progress", default=None, help="Progress bar while fingerprints are computed [on when interactive].")
def lineage_command(store: str, as_json: bool, html_file: str | None, exhaustive: bool | None,
                    progress: bool | None) -> None:
    """Group the models of STORE into families (models that share weights) with parent → child edges.

    Families are the connected groups of related models (identical, same-weights, derived, and other names
    the same file was ingested under); every pair is decided as `filterdb compare` decides it. Inside a
    family, the edges are a spanning tree that prefers pairs with a named parent; "?" marks an edge whose
    direction is unknown, and two models closest to each other with no direction evidence are shown as
    siblings (a shared unknown parent).
    """
    from ..lineage import lineage
    from ..store import open_store

    callback, stop = fingerprint_progress(err_console.is_terminal if progress is None else progress)
    try:
        result = lineage(open_store(store), exhaustive=exhaustive, progress=callback)
    finally:
        stop()
    if html_file:
        from ..report import lineage_html  # the HTML is the report's (docs/architecture.md)

        page = ("<!doctype html><html><head><meta charset='utf-8'><title>filterdb lineage</title></head><body>"
                f"{lineage_html(result)}</body></html>")
        atomic_write_text(html_file, page)
    if as_json:
        click.echo(result.to_json())
        return
    families = [f for f in result.families if len(f) > 1]
    console.print(f"{len(families)} families of related models; {len(result.families) - len(families)} models "
                  "without relatives")
    for k, family in enumerate(families, 1):
        console.print(f"[bold]family {k}[/] ({len(family)} models)")
        for e in result.edges:
            if e.parent in family:
                arrow = "→" if e.directed else ("~" if e.relation == "siblings" else "?")
                how = f"direction {e.confidence:.2f}" if e.directed else (
                    "siblings: a shared unknown parent" if e.relation == "siblings" else "direction unknown")
                console.print(f"  {escape(e.parent)} {arrow} {escape(e.child)}", soft_wrap=True)
                console.print(f"      {e.relation}  score {e.score:.3f}  ({how})")
    if html_file:
        console.print(f"wrote {escape(html_file)}")
