"""filterdb report STORE -o report.html: the study of a whole store as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._app import abort, app, console, err_console


def progress_display(show: bool) -> Any:
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
@click.option("--shape", default="3x3", show_default=True, help="Kernel shape of the filters analysed.")
@click.option("--where", default=None, help="SQL predicate over the layers view, e.g. \"task = ?\".")
@click.option("-p", "--param", "params", multiple=True, help="A value for a '?' in --where (repeat; bound).")
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
def report_cmd(store: Path, out: Path, by: tuple[str, ...], shape: str, where: str | None, params: tuple[str, ...],
               no_models: bool, figures: Path | None, per_model: bool, figure_cache: bool, title: str | None,
               progress: bool | None) -> None:
    """Write the zoo report of STORE: summary, PCA, drift per axis, degeneration, models."""
    from ..report._zoo_report import write_zoo_report
    from ..store import open_store
    from ._store import _params

    from ..plotting._style import _matplotlib

    _matplotlib()  # the report needs matplotlib: say so before any work (MissingDependencyError, one line)
    if out.parent and not out.parent.exists():
        abort(f"{out}: the folder {out.parent} does not exist; cannot write the report there")
    show = err_console.is_terminal if progress is None else progress
    update, stop = progress_display(show)
    try:
        report = write_zoo_report(out, open_store(store), by=list(by) or None, shape=shape, where=where,
                                  params=_params(params), model_sections=not no_models, title=title, progress=update,
                                  figures_dir=figures, per_model=per_model,
                                  figure_cache="auto" if figure_cache else None)
    finally:
        stop()
    s = report.summary
    console.print(f"{s['n_models']} models, {s['n_filters_shape']:,} {shape} filters, "
                  f"{len(s['degenerated_layers'])} degenerated layers ({s['seconds']:.1f} s)")
    console.print(f"report written to {report.path}", soft_wrap=True, markup=False)
