"""`filterdb report STORE --json` (the whole study) against a bare store pass, side by side, in fresh processes.

For each repeat, alternating so that both see the same machine load:

- ``report``: ``python -m filterdb report STORE --json`` in a child process: wall seconds, peak RSS of that
  process (``wait4``'s ``ru_maxrss``), CPU seconds, and the study's own time per phase (``timings``);
- ``bare``: one Gram pass over the same filters in a child process (the plan, then ``run_pass``), timed twice in
  that process: the first pass opens every shard (its Arrow footer checked against the catalog record the task
  carries), the second finds the shard layouts cached; the plan's catalog query is timed on its own.

The load average is recorded before each run (the development machine is shared). Usage::

    nice python bench/bench_study.py /work/bigstore/zoo1400M --repeats 2 --out bench/results/study_1400M.json
    nice python bench/bench_study.py phases STORE [--src OTHER/src ...]  # the report's phases, code trees side by side
    nice python bench/bench_study.py cpu STORE     # the store pass vs the kernel in memory, per CPU-second
    nice python bench/bench_study.py order STORE 2 # the report, histogram pass forward vs backward (cold store)

``phases`` runs ``filterdb report STORE --json`` once per code tree (``--src``: a ``src`` folder, e.g. main's;
this tree's own always), alternating, ``--repeats`` times: per phase seconds, wall, user and system CPU
seconds, peak RSS and the load before each run. System CPU is the kernel's share (page-cache reads, page
faults): on a store larger than the page cache it is what separates the report from the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _env(src: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src or ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


_LAST_USAGE: dict[str, float] = {}


def _run(argv: list[str], src: Path | None = None) -> tuple[float, float, float, str, int]:
    """(wall s, peak RSS MB, CPU s, stdout, exit code) of a child process (user and system CPU apart in
    ``_LAST_USAGE``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(src), text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    _LAST_USAGE.update(user_s=usage.ru_utime, sys_s=usage.ru_stime)
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out, proc.returncode


def report(store: str, src: Path | None = None) -> dict:
    wall, rss, cpu, out, code = _run([sys.executable, "-m", "filterdb", "report", store, "--json", "--no-progress"],
                                     src)
    data = json.loads(out) if out.strip() else {}
    return {"wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu, **_LAST_USAGE, "exit_code": code,
            "timings": data.get("timings"), "errors": data.get("errors"), "n_filters": data.get("n_filters"),
            "axes": [a["axis"] for a in data.get("axes", [])]}


def phases(argv: list[str]) -> dict:
    """The report's phases, for this tree and each ``--src``, alternating (see the module's docstring)."""
    ap = argparse.ArgumentParser(prog="bench_study.py phases")
    ap.add_argument("store")
    ap.add_argument("--src", action="append", default=[], help="another code tree's src folder (e.g. main's)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--evict", action="store_true", help="drop the store's files from the page cache before each "
                    "run (every run starts cold; nothing is written)")
    ap.add_argument("--others-first", action="store_true", help="run the --src trees before this one")
    a = ap.parse_args(argv)
    trees = [ROOT / "src", *[Path(x).resolve() for x in a.src]]
    if a.others_first:
        trees = trees[1:] + trees[:1]
    runs = []
    for r in range(a.repeats):
        for src in trees:
            if a.evict:
                evict(a.store)
            load = os.getloadavg()
            result = report(a.store, src)
            result.update(src=str(src), repeat=r, load_before=load[0], load_5min_before=load[1])
            result["load_after"] = os.getloadavg()[0]
            runs.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    out = {"store": a.store, "cpus": os.cpu_count(), "runs": runs}
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


def bare(store: str) -> dict:
    wall, rss, cpu, out, code = _run([sys.executable, __file__, "_bare", store])
    return {**json.loads(out), "wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu, **_LAST_USAGE, "exit_code": code}


def _bare_child(store_path: str) -> None:
    from filterdb.analysis import Execution, Selection
    from filterdb.analysis._run import run_pass
    from filterdb.analysis._selection import plan_for
    from filterdb.analysis.kernels import PassSpec
    from filterdb.store import open_store

    store = open_store(store_path)
    execution = Execution()
    t0 = time.perf_counter()
    plan = plan_for(store, Selection())
    t_plan = time.perf_counter() - t0
    engine = execution.make_engine()
    spec = PassSpec(d=plan.d, kernel=execution.kernel_name())
    passes, cpu = [], []
    for backward in (False, False, True):
        t1, c1 = time.perf_counter(), os.times()
        total = run_pass(plan, spec, engine, execution.task_rows, backward=backward)
        passes.append(time.perf_counter() - t1)
        c2 = os.times()
        cpu.append({"user_s": c2.user - c1.user, "sys_s": c2.system - c1.system})
    # third: backward after a forward pass, as the study's histogram pass (a store larger than the page cache
    # finds the shards the pass before read last still cached)
    print(json.dumps({"plan_s": t_plan, "first_pass_s": passes[0], "second_pass_s": passes[1],
                      "backward_pass_s": passes[2], "pass_cpu": cpu, "n": int(total.n),
                      "filters_per_s": total.n / min(passes)}))


def _order_child(mode: str, store: str) -> None:
    """``filterdb report STORE --json`` with the study's histogram pass read ``mode`` ("forward" or "backward")."""
    import runpy

    import filterdb.analysis._study_run as study_run

    real = study_run.run_pass

    def run_pass(plan: Any, spec: Any, engine: Any, task_rows: int, backward: bool = False) -> Any:
        return real(plan, spec, engine, task_rows, backward=backward and mode == "backward")

    study_run.run_pass = run_pass  # type: ignore[assignment]
    sys.argv = ["filterdb", "report", store, "--json", "--no-progress"]
    runpy.run_module("filterdb", run_name="__main__")


def order(store: str, repeats: int) -> dict:
    """The report with its histogram pass forward and backward (the same code otherwise), alternating, each
    from a cold store: what the backward order alone changes."""
    runs = []
    for r in range(repeats):
        for mode in (("backward", "forward") if r % 2 == 0 else ("forward", "backward")):
            evict(store)
            load = os.getloadavg()[0]
            wall, rss, cpu, out, code = _run([sys.executable, __file__, "_order", mode, store])
            data = json.loads(out) if out.strip() else {}
            result = {"mode": mode, "repeat": r, "wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu, **_LAST_USAGE,
                      "exit_code": code, "timings": data.get("timings"), "load_before": load,
                      "load_after": os.getloadavg()[0]}
            runs.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    return {"store": store, "runs": runs}


def evict(store: str) -> None:
    """Drop the store's shard files from the page cache (``posix_fadvise(DONTNEED)``: a hint, nothing is
    written), so that every run starts from a cold store whatever ran before it."""
    for folder, _, files in os.walk(Path(store) / "shards"):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cpu_ratio(store_path: str, repeats: int = 3) -> dict:
    """Filters per CPU-second of one thread: the store pass (a Gram pass over every filter, the pass of the
    study's first phase) against the same kernel over float16 rows in memory, interleaved in one process. CPU
    time, not wall time, so that a loaded machine compares like with like. Store-pass variants: shard layouts
    cached (the steady state), not cached (a process's first pass: every shard's head and tail compared with
    the bytes its catalog record predicts, store/_layout.py), not cached with that check off (every shard's
    Arrow footer parsed, the open before it), and read-ahead off."""
    import numpy as np

    from filterdb.analysis import Selection
    from filterdb.analysis._run import run_pass
    from filterdb.analysis._selection import plan_for
    from filterdb.analysis.kernels import PassSpec, run_rows
    from filterdb.engine import LocalEngine
    from filterdb.store import _reading, open_store

    store = open_store(store_path)
    engine = LocalEngine(1)
    spec = PassSpec(d=9)
    t0 = time.process_time()
    plan = plan_for(store, Selection())
    plan_cpu = time.process_time() - t0
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((20_000_000, 9)) * 0.1).astype(np.float16)
    run_rows(x[:1000], np.array([0]), np.array([1000]), np.array([0]), spec, 1)  # compile / load the kernel
    run_pass(plan, spec, engine, 4_000_000)  # page cache and layouts warm
    names = ("store", "store_layouts_cold", "store_layouts_cold_full_check", "store_readahead_off")
    out: dict[str, list[float]] = {"kernel": [], **{n: [] for n in names}}
    budget = _reading.READAHEAD_BYTES
    predicted = _reading.predicted_layout
    split: dict[str, list[dict[str, float]]] = {}  # user and system CPU ns per filter

    def note(name: str, a: Any, b: Any, n: int) -> None:
        split.setdefault(name, []).append({"user_ns": (b.user - a.user) / n * 1e9,
                                           "sys_ns": (b.system - a.system) / n * 1e9})

    for _ in range(repeats):
        t, a = time.process_time(), os.times()
        run_rows(x, np.array([0]), np.array([len(x)]), np.array([0]), spec, 1)
        out["kernel"].append(len(x) / (time.process_time() - t))
        note("kernel", a, os.times(), len(x))
        for name in names:
            if name.startswith("store_layouts_cold"):
                _reading._LAYOUTS.clear()
            if name == "store_layouts_cold_full_check":  # the open before store/_layout.py: every footer parsed
                _reading.predicted_layout = lambda *a, **k: None  # type: ignore[assignment]
            _reading.READAHEAD_BYTES = 0 if name == "store_readahead_off" else budget
            t, a = time.process_time(), os.times()
            total = run_pass(plan, spec, engine, 4_000_000)
            out[name].append(total.n / (time.process_time() - t))
            note(name, a, os.times(), total.n)
            _reading.predicted_layout = predicted
        _reading.READAHEAD_BYTES = budget
    best = {k: max(v) for k, v in out.items()}
    return {"filters_per_cpu_s": best, "vs_kernel": {k: v / best["kernel"] for k, v in best.items()},
            "plan_cpu_s": plan_cpu, "runs": out, "cpu_ns_per_filter": split, "load": os.getloadavg()[0]}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_bare":
        _bare_child(sys.argv[2])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "cpu":
        result = cpu_ratio(sys.argv[2])
        print(json.dumps(result, indent=1))
        if len(sys.argv) > 4 and sys.argv[3] == "--out":
            Path(sys.argv[4]).write_text(json.dumps(result, indent=1) + "\n")
        return
    if len(sys.argv) > 3 and sys.argv[1] == "_order":
        _order_child(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "order":
        repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 2
        print(json.dumps(order(sys.argv[2], repeats), indent=1))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "phases":
        print(json.dumps(phases(sys.argv[2:]), indent=1))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--evict", action="store_true", help="drop the store's files from the page cache before each "
                    "run (nothing is written)")
    a = ap.parse_args()
    runs = []
    for r in range(a.repeats):
        for name, fn in (("bare", bare), ("report", report)):
            if a.evict:
                evict(a.store)
            load = os.getloadavg()[0]
            result = fn(a.store)
            result.update(kind=name, repeat=r, load_before=load)
            runs.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    best_report = min((x for x in runs if x["kind"] == "report"), key=lambda x: x["wall_s"])
    best_bare = min((x for x in runs if x["kind"] == "bare"), key=lambda x: x["second_pass_s"])
    summary = {
        "store": a.store, "cpus": os.cpu_count(), "runs": runs,
        "report_wall_s": best_report["wall_s"], "report_peak_rss_mb": best_report["peak_rss_mb"],
        "report_timings": best_report["timings"],
        "bare_pass_s": best_bare["second_pass_s"], "bare_first_pass_s": best_bare["first_pass_s"],
        "bare_plan_s": best_bare["plan_s"], "bare_backward_pass_s": best_bare.get("backward_pass_s"),
        "report_over_bare_pass": best_report["wall_s"] / best_bare["second_pass_s"],
        "phase_over_bare_pass": {k: v / best_bare["second_pass_s"] for k, v in (best_report["timings"] or {}).items()},
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
