"""Hostile monitor logs (``filterdb monitor LOG``), made by code: the crafted records of issue 17 and seeded
mutations of a valid log.

Shared by ``tests/test_fuzz_monitor_log.py`` (a bounded slice in CI) and ``bench/fuzz_monitor_log.py`` (a long
campaign by hand). Every log is generated inside a temporary folder; nothing hostile is kept on disk.

A case runs what ``filterdb monitor LOG --json --html PAGE`` runs, in this process: :func:`read_log`, the
summary, the JSON of the alerts and (with matplotlib) the HTML page with its figures. The outcome is "ok",
"refused" (a :class:`~filterdb.errors.FilterDBError`, as the CLI prints in one line) or "failed" (anything
else: the CLI would print "unexpected ..."), with the Python heap's peak during the case (tracemalloc).
"""

from __future__ import annotations

import json
import random
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# ------------------------------------------------------------------------------------------- a valid log

LAYERS = ("features.0", "features.3", "features.6", "classifier.conv")
METRICS = ("sparsity", "variance_entropy_norm", "variance_entropy_clean_norm", "orthogonality", "norm_l2_std",
           "neighbour_corr", "variance_entropy", "n_nonfinite", "conv_depth_norm")


def _layer_record(rng: random.Random, name: str, step: int, epoch: int) -> dict[str, object]:
    record: dict[str, object] = {"name": name, "kind": "conv", "kernel": [3, 3], "n_filters": 576, "step": step,
                                 "epoch": epoch}
    for metric in METRICS:
        record[metric] = None if rng.random() < 0.05 else round(rng.uniform(0.0, 1.2), 6)
    record["n_nonfinite"] = 0
    record["verdicts"] = [{"kind": "sparse", "rule": "sparsity > 0.5"}] if rng.random() < 0.2 else []
    return record


def _alert_record(name: str, step: int, epoch: int) -> dict[str, object]:
    return {"alert": {"kind": "sparse", "layer": name, "rule": "sparsity > 0.5", "values": {"sparsity": 0.62},
                      "message": f"{name}: 62 % of the filters are sparse"}, "step": step, "epoch": epoch}


