"""filterdb similar STORE MODEL: the store's models ranked by their relation to MODEL."""

from __future__ import annotations

from typing import Any, Callable

import click
from rich.table import Table

from ._app import app, console, err_console
from ._table import markup_safe as escape  # stored names: controls shown escaped, never markup


def fingerprint_progress(show: bool) -> tuple[Callable[[int, int, str], None] | None, Callable[[], None]]:
    """A progress callback drawing a bar on stderr (only when fingerprints are being computed), and its closer."""
    if not show:
        return None, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("fingerprints {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err_console, transient=True)
    state: dict[str, Any] = {}

    def on_model(done: int, total: int, name: str) -> None:
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task("", total=total)
        bar.update(state["task"], completed=done, description=name[:40])

    return on_model, bar.stop


@app.command("similar")
@click.argument("store")
@click.argument("model")
@click.option("--top", "top", type=click.IntRange(1, None), default=10, show_default=True,
              help="Show at most this many models.")
@click.option("--all", "show_all", is_flag=True, help="Also list unrelated models (by score).")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object: {"query", "matches": [{"model", "relation", "score", "parent"}, ...]}.')
@click.option("--trust-pickle", is_flag=True, help="Allow formats whose loading runs pickle code (trusted files only).")
@click.option("--exhaustive/--no-exhaustive", default=None,
              help="Compare every model with a layer shape in common, not only the fingerprints' candidates "
                   "[on for stores of at most 200 models].")
@click.option("--progress/--no-progress", default=None, help="Progress bar while fingerprints are computed [on when interactive].")
def similar_command(store: str, model: str, top: int, show_all: bool, as_json: bool, trust_pickle: bool,
                    exhaustive: bool | None, progress: bool | None) -> None:
    """Rank the models of STORE by their relation to MODEL (a file, a pypi:... name, or a model of the store).

    Fingerprints (kept in the store; computed once for a store without them, with a progress bar on a
    terminal) propose candidates; each is decided by the comparison of `filterdb compare`, so the relation,
    score and parent are the ones `compare` gives for the pair. Other names the same file was ingested under
    are listed as identical.
    """
    from ..lineage import similar
    from ..store import open_store

    callback, stop = fingerprint_progress(err_console.is_terminal if progress is None else progress)
    try:
        result = similar(open_store(store), model, top=top, include_unrelated=show_all, trust_pickle=trust_pickle,
                         exhaustive=exhaustive, progress=callback)
    finally:
        stop()
    if as_json:
        click.echo(result.to_json())
        return
    if not result.matches:
        console.print(f"no model of {escape(store)} is related to {escape(result.query)} (--all lists them by score)")
        return
    console.print(f"models related to {escape(result.query)}", soft_wrap=True)
    for m in result.matches:  # one line per model, names whole (no table cell to wrap them at 80 columns)
        parent = (f"parent {escape(m.parent)} ({m.parent_confidence:.2f})" if m.parent else
                  "parent unknown" if m.relation in ("same-weights", "derived") else "")
        console.print(f"  {m.score:.3f}  {m.relation:<12}  {escape(m.model)}  {parent}".rstrip(), soft_wrap=True)
