"""Overhead of filterdb.Monitor on a training loop: ResNet-18 (torchvision, random init) on small random images.

Run by hand (not by the tests): ``.venv/bin/python bench/bench_monitor.py [--steps 400] [--device cpu]``.
Measures, side by side in one run:

- step time without and with the monitor at its defaults (``every=100``, ``max_overhead=0.01``): the
  same model and optimiser alternate blocks of ``--block`` steps plain and monitored, so that a change in
  machine load hits both arms alike; the monitored arm's time includes its due evaluations, and the
  one-time start and closing evaluations are reported apart (they amortise over a real run);
- evaluations made and skipped by the budget, and the time of one evaluation;
- the log written per evaluation (bytes per event = all layer records of one evaluation);
- peak memory: each arm once more in a fresh process, peak RSS (CPU) or peak CUDA memory.

Prints a table and writes bench/results/monitor.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup(device: str, batch: int, size: int):  # noqa: ANN201
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return model, step


def timed(step, n: int, monitor=None) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(n):
        step()
        if monitor is not None:
            monitor.step()
    return time.perf_counter() - start


def side_by_side(args: argparse.Namespace) -> dict:
    import filterdb

    model, step = setup(args.device, args.batch, args.size)
    timed(step, 5)  # warm-up: allocator, kernels
    log_dir = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    plain = monitored = 0.0
    n_plain = n_monitored = 0
    start = time.perf_counter()
    monitor = filterdb.Monitor(model, log_dir=log_dir)  # defaults: every=100, max_overhead=0.01
    first = time.perf_counter() - start  # the start evaluation (and the torch.fx trace): once per run
    while n_monitored < args.steps:
        plain += timed(step, args.block)
        n_plain += args.block
        monitored += timed(step, args.block, monitor)
        n_monitored += args.block
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained net reads "random": the close-time rule says so
        monitor.close()
    last = time.perf_counter() - start  # the closing evaluation: once per run, like the start
    lines = monitor.log_path.read_text().splitlines()
    events: dict[int, int] = {}
    for line in lines:
        record = json.loads(line)
        if "alert" not in record:
            events[record["step"]] = events.get(record["step"], 0) + len(line) + 1
    return {
        "steps": n_monitored, "plain_s_per_step": plain / n_plain, "monitored_s_per_step": monitored / n_monitored,
        "overhead": monitored / n_monitored / (plain / n_plain) - 1.0, "first_s": first, "last_s": last,
        "overhead_with_start": (monitored + first + last) / n_monitored / (plain / n_plain) - 1.0,
        "evaluations": len(events), "skipped": monitor.skipped, "eval_s": monitor.seconds / max(len(events), 1),
        "event_bytes_max": max(events.values()), "layers": len(monitor.last_report.layers),
    }


def peak_memory(args: argparse.Namespace, arm: str) -> float:
    """Peak memory (MiB) of one arm in a fresh process."""
    code = f"""
import sys, resource, warnings, tempfile
sys.path.insert(0, {str(ROOT / 'bench')!r}); sys.path.insert(0, {str(ROOT / 'src')!r})
import torch, filterdb
from bench_monitor import setup, timed
if {args.threads!r}:
    torch.set_num_threads({args.threads!r})
model, step = setup({args.device!r}, {args.batch}, {args.size})
monitor = None
if {arm == 'monitored'}:
    monitor = filterdb.Monitor(model, every=10, log_dir=tempfile.mkdtemp(), max_overhead=None)
timed(step, {args.memory_steps}, monitor)
if monitor is not None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor.close()
if {args.device!r}.startswith("cuda"):
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="monitored steps (and as many plain ones)")
    parser.add_argument("--block", type=int, default=50, help="steps per alternating block")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-steps", type=int, default=200,
                        help="steps of each memory run (the monitored one evaluates every 10 steps, no budget)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = side_by_side(args)
    print(json.dumps(result), flush=True)  # the timing, before the slower memory runs
    memory = {arm: peak_memory(args, arm) for arm in ("plain", "monitored")}
    unit = "peak CUDA memory" if args.device.startswith("cuda") else "peak RSS"
    rows = [
        ("device", f"{args.device} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads)"),
        ("model / input", f"ResNet-18 random init, {result['layers']} conv layers, batch {args.batch} × 3 × "
                          f"{args.size} × {args.size}, SGD"),
        ("steps per arm", f"{result['steps']} (alternating blocks of {args.block})"),
        ("step time, plain", f"{result['plain_s_per_step'] * 1e3:.1f} ms"),
        ("step time, with Monitor (defaults)", f"{result['monitored_s_per_step'] * 1e3:.1f} ms"),
        ("overhead while training (steps + due evaluations)", f"{result['overhead']:+.2%}"),
        ("start evaluation (torch.fx trace + check) / closing one",
         f"{result['first_s']:.1f} s / {result['last_s']:.1f} s"),
        (f"overhead of this {result['steps']}-step run, start and close included",
         f"{result['overhead_with_start']:+.2%}"),
        ("evaluations made / skipped by the budget", f"{result['evaluations']} / {result['skipped']}"),
        ("one evaluation", f"{result['eval_s'] * 1e3:.0f} ms"),
        ("log per evaluation (all layers)", f"{result['event_bytes_max'] / 1024:.1f} KB"),
        (f"{unit}, plain / monitored ({args.memory_steps} steps, every=10, no budget)",
         f"{memory['plain']:.0f} / {memory['monitored']:.0f} MiB ({memory['monitored'] / memory['plain'] - 1:+.1%})"),
    ]
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    print(text)
    out = ROOT / "bench" / "results" / "monitor.md"
    out.write_text("# bench/bench_monitor.py\n\n```\n" + " ".join(sys.argv) + "\n\n" + text + "\n```\n")


if __name__ == "__main__":
    main()
