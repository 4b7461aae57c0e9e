"""How long `filterdb prune resnet50.safetensors --target 0.5 --json` takes as a whole process, beside `check`.

The issue's target: a plan for a ResNet-50-sized model in under 1 s, whole process (interpreter start, imports,
reading, scoring, JSON). Writes torchvision's ResNet-50 (random init, seed 0) once as safetensors and ONNX, then
runs each command ``--repeat`` times, interleaved, and records the wall time and the CPU time (user + sys) of each
child process, with the load (`uptime`) before and after. On a shared machine the CPU time is the steadier
number: the wall time grows with the load. ``--base-src DIR`` also runs the same commands with another version's
``src`` on PYTHONPATH (e.g. main's), interleaved, for a ratio measured under the same load.

    PYTHONPATH=src .venv/bin/python bench/bench_prune_speed.py [--repeat 5] [--base-src ../main/src] \
        [--bytecode cached|source] [--out bench/results/prune_speed]

``--bytecode cached`` (the default) runs each version with its own bytecode cache (PYTHONPYCACHEPREFIX), written
by one untimed warm-up round, as an installed package runs; ``--bytecode source`` copies each version's ``src``
to a fresh folder and runs it with PYTHONDONTWRITEBYTECODE=1, so every filterdb module is compiled in every run
(a checkout with bytecode writing off; installed libraries keep their caches). The table gives the median and
the best of the runs.

Also checks that the prune path never imports torch (``-X importtime``). Needs torch and torchvision only to write
the two files (cached under $XDG_CACHE_HOME/filterdb/bench-prune). Results: OUT.json and OUT.md (docs/prune.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import median, save, summary, timed_child, uptime  # bench/_results.py

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "filterdb" / "bench-prune"


def write_models(folder: Path) -> dict[str, Path]:
    """ResNet-50 (random init, seed 0) as safetensors and ONNX, written once."""
    paths = {"safetensors": folder / "resnet50.safetensors", "onnx": folder / "resnet50.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import torchvision
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths["safetensors"]))
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(paths["onnx"]), dynamo=False)
    return paths


def run(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """One child process: wall and CPU seconds."""
    return timed_child(command, env, ok=(0, 1))  # check exits 1 when it finds degenerated layers


def environment(src: str, bytecode: str, scratch: Path, name: str) -> dict[str, str]:
    """The children's environment for one version (see the module doc for the two bytecode modes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if bytecode == "cached":
        return {**env, "PYTHONPATH": src, "PYTHONPYCACHEPREFIX": str(scratch / f"pycache-{name}")}
    copy = scratch / f"src-{name}"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return {**env, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}


def imports_torch(path: Path, env: dict[str, str]) -> list[str]:
    """Modules named torch* that the prune command imports (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "filterdb", "prune", str(path), "--json"],
                          env=env, capture_output=True, text=True)
    names = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [n for n in names if n == "torch" or n.startswith(("torch.", "torchvision", "torch_pruning"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--src", default="src", help="the version measured (PYTHONPATH)")
    parser.add_argument("--base-src", default=None, help="another version's src, run interleaved for a ratio")
    parser.add_argument("--bytecode", choices=["cached", "source"], default="cached",
                        help="cached: each version's own bytecode cache, warmed up first; source: compile every run")
    parser.add_argument("--out", default="bench/results/prune_speed")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-prune-speed-"))
    paths = write_models(CACHE)
    versions = {"this": str(Path(args.src).resolve())}
    if args.base_src:
        versions["base"] = str(Path(args.base_src).resolve())
    commands = {}
    for fmt, path in paths.items():
        commands[f"prune {fmt}"] = [sys.executable, "-m", "filterdb", "prune", str(path), "--target", "0.5", "--json"]
        commands[f"check {fmt}"] = [sys.executable, "-m", "filterdb", "check", str(path)]
    commands["import filterdb.prune"] = [sys.executable, "-c", "import filterdb.prune"]
    commands["python -c pass"] = [sys.executable, "-c", "pass"]
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                       text=True).stdout.strip(),
                              "file_mb": {fmt: round(p.stat().st_size / 1e6, 1) for fmt, p in paths.items()},
                              "versions": versions, "bytecode": args.bytecode}
    envs = {version: environment(src, args.bytecode, scratch, version) for version, src in versions.items()}
    if args.bytecode == "cached":  # one untimed round writes each version's bytecode cache
        for command in commands.values():
            for env in envs.values():
                run(command, env)
    result["load_before"] = uptime()
    samples: dict[str, dict[str, list[dict[str, float]]]] = {v: {c: [] for c in commands} for v in versions}
    for _ in range(args.repeat):  # interleaved: every command and version sees the same load
        for name, command in commands.items():
            for version, env in envs.items():
                samples[version][name].append(run(command, env))
    result["load_after"] = uptime()
    result["torch_imported_by_prune"] = {v: imports_torch(paths["safetensors"], env) for v, env in envs.items()}
    shutil.rmtree(scratch, ignore_errors=True)
    result["median"] = summary(samples, median)
    result["best"] = summary(samples, min)
    result["samples"] = samples
    save(result, Path(args.out), markdown(result, args.repeat))


def markdown(result: dict[str, Any], repeat: int) -> str:
    versions = list(result["versions"])
    head = " | ".join(f"{v} wall s (best) | {v} CPU s" for v in versions)
    ratio = " | wall this/base | CPU this/base" if "base" in versions else ""
    lines = ["# `filterdb prune` on ResNet-50, whole process, beside `filterdb check`", "",
             f"machine: {result['machine']}; commit {result['commit']}; files {result['file_mb']} MB; "
             f"median (and best) of {repeat} interleaved runs; bytecode: {result.get('bytecode', 'cached')}; "
             f"versions: {result['versions']}", "",
             f"load before: `{result['load_before']}`", "", f"load after: `{result['load_after']}`", "",
             f"| command | {head}{ratio} |", "|---|" + "---|" * (2 * len(versions) + (2 if ratio else 0))]
    for command in result["median"][versions[0]]:
        median, best = result["median"], result.get("best", result["median"])
        cells = " | ".join(f"{median[v][command]['wall']:.2f} ({best[v][command]['wall']:.2f}) | "
                           f"{median[v][command]['cpu']:.2f}" for v in versions)
        if ratio:
            cells += "".join(f" | {median['this'][command][k] / max(median['base'][command][k], 1e-9):.2f}"
                             for k in ("wall", "cpu"))
        lines.append(f"| `{command}` | {cells} |")
    lines += ["", f"torch imported by the prune command: {result['torch_imported_by_prune']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
