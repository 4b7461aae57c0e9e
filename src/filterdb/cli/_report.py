"""filterdb report STORE -o report.html: the study of a whole store as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from .._format import count
from ._app import abort, app, console, err_console
from ._options import selection_options

if TYPE_CHECKING:
    from ..analysis import Selection


def progress_display(show: bool | None) -> tuple[Callable[[str], None], Callable[[], None]]:
    """Progress on stderr: a rich status line on a terminal, one plain line per phase otherwise (a log, CI);
    ``show`` None: on; False: nothing. Returns (callback, stop)."""
    if show is False:
        return (lambda text: None), (lambda: None)
    if not err_console.is_terminal:
        import sys
        import time

        started = time.perf_counter()

        def line(text: str) -> None:
            print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

        return line, (lambda: None)
    status = err_console.status("", spinner="dots")
    status.start()

    def update(text: str) -> None:
        from rich.markup import escape

        status.update(escape(text))

    return update, status.stop


@app.command("report")
@click.argument("store", type=click.Path(path_type=Path))  # open_store says "no such store" (exit 1), as elsewhere
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("report.html"),
              show_default=True, help="The HTML file to write (one self-contained page).")
@click.option("--by", "by", multiple=True,
              help="A drift axis: a layers column, 'depth' or an SQL expression (repeat). Default: the taxonomy "
                   "columns with at least two groups (task, visual_category, ...) and depth.")
@selection_options(shape="3x3", shape_help="Kernel shape of the filters analysed.")
@click.option("--no-models", is_flag=True, help="Leave out the per-model sections (for very large zoos).")
@click.option("--figures", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also save the main figures as small PNGs in this folder.")
@click.option("--per-model", is_flag=True,
              help="Drift and ridge plots weigh each model of a group equally (the mean of its models' "
                   "distributions) instead of each filter, so that one large model cannot stand for its group.")
@click.option("--figure-cache/--no-figure-cache", default=True, show_default=True,
              help="Reuse the figures of earlier reports whose numbers did not change (kept in filterdb's cache "
                   "folder, report-figures/, named by a digest of each figure's data and of the drawing code).")
@click.option("--title", default=None, help="Page heading (default: the store's folder name).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the study as one JSON object on stdout instead of writing the page (docs/report.md: its "
                   "fields and every findings rule). A section that failed is in its \"errors\" and the exit "
                   "code is 1.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr: a status line on a terminal, one line per phase otherwise [on].")
def report_cmd(store: Path, out: Path, by: tuple[str, ...], selection: Selection, no_models: bool,
               figures: Path | None, per_model: bool, figure_cache: bool, title: str | None, as_json: bool,
               progress: bool | None) -> None:
    """Write the zoo report of STORE: findings, PCA, drift per axis, degeneration, families, models."""
    from ..analysis import StudySettings, study
    from ..report import write_zoo_report
    from ..store import open_store
    from ..plotting import require_matplotlib

    if as_json:
        _print_study(store, by, selection, per_model, progress)
        return
    require_matplotlib()  # the report needs matplotlib: say so before any work (MissingDependencyError, one line)
    handle = open_store(store)  # a missing or damaged store: the store's own one-line error, before any work
    if out.parent and not out.parent.exists():
        abort(f"{out}: the folder {out.parent} does not exist; cannot write the report there")
    update, stop = progress_display(progress)
    try:
        opened = open_store(store)
        result = study(opened, selection, by=list(by) or None, settings=StudySettings(per_model=per_model),
                       progress=update)
        report = write_zoo_report(out, result, opened, model_sections=not no_models, title=title,
                                  progress=update, figures_dir=figures,
                                  figure_cache="auto" if figure_cache else None)
    finally:
        stop()
    s = report.summary
    console.print(f"{s['n_models']} models, {count(s['n_filters_shape'])} {selection.shape_key} filters, "
                  f"{len(s['degenerated_layers'])} degenerated layers ({s['seconds']:.1f} s)")
    console.print(f"report written to {report.path}", soft_wrap=True, markup=False)
    if not report.ok:  # the page is written, with a note in place of each part that failed: say so, exit 1
        for part, message in report.errors.items():
            err_console.print(f"error: {part}: {message}", soft_wrap=True, markup=False)
        raise SystemExit(1)


def _print_study(store: Path, by: tuple[str, ...], selection: Selection, per_model: bool,
                 progress: bool | None) -> None:
    """``report --json``: the Study on stdout; a failed section is named on stderr and exits 1 (the JSON is
    printed all the same)."""
    from ..analysis import StudySettings, study
    from ..store import open_store

    update, stop = progress_display(progress)
    try:
        result = study(open_store(store), selection, list(by) or None, StudySettings(per_model=per_model),
                       progress=update)
    finally:
        stop()
    click.echo(result.to_json(indent=None))
    if result.errors:
        for section, message in result.errors.items():
            err_console.print(f"[bold red]error:[/] {section}: {message}", soft_wrap=True, highlight=False,
                              markup=True)
        raise SystemExit(1)
