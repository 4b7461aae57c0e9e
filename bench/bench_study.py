"""`filterdb report STORE --json` (the whole study) against a bare store pass, side by side, in fresh processes.

For each repeat, alternating so that both see the same machine load:

- ``report``: ``python -m filterdb report STORE --json`` in a child process: wall seconds, peak RSS of that
  process (``wait4``'s ``ru_maxrss``), CPU seconds, and the study's own time per phase (``timings``);
- ``bare``: one Gram pass over the same filters in a child process (the plan, then ``run_pass``), timed twice in
  that process: the first pass opens every shard (its Arrow footer checked against the catalog record the task
  carries), the second finds the shard layouts cached; the plan's catalog query is timed on its own.

The load average is recorded before each run (the development machine is shared). Usage::

    nice python bench/bench_study.py /work/bigstore/zoo1400M --repeats 2 --out bench/results/study_1.4B.json
    nice python bench/bench_study.py cpu STORE     # the store pass vs the kernel in memory, per CPU-second
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(argv: list[str]) -> tuple[float, float, float, str, int]:
    """(wall s, peak RSS MB, CPU s, stdout, exit code) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(), text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out, proc.returncode


def report(store: str) -> dict:
    wall, rss, cpu, out, code = _run([sys.executable, "-m", "filterdb", "report", store, "--json", "--no-progress"])
    data = json.loads(out) if out.strip() else {}
    return {"wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu, "exit_code": code, "timings": data.get("timings"),
            "errors": data.get("errors"), "n_filters": data.get("n_filters"),
            "axes": [a["axis"] for a in data.get("axes", [])]}


def bare(store: str) -> dict:
    wall, rss, cpu, out, code = _run([sys.executable, __file__, "_bare", store])
    return {**json.loads(out), "wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu, "exit_code": code}


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
    passes = []
    for _ in range(2):
        t1 = time.perf_counter()
        total = run_pass(plan, spec, engine, execution.task_rows)
        passes.append(time.perf_counter() - t1)
    print(json.dumps({"plan_s": t_plan, "first_pass_s": passes[0], "second_pass_s": passes[1], "n": int(total.n),
                      "filters_per_s": total.n / min(passes)}))


def cpu_ratio(store_path: str, repeats: int = 3) -> dict:
    """Filters per CPU-second of one thread: the store pass (a Gram pass over every filter, the pass of the
    study's first phase) against the same kernel over float16 rows in memory, interleaved in one process. CPU
    time, not wall time, so that a loaded machine compares like with like. Store-pass variants: shard layouts
    cached (the steady state), not cached (every shard's Arrow footer parsed and checked again), and read-ahead
    off."""
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
    out: dict[str, list[float]] = {"kernel": [], "store": [], "store_layouts_cold": [], "store_readahead_off": []}
    budget = _reading.READAHEAD_BYTES
    for _ in range(repeats):
        t = time.process_time()
        run_rows(x, np.array([0]), np.array([len(x)]), np.array([0]), spec, 1)
        out["kernel"].append(len(x) / (time.process_time() - t))
        for name in ("store", "store_layouts_cold", "store_readahead_off"):
            if name == "store_layouts_cold":
                _reading._LAYOUTS.clear()
            _reading.READAHEAD_BYTES = 0 if name == "store_readahead_off" else budget
            t = time.process_time()
            total = run_pass(plan, spec, engine, 4_000_000)
            out[name].append(total.n / (time.process_time() - t))
        _reading.READAHEAD_BYTES = budget
    best = {k: max(v) for k, v in out.items()}
    return {"filters_per_cpu_s": best, "vs_kernel": {k: v / best["kernel"] for k, v in best.items()},
            "plan_cpu_s": plan_cpu, "runs": out, "load": os.getloadavg()[0]}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_bare":
        _bare_child(sys.argv[2])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "cpu":
        print(json.dumps(cpu_ratio(sys.argv[2]), indent=1))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    runs = []
    for r in range(a.repeats):
        for name, fn in (("bare", bare), ("report", report)):
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
        "bare_plan_s": best_bare["plan_s"],
        "report_over_bare_pass": best_report["wall_s"] / best_bare["second_pass_s"],
        "phase_over_bare_pass": {k: v / best_bare["second_pass_s"] for k, v in (best_report["timings"] or {}).items()},
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
