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


def progress_display(show: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A rich status line on stderr (or nothing): returns (callback, stop)."""
    if not show:
        return (lambda text: None), (lambda: None)
    status = err_console.status("", spinner="dots")
    status.start()

    def update(text: str) -> None:
        from rich.markup import escape

        status.update(escape(text))

    return update, status.stop


@app.command("report")
@click.argument("store", type=click.Path(path_type=Path, exists=True, file_okay=False))
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
@click.option("--progress/--no-progress", default=None, help="Progress display [on when interactive].")
def report_cmd(store: Path, out: Path, by: tuple[str, ...], selection: Selection, no_models: bool,
               figures: Path | None, per_model: bool, figure_cache: bool, title: str | None,
               progress: bool | None) -> None:
    """Write the zoo report of STORE: summary, PCA, drift per axis, degeneration, models."""
    from ..analysis import StudySettings, study
    from ..report import write_zoo_report
    from ..store import open_store
    from ..plotting import require_matplotlib

    require_matplotlib()  # the report needs matplotlib: say so before any work (MissingDependencyError, one line)
    if out.parent and not out.parent.exists():
        abort(f"{out}: the folder {out.parent} does not exist; cannot write the report there")
    show = err_console.is_terminal if progress is None else progress
    update, stop = progress_display(show)
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
