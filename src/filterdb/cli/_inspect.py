"""``filterdb inspect MODEL``: the conv layers and model facts, without computing metrics (fast)."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

import click
from rich.table import Table

from .._kernel import kernel_key
from ..types import ModelRecord
from .._format import count
from ._app import app, console
if TYPE_CHECKING:
    from rich.console import JustifyMethod

from .._names import display_name
from ._common import fmt, json_safe, max_memory_option, print_layers, producer_text, read_with_progress
from ._table import json_safe_text, text_cell


def inspect_dict(record: ModelRecord) -> dict:
    """The inspect output as plain JSON-ready data."""
    info = record.info
    by_shape: Counter[str] = Counter()
    for layer in record.layers_2d:
        by_shape[kernel_key(layer.kernel)] += layer.n_filters
    return json_safe({
        "model": {
            "source": info.source, "path": info.path, "format": info.format, "producer": info.producer,
            "producer_version": info.producer_version, "opset": info.opset, "sha256": info.sha256,
            "size_bytes": info.size_bytes, "n_parameters": info.n_parameters, "op_counts": dict(info.op_counts),
            "n_conv_layers": len(record.layers_2d), "n_layers_total": len(record.layers),
            "filters_by_shape": dict(by_shape), "notes": list(info.notes),
        },
        "layers": [
            {
                "name": layer.name, "op_type": layer.op_type, "kind": layer.kind, "shape": list(layer.weight.shape),
                "groups": layer.groups, "kernel": list(layer.kernel), "n_filters": layer.n_filters,
                "stride": layer.stride, "dilation": layer.dilation, "conv_depth": layer.conv_depth,
                "conv_depth_norm": layer.conv_depth_norm, "depth_source": layer.depth_source,
                "storage_dtype": layer.storage_dtype, "notes": list(layer.notes),
            }
            for layer in record.layers
        ],
    })


@app.command("inspect")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--trust-pickle", is_flag=True, help="Allow pickle-based files (runs code from the file!).")
@max_memory_option
@click.option("--format", "format_", default=None, help="Force a reader (onnx, pytorch, keras, tflite, ...).")
def inspect_command(model: str, as_json: bool, trust_pickle: bool, format_: str | None) -> None:
    """List the convolution layers of MODEL and its facts, without metrics.

    MODEL is a file or a source name such as pypi:nudenet==3.4.2#nudenet/320n.onnx. Layers are listed by
    display name (the conv's own op out of a fused TFLite name); --json keeps the full names.
    """
    record = read_with_progress(model, trust_pickle=trust_pickle, format=format_)
    data = inspect_dict(record)
    if as_json:
        click.echo(json_safe_text(json.dumps(data, indent=2)))
        return
    table = Table(title=text_cell(f"{model}: {len(record.layers)} convolution layers"), title_justify="left")
    for col in ("name", "op", "kind", "shape", "groups", "stride", "depth", "depth_norm", "dtype"):
        justify: JustifyMethod = "right" if col in ("groups", "depth", "depth_norm") else "left"
        # nothing wraps: print_layers lists one block per layer when the names and numbers do not fit whole
        table.add_column(col, justify=justify, no_wrap=True)
    blocks = []
    for layer in record.layers:
        depth = fmt(layer.conv_depth) + ("*" if layer.depth_source == "order" and layer.conv_depth is not None else "")
        cells = (layer.op_type, layer.kind, fmt(tuple(layer.weight.shape)), str(layer.groups), fmt(layer.stride),
                 depth, fmt(layer.conv_depth_norm), layer.storage_dtype)
        name = display_name(layer.name)
        table.add_row(text_cell(name), *(text_cell(c) for c in cells))
        blocks.append((name, [text_cell(f"{cells[0]} ({cells[1]}) {cells[2]}, groups {cells[3]}, stride {cells[4]}, "
                                        f"depth {cells[5]} ({cells[6]}), {cells[7]}")]))
    print_layers(console, table, blocks)
    m = data["model"]
    console.print(text_cell(f"format {m['format']}, producer {producer_text(m['producer'], m['producer_version'])}, "
                            f"opset {fmt(m['opset'])}, {count(m['n_parameters'])} parameters"))
    console.print("filters by kernel shape: " + (", ".join(f"{k}: {count(v)}" for k, v in m["filters_by_shape"].items())
                                                 or "none (no 2-D convolution)"), markup=False)
    if any(layer.depth_source == "order" for layer in record.layers):
        console.print("* depth inferred from layer order (the format has no graph)", markup=False)
    for note in m["notes"]:
        console.print(text_cell(f"note: {note}"))
