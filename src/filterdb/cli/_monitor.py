"""``filterdb monitor LOG``: what happened to the conv layers while a model trained (from filterdb.Monitor's log).

Exit codes: 0 the summary was produced; 1 the log could not be read; 2 bad usage; 3 an alert named in
``--fail-on`` fired during the run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ._app import abort, app, console, err_console
from ._table import markup_safe as escape  # stored names: controls shown escaped, never markup

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import JustifyMethod

    from ..monitor import MonitorLog

EXIT_ALERT = 3


def _value(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


@app.command("monitor")
@click.argument("log", type=click.Path(path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page (summary, alerts, layer × step heatmaps) to this file.")
@click.option("--layer", default=None,
              help="The layer whose metrics the HTML page draws against step (default: the first to alert).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-layer summary and the alerts as one JSON object.")
@click.option("--fail-on", default=None, metavar="KINDS",
              help="Comma-separated alert kinds (sparse, low-diversity, random, non-finite, or any) that make "
                   f"the command exit with code {EXIT_ALERT} when one fired during the run.")
def monitor_command(log: Path, html_path: Path | None, layer: str | None, as_json: bool, fail_on: str | None) -> None:
    """Summarise the log that filterdb.Monitor (or a FilterMonitor callback) wrote during training.

    LOG is the filterdb-monitor.jsonl file or the log directory that holds it. The table shows, per conv
    layer, the first and last value of sparsity, normalised variance entropy and orthogonality, the
    verdicts of the last evaluation, and when each alert fired; below it, how many of the evaluations that
    `every` asked for the time budget (max_overhead) skipped. Exit codes: 0 ok, 1 unreadable log,
    2 bad usage, 3 an alert named by --fail-on fired.
    """
    from ..check import VERDICT_KINDS
    from ..errors import UsageError
    from ..monitor import read_log, summarize

    kinds: set[str] = set()
    if fail_on:
        kinds = {k.strip() for k in fail_on.split(",") if k.strip()}
        if "any" in kinds:
            kinds = set(VERDICT_KINDS)
        unknown = sorted(kinds - set(VERDICT_KINDS))
        if unknown:
            raise UsageError(f"--fail-on: unknown alert kind {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(VERDICT_KINDS)} or 'any'")
    data = read_log(log)
    summary = summarize(data)
    if html_path is not None:
        _write_page(html_path, data, layer)
    if as_json:
        records = summary.to_dict("records")
        for record in records:
            for key, value in record.items():
                if isinstance(value, float) and math.isnan(value):
                    record[key] = None
        due, skipped = _skips(data)
        click.echo(json.dumps({"log": str(data.path), "steps": data.steps, "due_evaluations": due,
                               "skipped_evaluations": skipped, "layers": records, "alerts": data.alerts}, indent=2))
    else:
        _print_table(data, summary)
    if any(alert["kind"] in kinds for alert in data.alerts):
        raise SystemExit(EXIT_ALERT)


def _skips(data: MonitorLog) -> tuple[int | None, int | None]:
    """(due, skipped) evaluations of ``every`` at the last evaluation of the log; None in logs without them."""
    layers = data.layers
    if "skipped_evaluations" not in layers.columns:
        return None, None
    last = layers.loc[layers["step"].idxmax()]
    return int(last["due_evaluations"]), int(last["skipped_evaluations"])


def _print_table(data: MonitorLog, summary: pd.DataFrame) -> None:
    steps = data.steps
    table = Table(title=f"{escape(str(data.path))}: {len(steps)} evaluations, steps {steps[0]} – {steps[-1]}",
                  title_justify="left", header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("layer", "left"), ("sparsity", "right"), ("ve_norm", "right"), ("orthog.", "right"),
        ("verdicts (last)", "left"), ("alerts", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    for row in summary.itertuples(index=False):
        table.add_row(escape(row.name), f"{_value(row.sparsity_first)} → {_value(row.sparsity_last)}",
                      f"{_value(row.variance_entropy_norm_first)} → {_value(row.variance_entropy_norm_last)}",
                      f"{_value(row.orthogonality_first)} → {_value(row.orthogonality_last)}",
                      ", ".join(row.verdicts) or "[green]ok[/]", escape("; ".join(row.alerts)) or "–")
    console.print(table)
    due, skipped = _skips(data)
    if skipped:
        console.print(f"[yellow]skipped[/]: {skipped} of the {due} evaluations that `every` asked for, to keep the "
                      "monitor within its time budget (max_overhead); Monitor(..., max_overhead=None) runs them all",
                      soft_wrap=True)
    if not data.alerts:
        console.print("[green]no alerts[/]")
    for alert in sorted(data.alerts, key=lambda a: a["step"]):
        epoch = "" if alert["epoch"] is None else f", epoch {alert['epoch']}"
        console.print(f"[bold red]alert[/] step {alert['step']}{epoch}: {escape(alert['message'])}", soft_wrap=True)


def _write_page(path: Path, data: MonitorLog, layer: str | None) -> None:
    from ..errors import MissingDependencyError

    try:
        from ..monitor._html import write_monitor_html

        write_monitor_html(path, data, layer=layer)
    except MissingDependencyError as e:
        abort(f"--html: {e}")
    except OSError as e:
        abort(f"{path}: cannot write the page there: {e.strerror or e}")
    err_console.print(f"[dim]monitor page written to {escape(str(path))}[/]")
