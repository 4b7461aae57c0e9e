"""Does a prune plan build a working pruner for every classification CNN of torchvision's model builders?

For each builder (random weights, eval mode): read the module, make the plan (``prune_plan``, target 50 % of
conv weights by default), build the pruner (``plan_pruner``, the classifier's last linear layer ignored),
``step()``, then check that a forward pass runs, that the output shape is unchanged, and that the share of
conv weights removed is the plan's ± 2 % (relative). Also recorded: the layers the plan leaves alone and why,
the total parameter reduction (conv and linear), and the time of each stage. One builder failing does not stop
the run; its error is in the table.

    PYTHONPATH=src .venv/bin/python bench/bench_prune_coverage.py [--all] [--target 0.5] [--out bench/results/prune_coverage]

Default: one or two builders of each family (the ones the test runs, and a larger one). ``--all``: every
classification CNN builder (transformers — ViT, Swin, MaxViT — have no conv layers to plan).
Needs the prune extra and torchvision. Results: OUT.json and OUT.md (docs/prune.md cites them).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from _results import save, uptime  # bench/_results.py

import torch
import torch.nn as nn

from filterdb import read_model
from filterdb.integrations.torch_pruning import conv_params, plan_pruner
from filterdb.prune import prune_plan

FAMILIES = {
    "ResNet": ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"),
    "VGG": ("vgg11", "vgg11_bn", "vgg16_bn"),
    "MobileNet": ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5"),
    "EfficientNet": ("efficientnet_b0", "efficientnet_v2_s"),
    "RegNet": ("regnet_x_400mf", "regnet_y_400mf", "regnet_y_1_6gf"),
    "DenseNet": ("densenet121",),
    "ConvNeXt": ("convnext_tiny",),
    "ShuffleNet": ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"),
    "other": ("alexnet", "squeezenet1_1", "googlenet"),
}
NOT_CNN = ("vit_", "swin_", "maxvit_")
INPUT = {"inception_v3": 299}  # builders with a minimum input size; the rest run at 64×64


def all_builders() -> list[str]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return [n for n in names if not n.startswith(NOT_CNN)]


def build(name: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    options: dict[str, Any] = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        options.update(aux_logits=False, init_weights=True)
    return torchvision.models.get_model(name, **options).eval()


def classifier_head(model: nn.Module) -> list[nn.Module]:
    """The module that produces the logits: its outputs are the classes, never pruned."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return [last]


def check_builder(name: str, target: float = 0.5, size: int | None = None) -> dict[str, Any]:
    """One builder through plan → pruner → step → forward; the row of the coverage table."""
    row: dict[str, Any] = {"model": name, "target": target}
    size = size or INPUT.get(name, 64)
    example = torch.randn(1, 3, size, size)
    try:
        t = time.perf_counter()
        model = build(name)
        row["build_s"] = round(time.perf_counter() - t, 2)
        with torch.no_grad():
            shape = tuple(model(example).shape)
        before_conv, before_all = conv_params(model), sum(p.numel() for p in model.parameters())
        t = time.perf_counter()
        plan = prune_plan(read_model(model), target=target)
        row["plan_s"] = round(time.perf_counter() - t, 2)
        row["planned"] = round(plan.params_removed / plan.params_total, 4)
        row["untouched"] = [f"{layer} ({reason.removeprefix('keep: ')})" for layer, reason in plan.untouched]
        row["short"] = [note for note in plan.notes if "out of reach" in note]  # the plan's own word on a shortfall
        t = time.perf_counter()
        pruner = plan_pruner(model, plan, example, ignored_layers=classifier_head(model))
        pruner.step()
        row["prune_s"] = round(time.perf_counter() - t, 2)
        with torch.no_grad():
            out = model(torch.randn(2, 3, size, size))
        row["forward"] = tuple(out.shape[1:]) == shape[1:] and bool(torch.isfinite(out).all())
        row["removed"] = round(1 - conv_params(model) / before_conv, 4)
        row["removed_all_params"] = round(1 - sum(p.numel() for p in model.parameters()) / before_all, 4)
        row["conv_params"] = before_conv
        row["within_2pct"] = abs(row["removed"] - row["planned"]) <= 0.02 * row["planned"]
        row["ok"] = row["forward"] and row["within_2pct"]
    except Exception as e:  # noqa: BLE001 - a failing builder is a row of the table, not the end of the run
        row["ok"] = False
        row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        row["trace"] = traceback.format_exc(limit=-3)
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Prune plan → Torch-Pruning pruner on torchvision builders (target {result['target']:.0%})", "",
             f"machine: {result['machine']}; torch {result['torch']}, torchvision {result['torchvision']}, "
             f"commit {result['commit']}; random weights (seed 0), eval mode, input 64×64 (inception 299).", "",
             f"load before: `{result['load_before']}`", "", f"load after: `{result['load_after']}`", "",
             "| model | conv weights | planned | removed (conv) | removed (all params) | forward | ok | plan s | "
             "prune s | untouched by the plan |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | | {r.get('planned', '')} | | | | **no**: {r['error']} | | | |")
            continue
        untouched = ", ".join(r["untouched"][:4]) + (f" … ({len(r['untouched'])})" if len(r["untouched"]) > 4 else "")
        planned = f"{r['planned']:.1%}" + (" (out of reach)" if r.get("short") else "")
        lines.append(f"| {r['model']} | {r['conv_params']:,} | {planned} | {r['removed']:.1%} | "
                     f"{r['removed_all_params']:.1%} | {'yes' if r['forward'] else 'NO'} | "
                     f"{'yes' if r['ok'] else '**no**'} | {r['plan_s']} | {r['prune_s']} | {untouched or '–'} |")
    n_ok = sum(r["ok"] for r in result["rows"])
    lines += ["", f"{n_ok} of {len(result['rows'])} builders: forward pass runs and conv weights removed = planned ± 2 %."]
    short = [r for r in result["rows"] if r.get("short")]
    if short:
        lines += ["", f"Plans short of the {result['target']:.0%} target, in their own words (`plan.notes`):", ""]
        lines += [f"- {r['model']}: {r['short'][0]}" for r in short]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every classification CNN builder of torchvision")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--only", nargs="*", default=None, help="these builders only")
    parser.add_argument("--out", default="bench/results/prune_coverage")
    args = parser.parse_args()
    import torchvision

    names = args.only or (all_builders() if args.all else [n for family in FAMILIES.values() for n in family])
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    result: dict[str, Any] = {
        "target": args.target, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "load_before": uptime(), "rows": []}
    for name in names:
        row = check_builder(name, args.target)
        result["rows"].append(row)
        status = "ok" if row["ok"] else f"FAIL {row.get('error', '')}"
        print(f"{name:24s} planned {row.get('planned', '?')} removed {row.get('removed', '?')} {status}", flush=True)
    result["load_after"] = uptime()
    save(result, Path(args.out), markdown(result))
    sys.exit(0 if all(r["ok"] for r in result["rows"]) else 1)


if __name__ == "__main__":
    main()
