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
@click.option("--progress/--no-progress", default=None, help="Progress bar while fingerprints are computed [on when interactive].")
def similar_command(store: str, model: str, top: int, show_all: bool, as_json: bool, trust_pickle: bool,
                    progress: bool | None) -> None:
    """Rank the models of STORE by their relation to MODEL (a file, a pypi:... name, or a model of the store).

    Runs on per-model fingerprints kept in STORE/lineage/; a store without them gets them computed once (a
    progress bar on a terminal). Relations as in `filterdb compare`; fingerprints see a sample of each model's
    channels, so `filterdb compare` gives the full evidence for a pair.
    """
    from ..lineage import similar
    from ..store import open_store

    callback, stop = fingerprint_progress(err_console.is_terminal if progress is None else progress)
    try:
        result = similar(open_store(store), model, top=top, include_unrelated=show_all, trust_pickle=trust_pickle,
                         progress=callback)
    finally:
        stop()
    if as_json:
        click.echo(result.to_json())
        return
    if not result.matches:
        console.print(f"no model of {escape(store)} is related to {escape(result.query)} (--all lists them by score)")
        return
    table = Table(title=f"models related to {escape(result.query)}", title_justify="left")
    for column in ("model", "relation", "score", "parent", "confidence"):
        table.add_column(column, justify="right" if column in ("score", "confidence") else "left")
    for m in result.matches:
        table.add_row(escape(m.model), m.relation, f"{m.score:.3f}", escape(m.parent or "–"),
                      f"{m.parent_confidence:.2f}" if m.parent else "–")
    console.print(table)
