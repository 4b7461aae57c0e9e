"""filterdb demo: build a store from a real zoo, run the study, write the report, print where it is."""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path
from typing import Any

import click

from ._app import EXIT_USAGE, abort, app, console, err_console


REPORT_NAME = "filterdb-demo-report.html"  # in the current folder: where a newcomer looks for it


def _file_name(spec: str) -> str:
    return spec.rsplit("#", 1)[-1].rstrip("/").rsplit("/", 1)[-1]


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

    def step(self, text: str, advance: int = 1) -> None:
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
def demo_cmd(workdir: Path | None, output: Path, no_digits: bool, patterns: tuple[str, ...], open_: bool, figures: Path | None,
             progress: bool) -> None:
    """Build a filter store from a real model zoo, run the study, and write the HTML report.

    The zoo: the pre-trained models shipped inside PyPI wheels (face detection, landmarks, OCR, object
    detection, emotion recognition, audio; ONNX, PyTorch, Keras, TFLite), plus a family of small CNNs
    trained for seconds on sklearn's digits with known degenerations (needs torch). Downloads are cached
    and the store is content-addressed, so a second run is fast. The report goes to the current folder
    (--output); the store and the digits models stay in --workdir.
    """
    from ..demo import build_demo_zoo
    from ..ingest import IngestEvent, ingest
    from ..report._zoo_report import write_zoo_report
    from ..sources import cache_dir, resolve_source
    from ..store import open_store

    from ..plotting._style import _matplotlib

    _matplotlib()  # the report needs matplotlib: say so before any work (MissingDependencyError, one line)
    started = time.perf_counter()
    work = (workdir or cache_dir() / "demo").expanduser()
    display = _Display(("bar" if err_console.is_terminal else "lines") if progress else "off")
    store_path = work / "store.fdb"
    report_path = output.expanduser().absolute()
    if not report_path.parent.is_dir():  # say so before minutes of work, not after
        raise click.BadParameter(f"{report_path.parent} is not a folder", param_hint="--output")
    try:
        display.phase("zoo", 3, f"building the zoo manifest in {work}")
        zoo = build_demo_zoo(work, include_digits=not no_digits, progress=display.say)
        sources = list(zoo.sources)
        if patterns:
            sources = [s for s in sources if any(fnmatch.fnmatch(_file_name(s), p) for p in patterns)]
            if not sources:
                abort(f"--models {' '.join(patterns)}: no file of the zoo matches; the zoo has "
                      + ", ".join(_file_name(s) for s in zoo.sources), EXIT_USAGE)
        t_zoo = time.perf_counter()

        display.phase("download", len(sources), f"{len(sources)} model files (cached after the first run)")
        for spec in sources:  # cached after the first run: resolving is a file check
            display.step(_file_name(spec))
            if ":" in spec.split("#", 1)[0] and not Path(spec).exists():
                resolve_source(spec)
        t_download = time.perf_counter()

        display.phase("ingest", len(sources), f"{len(sources)} model files into {store_path}")

        def on_event(event: IngestEvent) -> None:
            if event.kind != "start":
                display.step(f"{_file_name(event.spec)}" + (" (already stored)" if event.kind == "skipped" else ""))

        result = ingest(store_path, sources, manifest=zoo.manifest_path, create=True, progress=on_event)
        t_ingest = time.perf_counter()

        store = open_store(store_path)
        n_models = len(store.models())
        display.phase("report", 10 + n_models, f"the study of {n_models} models and its figures")
        report = write_zoo_report(report_path, store, title="filterdb demo zoo", progress=display.step,
                                  figures_dir=figures)
        t_report = time.perf_counter()
    finally:
        display.stop()

    s = report.summary
    for note in zoo.notes:
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    console.print(f"[bold]filterdb demo[/] — {s['n_models']} models, {s['n_layers']:,} conv layers, "
                  f"{s['n_filters']:,} filters ({s['n_filters_shape']:,} of shape {s['shape']}); "
                  f"{len(result.ingested)} ingested now, {len(result.skipped)} already in the store")
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
        per_model.setdefault(entry["model"], []).append(f"{entry['layer'].rsplit(';', 1)[-1]} "
                                                        f"[{'/'.join(entry['verdicts'])}]")
    for model, found in list(per_model.items())[:16]:
        shown = ", ".join(found[:3]) + (f", +{len(found) - 3} more" if len(found) > 3 else "")
        console.print(f"    {model}: {shown}", markup=False, soft_wrap=True)
    if len(per_model) > 16:
        console.print(f"    ... and {len(per_model) - 16} more models (see the report)", markup=False)
    console.print(f"  times: zoo {t_zoo - started:.1f} s, downloads {t_download - t_zoo:.1f} s, ingest "
                  f"{t_ingest - t_download:.1f} s, report {t_report - t_ingest:.1f} s; total "
                  f"{t_report - started:.1f} s", markup=False)
    console.print(f"store:  {store_path}", markup=False, soft_wrap=True)
    if figures is not None:
        console.print(f"figures: {len(s['figures'])} PNGs in {figures}", markup=False, soft_wrap=True)
    console.print(f"report: {report.path}" + ("" if open_ else "  (open it in a web browser, or rerun with --open)"),
                  markup=False, soft_wrap=True)
    if open_:
        import webbrowser

        webbrowser.open(Path(report.path).resolve().as_uri())
