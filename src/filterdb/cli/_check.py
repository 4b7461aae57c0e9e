"""``filterdb check MODEL``: the data-free health report of every convolution layer, usable as a CI gate.

Exit codes: 0 the report was produced (and no layer failed ``--fail-on``); 1 the model could not be read
(or could not be written); 2 bad command-line usage; 3 at least one layer got a verdict named in ``--fail-on``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from .._names import display_name
from ..check import BORDERLINE_SPREADS, VERDICT_KINDS, ModelReport, Thresholds, Verdict, check_model, failing
from ._app import abort, app, console, err_console
from ._common import fmt, json_safe, max_memory_option, print_layers, producer_text, read_with_progress
from ._table import csv_cell, json_safe_text, markup_safe, pack, text_cell

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from ..types import ModelRecord

EXIT_FAILED_CHECK = 3
_T = Thresholds()  # the documented defaults, shown in --help
_VERDICT_STYLE = {"sparse": "yellow", "low-diversity": "magenta", "random": "red", "non-finite": "bold red"}


def _parse_fail_on(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    if "all" in kinds or "any" in kinds:
        return VERDICT_KINDS
    unknown = [k for k in kinds if k not in VERDICT_KINDS]
    if unknown:
        raise click.BadParameter(
            f"unknown verdict {', '.join(map(repr, unknown))}; choose from {', '.join(VERDICT_KINDS)} or 'any'",
            param_hint="--fail-on",
        )
    return kinds


def _layer_table(report: ModelReport, title: str, shown: list[int]) -> Table:
    table = Table(title=text_cell(title), title_justify="left", header_style="bold")
    columns: list[tuple[str, JustifyMethod]] = [
        ("name", "left"), ("kind", "left"), ("shape", "left"), ("groups", "right"), ("kernel", "left"),
        ("filters", "right"), ("depth", "right"), ("depth_norm", "right"), ("sparsity", "right"),
        ("var_entropy", "right"), ("ve_norm", "right"), ("ve_clean", "right"), ("orthog.", "right"),
        ("l2_norm", "right"), ("nbr_corr", "right"), ("verdicts", "left"),
    ]
    for name, justify in columns:
        if name == "verdicts":  # the only column that wraps (between verdicts, never inside a number)
            table.add_column(name, justify=justify, overflow="fold", min_width=16)
        else:  # names and numbers never wrap: print_layers switches to one block per layer when they do not fit
            table.add_column(name, justify=justify, no_wrap=True)
    rows = _layer_rows(report)
    for i in shown:
        cells, verdict_text = rows[i]
        table.add_row(*(text_cell(c) for c in cells.values()), verdict_text)
    return table


def _verdict_text(verdict: Verdict) -> str:
    """'random (1.001 vs 1, +0.4 spreads, borderline)': the value, the threshold and the margin."""
    margin = f", {verdict.margin:+.1f} spreads" if math.isfinite(verdict.margin) else ""
    return (f"{verdict.kind} ({fmt(verdict.value)} vs {fmt(verdict.threshold)}{margin}"
            + (", borderline)" if verdict.borderline else ")"))


def _layer_rows(report: ModelReport) -> list[tuple[dict[str, str], Text]]:
    """Per layer: the table's cells by column name (plain text; the display name) and the verdicts' text."""
    rows = []
    for layer, verdicts in zip(report.rows(), report.verdicts):
        row = SimpleNamespace(**layer)
        depth = fmt(row.conv_depth) + ("*" if row.depth_source == "order" and row.conv_depth is not None else "")
        verdict_text = Text(", ").join(
            text_cell(_verdict_text(v), style=_VERDICT_STYLE.get(v.kind, "red") + (" italic" if v.borderline else ""))
            for v in verdicts) if verdicts else Text("ok", style="green")
        single_tap = math.prod(int(k) for k in row.kernel) == 1  # one value per filter: no variance spectrum
        cells = {
            "name": display_name(str(row.name)), "kind": row.kind, "shape": fmt(tuple(row.shape)),
            "groups": str(row.groups), "kernel": fmt(tuple(row.kernel)), "filters": f"{row.n_filters:,}",
            "depth": depth, "depth_norm": fmt(row.conv_depth_norm, 2), "sparsity": fmt(row.sparsity),
            "var_entropy": "–" if single_tap else fmt(row.variance_entropy),
            "ve_norm": fmt(row.variance_entropy_norm),
            "ve_clean": "–" if single_tap else fmt(row.variance_entropy_clean), "orthog.": fmt(row.orthogonality),
            "l2_norm": fmt(row.norm_l2, 2), "nbr_corr": fmt(row.neighbour_corr, 2),
        }
        rows.append((cells, verdict_text))
    return rows


def _layer_blocks(report: ModelReport, shown: list[int]) -> list[tuple[str, list[Text]]]:
    """The narrow layout: under each shown name, the shape facts and the metrics packed into the terminal's
    width (a ``label value`` pair never split), then the verdicts."""
    blocks = []
    rows = _layer_rows(report)
    width = max(console.width - 4, 20)
    for i in shown:
        c, verdict_text = rows[i]
        facts = [f"{c['kind']} {c['shape']}", f"groups {c['groups']}", f"kernel {c['kernel']}",
                 f"{c['filters']} filters", f"depth {c['depth']} ({c['depth_norm']})"]
        metrics = [f"{label} {c[key]}" for label, key in (
            ("sparsity", "sparsity"), ("var_entropy", "var_entropy"), ("ve_norm", "ve_norm"), ("ve_clean", "ve_clean"),
            ("orthog.", "orthog."), ("l2_norm", "l2_norm"), ("nbr_corr", "nbr_corr"))]
        lines = [*pack(facts, width), *pack(metrics, width)]
        blocks.append((c["name"], [*(text_cell(line) for line in lines), Text("verdicts: ") + verdict_text]))
    return blocks


def _print_summary(summary: dict[str, Any]) -> None:
    """The model facts and the answer (degenerated layers), printed before the layer table."""
    s = summary
    console.print(f"[bold]model[/]: format {markup_safe(s.get('format'))}, "
                  f"producer {markup_safe(producer_text(s.get('producer'), s.get('producer_version')))}, "
                  f"opset {markup_safe(fmt(s.get('opset')))}, "
                  f"{s.get('n_parameters', 0):,} parameters")
    ops = s.get("op_counts") or {}
    if ops:
        top = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
        console.print("[bold]ops[/]: " + markup_safe(", ".join(f"{k} {v}" for k, v in top)))
    by_shape = s.get("filters_by_shape") or {}
    console.print(f"[bold]conv layers[/]: {s.get('n_conv_layers', 0)} with 2-D kernels "
                  f"({s.get('n_layers_total', 0)} convolutions in all)")
    if by_shape:
        console.print("[bold]filters by kernel shape[/]: " + ", ".join(f"{k}: {v:,}" for k, v in by_shape.items())
                      + f"; 3×3 share {fmt(s.get('share_3x3'))}")
    for note in s.get("notes", []):
        console.print(f"[yellow]note: {markup_safe(note)}[/]")
    if not s["has_2d_filters"]:
        return
    counts, shares = s["n_degenerated"], s["share_degenerated"]
    parts = [f"{kind} {counts[kind]} ({fmt(shares[kind], 2)})" for kind in VERDICT_KINDS]
    borderline = s.get("n_borderline", 0)
    console.print(f"[bold]degenerated layers[/]: {counts['any']} of {s['n_conv_layers']} "
                  f"({fmt(shares['any'], 2)}): " + ", ".join(parts)
                  + (f"; {borderline} borderline" if borderline else ""))


def _print_legend(report: ModelReport, thresholds: Thresholds) -> None:
    """What the table's marks mean, after it."""
    if any(source == "order" for source in report.columns["depth_source"]):
        console.print("[dim]* depth inferred from layer order: the format has no graph[/]")
    if not report.summary["has_2d_filters"]:
        return
    t = thresholds
    console.print(f"[dim]thresholds: sparse if sparsity >= {t.sparse} (filter sparse below {t.sparsity_eps} x max|W|); "
                  f"low-diversity if ve_norm < {t.low_diversity}; random if ve_norm > {t.random} and |nbr_corr| "
                  f"within {t.random_corr_z:g} sd of random layers; "
                  f"entropy verdicts from {t.min_filters} filters; margins in spreads of layers of that size, "
                  f"borderline within {BORDERLINE_SPREADS:g} (docs/metrics.md); '–': does not apply (1×1 kernels)[/]")


