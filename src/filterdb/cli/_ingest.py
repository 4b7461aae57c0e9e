"""filterdb ingest: model files + manifest -> store, with a progress bar on a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ._app import abort, app, console, err_console
from ._common import max_memory_option


@app.command("ingest")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("sources", nargs=-1)
@click.option("-m", "--manifest", type=click.Path(path_type=Path), default=None,
              help="Metadata per model: a .csv, .yaml or .json manifest with a 'file' column.")
@click.option("--require", default=None,
              help="Comma-separated fields every manifest row must fill "
                   "[default: name,task,visual_category,training_dataset]; '' for none.")
@click.option("--lenient", is_flag=True, help="Ingest what matches the manifest and report the rest.")
@click.option("--keep-going", is_flag=True, help="Skip models that cannot be read instead of stopping.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Processes reading files [cores].")
@click.option("--trust-pickle", is_flag=True, help="Allow formats that run pickle code (only for trusted files).")
@max_memory_option
@click.option("--init", "create", is_flag=True, help="Create STORE if it does not exist.")
@click.option("--wait", type=float, default=600.0, show_default=True,
              help="Seconds to wait for another writer of STORE.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [on when interactive].")
def ingest_cmd(store: Path, sources: tuple[str, ...], manifest: Path | None, require: str | None, lenient: bool,
               keep_going: bool, jobs: int | None, trust_pickle: bool, create: bool, wait: float, progress: bool | None) -> None:
    """Ingest every conv layer of the models in SOURCES (files, directories, pypi:...) into STORE.

    Files whose bytes STORE already holds are skipped; a new name for them is kept as an alias (`filterdb models`
    shows aliases)."""
    from ..ingest import IngestEvent, ingest

    if not sources and manifest is None:
        abort("give model files, directories or source names, or a --manifest that names them")
    required = None if require is None else [f.strip() for f in require.split(",") if f.strip()]
    show = console.is_terminal if progress is None else progress
    bar: Any = None
    tasks: dict[str, Any] = {}

    def on_event(event: IngestEvent) -> None:
        if bar is None:
            return
        if event.kind == "start":
            tasks["models"] = bar.add_task("models", total=event.total, filters="")
            return
        filters = tasks.setdefault("n", 0) + (event.result.n_filters if event.result and event.kind == "done" else 0)
        tasks["n"] = filters
        bar.update(tasks["models"], advance=1, filters=f"{filters:,} filters", description=Path(event.spec).name[:40])

    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[filters]}"), TimeElapsedColumn(), console=err_console,
                       transient=True)
        bar.start()
    try:
        report = ingest(store, list(sources), manifest=manifest, required=required, strict=not lenient,
                        keep_going=keep_going, jobs=jobs, trust_pickle=trust_pickle, create=create,
                        lock_timeout=wait, progress=on_event)
    finally:
        if bar is not None:
            bar.stop()
    if report.match is not None:
        for line in report.match.problems():
            err_console.print(f"[yellow]warning:[/] {line}", soft_wrap=True)
    for spec, error in report.failed:
        # reader errors already name their file: print the source only when the message does not
        text = error if spec in error else f"{spec}: {error}"
        err_console.print(f"[yellow]failed:[/] {escape(text)}", soft_wrap=True, markup=True, highlight=False)
    for result in report.skipped:
        if result.alias is not None:  # the same bytes under another name: recorded as an alias
            console.print(f"{escape(result.alias)}: already in the store as {escape(result.model)} (kept as an alias)",
                          soft_wrap=True, markup=True, highlight=False)
    mb = report.bytes_read / 1e6
    console.print(
        f"ingested {len(report.ingested)} model(s), {report.n_filters:,} filters; "
        f"{len(report.skipped)} already in the store; {len(report.failed)} failed "
        f"({report.seconds:.1f} s, {mb / report.seconds if report.seconds else 0:.1f} MB/s)"
    )
    if report.headroom_filled:  # models stored before ingest kept the headroom: read again once, the report has it
        console.print(f"pruning headroom added to {report.headroom_filled} model(s) already in the store")
    if report.failed:
        raise SystemExit(1)
