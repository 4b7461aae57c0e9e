"""What the benches that compare versions side by side share: the load line written next to every number, one
timed child process (wall and CPU seconds), the medians and bests of repeated runs, and the two result files."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def timed_child(command: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    """Run one child process: its wall seconds and CPU seconds (user + sys, from the children's rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(command)[:300]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def summary(samples: dict[str, dict[str, list[dict[str, float]]]], how: Callable[[Any], float]) -> dict[str, Any]:
    """``how`` (statistics.median, min) of wall and CPU seconds per version and case, rounded to ms."""
    return {v: {case: {k: round(how(s[k] for s in runs), 3) for k in ("wall", "cpu")} for case, runs in cases.items()}
            for v, cases in samples.items()}


def median(values: Any) -> float:
    return statistics.median(list(values))


def save(result: dict[str, Any], out: Path, markdown: str) -> None:
    """OUT.json (every number) and OUT.md (the table), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