@app.command("check")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (model, layers, summary).")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print one CSV row per layer (full layer names; a text cell starting with = + - @ gets a "
                   "leading ' so that spreadsheets do not run it; control characters shown escaped).")
@click.option("--only-flagged", is_flag=True,
              help="List only the layers that got a verdict (the summary still counts all).")
@click.option("--fail-on", default=None, metavar="KINDS",
              help="Comma-separated verdicts (sparse, low-diversity, random, non-finite, or any) that make the "
                   f"command exit with code {EXIT_FAILED_CHECK}.")
@click.option("--sparse-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"A layer is 'sparse' when its share of sparse filters is at least this [default: {_T.sparse}].")
@click.option("--low-diversity-threshold", type=click.FloatRange(0, None), default=None,
              help="A layer is 'low-diversity' when variance_entropy_norm is below this "
                   f"[default: {_T.low_diversity}].")
@click.option("--random-threshold", type=click.FloatRange(0, None), default=None,
              help=f"A layer is 'random' when variance_entropy_norm is above this [default: {_T.random}] ...")
@click.option("--random-corr-z", type=click.FloatRange(0, None, min_open=True), default=None,
              help="... and its neighbour-tap correlation within this many standard deviations of random layers "
                   f"of its size ('inf': entropy alone) [default: {_T.random_corr_z}].")
@click.option("--sparsity-eps", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"A filter is sparse when all |w| < eps * max|W_layer| [default: {_T.sparsity_eps}].")
@click.option("--min-filters", type=click.IntRange(1, None), default=None,
              help=f"Entropy verdicts need at least this many filters in a layer [default: {_T.min_filters}].")
@click.option("--trust-pickle", is_flag=True, help="Allow pickle-based files (loading them runs code from the file!).")
@max_memory_option
@click.option("--format", "format_", default=None, help="Force a reader (onnx, pytorch, keras, tflite, ...).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the model report card (a self-contained HTML page with figures) to this file.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write the JSON/CSV output to this file instead of stdout.")
def check_command(model: str, as_json: bool, as_csv: bool, fail_on: str | None, sparse_threshold: float | None,
                  low_diversity_threshold: float | None, random_threshold: float | None, random_corr_z: float | None,
                  sparsity_eps: float | None, min_filters: int | None, trust_pickle: bool, format_: str | None,
                  output: Path | None, html_path: Path | None, only_flagged: bool) -> None:
    """Report the health of every convolution layer of MODEL, with degeneration verdicts.

    MODEL is a file (.onnx, .pt/.pth/.bin, .safetensors, .h5/.hdf5/.keras, .tflite) or a source name such as
    pypi:nudenet==3.4.2#nudenet/320n.onnx. Exit codes: 0 ok, 1 unreadable model, 2 bad usage,
    3 a layer got a verdict named by --fail-on. The metrics and verdicts are defined in docs/metrics.md.

    The summary comes first, then one row per layer (its display name: the conv's own op out of a fused
    TFLite name; --json and --csv keep the full name). Each verdict shows its value, the threshold and its
    margin in spreads of random layers of that size; "borderline" marks one within 1 spread.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if output is not None and not (as_json or as_csv):
        raise click.UsageError("--output needs --json or --csv")
    kinds = _parse_fail_on(fail_on)
    overrides: dict[str, Any] = {  # Thresholds checks each value and their combination
        "sparse": sparse_threshold, "low_diversity": low_diversity_threshold, "random": random_threshold,
        "random_corr_z": random_corr_z, "sparsity_eps": sparsity_eps, "min_filters": min_filters,
    }
    try:
        thresholds = Thresholds(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:  # combinations, e.g. --low-diversity-threshold above --random-threshold
        raise click.UsageError(str(e).replace("Thresholds.", "threshold ")) from e
    record = read_with_progress(model, trust_pickle=trust_pickle, format=format_)
    report = check_model(record, thresholds=thresholds)
    if html_path is not None:
        _write_card(html_path, record, report)
    if as_json or as_csv:
        text = json_safe_text(json.dumps(json_safe(report.to_dict()), indent=2)) if as_json else _guarded(report).to_csv()
        if output is not None:
            _write_atomically(output, text)
        else:
            click.echo(text, nl=as_json)
    else:
        _print_summary(report.summary)
        shown = [i for i, v in enumerate(report.verdicts) if v or not only_flagged]
        if shown:
            title = model + (f": {len(shown)} flagged of {len(report.verdicts)} layers" if only_flagged else "")
            print_layers(console, _layer_table(report, title, shown), _layer_blocks(report, shown))
        elif only_flagged and report.verdicts:
            console.print(f"[green]no layer flagged[/] ({len(report.verdicts)} layers)")
        _print_legend(report, thresholds)
    bad = failing(report, kinds)
    if bad:
        if not (as_json or as_csv) or output is not None:
            console.print(f"[bold red]check failed[/]: {len(bad)} layer(s) with {', '.join(kinds)}")
        raise SystemExit(EXIT_FAILED_CHECK)


def _guarded(report: ModelReport) -> ModelReport:
    """The report with its text columns (names, op types) made CSV-safe (cli/_table.py ``csv_cell``)."""
    import dataclasses

    import numpy as np

    columns = dict(report.columns)
    for key, values in report.columns.items():
        if any(isinstance(v, str) for v in values):  # the text columns: name, kind, op_type, ...
            guarded = np.empty(len(values), dtype=object)
            guarded[:] = [csv_cell(v) for v in values]
            columns[key] = guarded
    return dataclasses.replace(report, columns=columns)


def _write_card(path: Path, record: ModelRecord, report: ModelReport) -> None:
    from ..errors import MissingDependencyError

    try:
        from ..report import write_model_card

        write_model_card(path, record, report, plan=_card_plan(record))
        err_console.print(f"[dim]report card written to {markup_safe(path)}[/]")
    except MissingDependencyError as e:
        abort(f"--html: {markup_safe(e)}")
    except OSError as e:
        abort(f"{markup_safe(path)}: cannot write the report card there: {e.strerror or e}")


def _card_plan(record: ModelRecord) -> Any:
    """The prune plan whose headline and per-layer ratios the card shows (docs/prune.md); None, with a note on
    stderr, for a model the plan cannot read (no conv layer with a channel axis)."""
    from ..errors import UsageError
    from ..prune import prune_plan

    try:
        return prune_plan(record, target=0.5)
    except UsageError as e:
        err_console.print(f"[dim]no prune plan in the card: {markup_safe(e)}[/]")
        return None


def _write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a file; the file gets the usual permissions (filterdb._atomic)."""
    from .._atomic import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as e:
        abort(f"{markup_safe(path)}: cannot write there: {e.strerror or e}")
