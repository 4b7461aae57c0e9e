"""filterdb demo: build a store from a real zoo, run the study, write the report, print where it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._format import count
from .._names import display_name
from ._app import app, console, err_console

if TYPE_CHECKING:
    from ..demo import DemoResult

REPORT_NAME = "filterdb-demo-report.html"  # in the current folder: where a newcomer looks for it


class _Display:
    """Progress over the whole run, on stderr: a rich bar in a terminal, else one plain line per phase (and per
    digits model trained), so that a log or CI shows where the time goes. Stdout keeps the summary alone."""

    def __init__(self, mode: str) -> None:  # "bar", "lines" or "off"
        self.mode = mode
        self.started = time.perf_counter()
        self.bar: Any = None
        self.task: Any = None
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.fields[phase]:<8}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"), console=err_console,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=3, phase="zoo")

    def _line(self, text: str) -> None:
        err_console.print(f"[{time.perf_counter() - self.started:5.1f} s] {text}", markup=False, soft_wrap=True)

    def phase(self, name: str, total: int, what: str = "") -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=max(total, 1), phase=name, description="")
        elif self.mode == "lines":
            self._line(f"{name}: {what}" if what else name)

    def step(self, text: str, advance: int = 1) -> None:  # filterdb.demo.DemoProgress
        if self.bar is not None:
            from rich.markup import escape

            self.bar.update(self.task, advance=advance, description=escape(text[:70]))

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.step(text, advance=0)
        elif self.mode == "lines":
            self._line(text)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the store and the digits models [the user's cache dir: <cache>/filterdb/demo].")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=Path(REPORT_NAME),
              show_default=True, help="Where to write the HTML report (relative paths: from the current folder).")
@click.option("--no-digits", is_flag=True, help="Leave out the digits family (no torch needed).")
@click.option("--models", "patterns", multiple=True, metavar="GLOB",
              help="Only the zoo's files whose name matches (repeat), e.g. 'digits-*' 'pnet.pt': a quick run.")
@click.option("--open", "open_", is_flag=True, help="Open the report in the web browser at the end.")
@click.option("--figures", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also save the report's main figures as small PNGs in this folder (as in the README).")
@click.option("--progress/--no-progress", default=True,
              help="Progress on stderr: a bar in a terminal, one line per phase otherwise [on].")
def demo_cmd(workdir: Path | None, output: Path, no_digits: bool, patterns: tuple[str, ...], open_: bool,
             figures: Path | None, progress: bool) -> None:
    """Build a filter store from a real model zoo, run the study, and write the HTML report.

    The zoo: the pre-trained models shipped inside PyPI wheels (face detection, landmarks, OCR, object
    detection, emotion recognition, audio; ONNX, PyTorch, Keras, TFLite), plus a family of small CNNs
    trained for seconds on sklearn's digits with known degenerations (needs torch). Downloads are cached
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
                          figures_dir=figures, progress=display)
    finally:
        display.stop()
    _print_summary(result, figures, open_)
    if open_:
        import webbrowser

        webbrowser.open(result.report_path.resolve().as_uri())


def _print_summary(result: DemoResult, figures: Path | None, open_: bool) -> None:
    s = result.summary
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    console.print(f"[bold]filterdb demo[/] — {s['n_models']} models, {count(s['n_layers'])} conv layers, "
                  f"{count(s['n_filters'])} filters ({count(s['n_filters_shape'])} of shape {s['shape']}); "
                  f"{result.n_ingested} ingested now, {result.n_skipped} already in the store")
    for axis, d in s.get("drift", {}).items():
        top = ", ".join(f"{g} ({v:.2f})" for g, v in d["most_shifted"][:2])
        console.print(f"  drift by {axis}: {d['n_groups']} groups, median {d['median']:.3f}; most shifted: {top}",
                      markup=False, soft_wrap=True)
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
        console.print(f"    {model}: {shown}", markup=False, soft_wrap=True)
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