def valid_log(seed: int = 0, n_steps: int = 5) -> bytes:
    """A log as filterdb.Monitor writes it: one line per layer and evaluation, an alert now and then."""
    rng = random.Random(seed)
    lines = []
    for step_index in range(n_steps):
        step = 100 * step_index
        for name in LAYERS:
            lines.append(_layer_record(rng, name, step, step_index // 2))
        if step_index == n_steps - 1:
            lines.append(_alert_record(LAYERS[1], step, step_index // 2))
    return "".join(json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in lines).encode()


# ---------------------------------------------------------------------------------------- crafted records

def _with_metric(text: str) -> bytes:
    """A valid log with one more layer record whose sparsity is the raw JSON ``text``."""
    return valid_log() + f'{{"name":"features.0","step":900,"epoch":4,"sparsity":{text},"verdicts":[]}}\n'.encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _line(n_bytes: int) -> bytes:
    return b'{"name":"' + b"a" * n_bytes + b'","step":1}\n'


CRAFTED: dict[str, Callable[[], bytes]] = {
    "metric Infinity": lambda: _with_metric("Infinity"),
    "metric -Infinity": lambda: _with_metric("-Infinity"),
    "metric NaN token": lambda: _with_metric("NaN"),
    "metric 1e999": lambda: _with_metric("1e999"),
    "metric -1e400": lambda: _with_metric("-1e400"),
    "metric 400-digit int": lambda: _with_metric("1" + "0" * 400),
    "metric 5000-digit int": lambda: _with_metric("7" * 5000),
    "metric a string": lambda: _with_metric('"0.5"'),
    "metric a list": lambda: _with_metric("[0.5]"),
    "metric nested 100000": lambda: _with_metric(_nested(100_000)),
    "metric nested 40": lambda: _with_metric(_nested(40)),
    "alert values nested 500": lambda: valid_log() + json.dumps(
        {"alert": {"kind": "sparse", "layer": "features.0", "rule": "r", "values": {"v": json.loads(_nested(500))}},
         "step": 1}).encode() + b"\n",
    "alert values Infinity": lambda: valid_log() + b'{"alert":{"kind":"sparse","layer":"features.0","rule":"r",'
                                                   b'"values":{"sparsity":Infinity}},"step":1}\n',
    "alert without body": lambda: valid_log() + b'{"alert":null,"step":1}\n',
    "alert kind a number": lambda: valid_log() + b'{"alert":{"kind":1,"layer":"x","rule":"r"},"step":1}\n',
    "step 2**70": lambda: valid_log() + b'{"name":"x","step":1180591620717411303424}\n',
    "step negative": lambda: valid_log() + b'{"name":"x","step":-1}\n',
    "step a float": lambda: valid_log() + b'{"name":"x","step":1.5}\n',
    "step true": lambda: valid_log() + b'{"name":"x","step":true}\n',
    "epoch 2**80": lambda: valid_log() + b'{"name":"x","step":1,"epoch":1208925819614629174706176}\n',
    "name empty": lambda: valid_log() + b'{"name":"","step":1}\n',
    "name a list": lambda: valid_log() + b'{"name":["x"],"step":1}\n',
    "name with escapes": lambda: valid_log() + json.dumps(
        {"name": "\x1b]0;owned\x07\x1b[2J[/bold][link=file:///etc]x[/link]\u202e", "step": 1}).encode() + b"\n",
    "verdicts a dict": lambda: valid_log() + b'{"name":"x","step":1,"verdicts":{"kind":"sparse"}}\n',
    "verdicts numbers": lambda: valid_log() + b'{"name":"x","step":1,"verdicts":[1,2]}\n',
    "line 1 MiB + 1": lambda: valid_log() + _line((1 << 20) - 8),
    "line 64 MiB": lambda: valid_log() + _line(64 << 20),
    "line 64 MiB, no newline": lambda: valid_log() + _line(64 << 20)[:-1],
    "half-written last line": lambda: valid_log() + b'{"name":"features.0","st',
    "a JSON list": lambda: b"[1,2,3]\n",
    "a JSON string": lambda: b'"filterdb"\n',
    "no layer records": lambda: b'{"alert":{"kind":"sparse","layer":"x","rule":"r"},"step":1}\n',
    "empty": lambda: b"",
    "blank lines": lambda: b"\n \n\t\n",
    "binary": lambda: bytes(range(256)) * 64,
    "invalid UTF-8": lambda: valid_log() + b'{"name":"\xff\xfe","step":1}\n',
    "UTF-8 BOM": lambda: b"\xef\xbb\xbf" + valid_log(),
    "NUL bytes": lambda: valid_log().replace(b"features.0", b"feat\x00res.0", 1),
    "CR line ends": lambda: valid_log().replace(b"\n", b"\r"),
    "10,000 layers": lambda: "".join(f'{{"name":"l{i}","step":0,"sparsity":0.1}}\n' for i in range(10_000)).encode(),
    "duplicate keys": lambda: valid_log() + b'{"name":"x","step":1,"step":-5}\n',
}


# ------------------------------------------------------------------------------------------------ mutants

_TOKENS = [b"Infinity", b"-Infinity", b"NaN", b"1e999", b"null", b"true", b"[]", b"{}", b'"x"', b"-1",
           b"1" + b"0" * 400, b"[" * 2000, b"\x1b[2J", b"\xff", b"\n", b",", b":", b'"', b"\\"]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] = (out[i] + rng.randrange(1, 256)) % 256
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _insert_token(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + rng.choice(_TOKENS) + data[i:]


def _replace_value(data: bytes, rng: random.Random) -> bytes:
    """One value after a ``:`` replaced by a hostile token (keeps the line's JSON shape more often)."""
    colons = [i for i, b in enumerate(data) if b == ord(":")]
    if not colons:
        return _insert_token(data, rng)
    i = rng.choice(colons) + 1
    end = i
    while end < len(data) and data[end] not in b",}\n":
        end += 1
    return data[:i] + rng.choice(_TOKENS) + data[end:]


def _shuffle_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    rng.shuffle(lines)
    return b"".join(lines)


def _duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    line = rng.choice(lines)
    return b"".join(lines) + line * rng.randint(1, 50)


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip": _flip, "truncate": _truncate, "token": _insert_token, "value": _replace_value,
    "shuffle": _shuffle_lines, "duplicate": _duplicate_line,
}


def mutants(seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (name, bytes) mutants of valid logs, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        kind = list(MUTATORS)[k % len(MUTATORS)]
        data = valid_log(seed * 1000 + k)
        for _ in range(rng.randint(1, 3)):
            data = MUTATORS[kind](data, rng) if data else data
        out.append((f"{kind}-{seed}-{k}", data))
    return out


# ------------------------------------------------------------------------------------------------ running

@dataclass(frozen=True)
class Outcome:
    name: str
    outcome: str  # "ok", "refused" or "failed"
    detail: str  # the error line, or the exception type and message
    peak_mib: float  # Python heap peak during the case (numpy and pandas buffers included)


def run_case(name: str, data: bytes, folder: Path, *, html: bool = True) -> Outcome:
    """Read one log as ``filterdb monitor LOG --json --html PAGE`` does, in this process."""
    from filterdb.errors import FilterDBError
    from filterdb.monitor import read_log, summarize

    path = folder / "filterdb-monitor.jsonl"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        log = read_log(path)
        summary = summarize(log)
        json.dumps({"steps": log.steps, "layers": summary.to_dict("records"), "alerts": log.alerts})
        if html:
            from filterdb.monitor._html import write_monitor_html

            write_monitor_html(folder / "page.html", log)
        outcome, detail = "ok", ""
    except FilterDBError as e:
        outcome, detail = "refused", str(e).splitlines()[0] if str(e) else type(e).__name__
    except Exception as e:  # noqa: BLE001 - what the harness looks for: the CLI would print "unexpected ..."
        outcome, detail = "failed", f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        path.unlink(missing_ok=True)
    return Outcome(name, outcome, detail, peak / 2**20)


def html_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
