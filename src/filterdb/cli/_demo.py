"""filterdb demo: build a store from a real zoo, run the study, write the report, print where it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import click
from rich.console import RenderableType
from rich.progress import Progress

from .._format import count
from .._names import display_name
from ._app import app, console, err_console
from ._table import text_cell

if TYPE_CHECKING:
    from ..demo import DemoResult

REPORT_NAME = "filterdb-demo-report.html"  # in the current folder: where a newcomer looks for it


class _Display:
    """Progress over the whole run, on stderr: in a terminal a bar that fits its width (spinner, phase, bar,
    steps done, elapsed time) over a line with the current sub-step and its own seconds, both redrawn ten
    times a second so that a long step visibly runs; else one plain line per phase and sub-step, so that a
    log or CI shows where the time goes. Stdout keeps the summary alone."""

    def __init__(self, mode: str) -> None:  # "bar", "lines" or "off"
        self.mode = mode
        self.started = time.perf_counter()
        self.bar: Any = None
        self.task: Any = None
        self.status = ""
        self.status_since = self.started
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

            # spinner 1 + phase 8 + counts ~7 + elapsed 7 + gaps: the bar gets the rest, 10 to 40 cells
            bar_width = max(10, min(40, err_console.width - 32))
            self.bar = _ProgressWithStatus(self._status_line, SpinnerColumn(), TextColumn("[bold]{task.fields[phase]:<8}"),
                                           BarColumn(bar_width=bar_width), MofNCompleteColumn(), TimeElapsedColumn(),
                                           console=err_console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=3, phase="zoo")

    def _status_line(self) -> RenderableType:
        from rich.text import Text

        if not self.status:
            return Text("")
        seconds = time.perf_counter() - self.status_since
        line = Text(f"{seconds:4.0f} s  ", style="dim")  # first: a long sub-step text never cuts the seconds
        line.append_text(text_cell(self.status, style="dim"))
        line.no_wrap, line.overflow = True, "ellipsis"  # one line: never wraps the live display
        return line

    def _line(self, text: str) -> None:
        err_console.print(f"[{time.perf_counter() - self.started:5.1f} s] {text}", markup=False, soft_wrap=True)

    def _set_status(self, text: str) -> None:
        self.status, self.status_since = text, time.perf_counter()

    def phase(self, name: str, total: int, what: str = "") -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=max(total, 1), phase=name)
            self._set_status(what)
        elif self.mode == "lines":
            self._line(f"{name}: {what}" if what else name)

    def step(self, text: str, advance: int = 1) -> None:  # filterdb.demo.DemoProgress
        if self.bar is not None:
            self.bar.update(self.task, advance=advance)
            self._set_status(text)

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.step(text, advance=0)
        elif self.mode == "lines":
            self._line(text)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _ProgressWithStatus(Progress):
    """A rich Progress that draws one more line under its bar: the current sub-step."""

    def __init__(self, status: Callable[[], RenderableType], *columns: Any, **kwargs: Any) -> None:
        self._status = status
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self._status()


@app.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the store and the digits models [the user's cache dir: <cache>/filterdb/demo].")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=Path(REPORT_NAME),
              show_default=True, help="Where to write the HTML report (relative paths: from the current folder).")
@click.option("--no-digits", is_flag=True, help="Leave out the digits family.")
@click.option("--train", is_flag=True,
              help="Train the digits family here instead of using the shipped files (needs torch and scikit-learn: "
                   "pip install 'filterdb[torch]' scikit-learn; kept apart in digits-trained/ and store-trained.fdb).")
@click.option("--models", "patterns", multiple=True, metavar="GLOB",
              help="Only the zoo's files whose name matches (repeat), e.g. 'digits-*' 'pnet.pt': a quick run.")
@click.option("--open", "open_", is_flag=True, help="Open the report in the web browser at the end.")
@click.option("--figures", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also save the report's main figures as small PNGs in this folder (as in the README).")
@click.option("--progress/--no-progress", default=True,
              help="Progress on stderr: a bar in a terminal, one line per phase otherwise [on].")
def demo_cmd(workdir: Path | None, output: Path, no_digits: bool, train: bool, patterns: tuple[str, ...],
             open_: bool, figures: Path | None, progress: bool) -> None:
    """Build a filter store from a real model zoo, run the study, and write the HTML report.

    The zoo: the pre-trained models shipped inside PyPI wheels (face detection, landmarks, OCR, object
    detection, emotion recognition, audio; ONNX, PyTorch, Keras, TFLite), plus a family of small CNNs
    trained on sklearn's digits with known degenerations (shipped with filterdb; --train remakes them with
    torch). No deep-learning framework is needed. Downloads are cached
    and the store is content-addressed, so a second run is fast. The report goes to the current folder
    (--output); the store and the digits models stay in --workdir.
    """
    from ..demo import run_demo

    report_path = output.expanduser().absolute()
    if not report_path.parent.is_dir():  # say so before minutes of work, not after
        raise click.BadParameter(f"{report_path.parent} is not a folder", param_hint="--output")
    display = _Display(("bar" if err_console.is_terminal else "lines") if progress else "off")
    try:
        result = run_demo(report_path, workdir=workdir, include_digits=not no_digits, models=patterns,
                          figures_dir=figures, progress=display, train_digits=train)
    finally:
        display.stop()
    _print_summary(result, figures, open_)
    if open_:
        import webbrowser

        webbrowser.open(result.report_path.resolve().as_uri())


def _print_summary(result: DemoResult, figures: Path | None, open_: bool) -> None:
    s = result.summary
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    console.print(f"[bold]filterdb demo[/] — {s['n_models']} models, {count(s['n_layers'])} conv layers, "
                  f"{count(s['n_filters'])} filters ({count(s['n_filters_shape'])} of shape {s['shape']}); "
                  f"{result.n_ingested} ingested now, {result.n_skipped} already in the store")
    for finding in s.get("findings", []):  # the study's findings on drift, each by its stated rule
        if finding["kind"] in ("axis_ranking", "most_shifted", "no_shift"):
            console.print(f"  {finding['text']}", markup=False)  # wraps at spaces
    bad = s["degenerated_layers"]
    by_kind: dict[str, int] = {}
    for entry in bad:
        for kind in entry["verdicts"]:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items(), key=lambda kv: -kv[1])) or "none"
    console.print(f"  degenerated layers: {len(bad)} ({kinds})", markup=False)
    per_model: dict[str, list[str]] = {}
    for entry in bad:
        per_model.setdefault(entry["model"], []).append(f"{display_name(entry['layer'])} "
                                                        f"[{'/'.join(entry['verdicts'])}]")
    for model, found in list(per_model.items())[:16]:
        shown = ", ".join(found[:3]) + (f", +{len(found) - 3} more" if len(found) > 3 else "")
        console.print(f"    {model}: {shown}", markup=False)
    if len(per_model) > 16:
        console.print(f"    ... and {len(per_model) - 16} more models (see the report)", markup=False)
    t = result.seconds
    console.print(f"  times: zoo {t['zoo']:.1f} s, downloads {t['download']:.1f} s, ingest "
                  f"{t['ingest']:.1f} s, report {t['report']:.1f} s; total {t['total']:.1f} s", markup=False)
    console.print(f"store:  {result.store_path}", markup=False, soft_wrap=True)
    if figures is not None:
        console.print(f"figures: {len(s['figures'])} PNGs in {figures}", markup=False, soft_wrap=True)
    hint = "" if open_ else "  (open it in a web browser, or rerun with --open)"
    console.print(f"report: {result.report_path}{hint}", markup=False, soft_wrap=True)
