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
@click.option("--progress/--no-progress", default=None, help="Progress bar while fingerprints are computed [on when interactive].")
def lineage_command(store: str, as_json: bool, html_file: str | None, progress: bool | None) -> None:
    """Group the models of STORE into families (models that share weights) with parent → child edges.

    Families are the connected groups of related models (identical, same-weights, derived); inside one, the
    edges are a maximum spanning tree of the pairwise fingerprint scores, each pointing from the likely parent
    (fewer pruned channels, higher precision, smaller weight norms: less trained). Runs on the fingerprints
    of `filterdb similar`.
    """
    from ..lineage import lineage, lineage_html
    from ..store import open_store

    callback, stop = fingerprint_progress(err_console.is_terminal if progress is None else progress)
    try:
        result = lineage(open_store(store), progress=callback)
    finally:
        stop()
    if html_file:
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
                console.print(f"  {escape(e.parent)} → {escape(e.child)}  {e.relation}  score {e.score:.3f}  "
                              f"(direction {e.confidence:.2f})", soft_wrap=True)
    if html_file:
        console.print(f"wrote {escape(html_file)}")
