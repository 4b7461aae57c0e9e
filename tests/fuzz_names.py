"""Hostile names, made by code: terminal escape sequences, bidi overrides, rich markup and spreadsheet formulas
in layer, producer, model and metadata names (issue 17, items 6, 7 and 11).

Shared by ``tests/test_fuzz_names.py`` (a bounded slice in CI) and ``bench/fuzz_names.py`` (the campaign by
hand). The names reach filterdb through real files: ONNX models written with ``onnx.helper`` (layer names =
the Conv nodes' weight initialisers, producer = ``producer_name``) and a JSON manifest (model and metadata
names), ingested into a real store. :func:`terminal_problems` says what of a command's output a terminal would
obey instead of showing.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np

# (what, name): one of each kind the campaign found, and the markup and formula cases.
FIXED: tuple[tuple[str, str], ...] = (
    ("osc-title", "conv\x1b]0;owned\x07"),
    ("osc-title-st", "conv\x1b]2;owned\x1b\\"),
    ("osc8-link", "\x1b]8;;https://example.invalid/\x1b\\click\x1b]8;;\x1b\\"),
    ("clear-screen", "\x1b[2J\x1b[Hconv"),
    ("sgr-hide", "conv\x1b[8mhidden\x1b[0m"),
    ("c1-csi", "conv\x9b2J"),
    ("c1-osc", "conv\x9d0;owned\x9c"),
    ("bel-bs-cr", "random\x08\x08\x08\x08\x08\x08ok\rok\x07"),
    ("newline", "conv\nverdict: ok"),
    ("nul-del", "conv\x00\x7f"),
    ("bidi-rlo", "conv\u202eko\u202c"),
    ("bidi-isolate", "\u2067conv\u2069\u2066x\u2069"),
    ("bidi-marks", "\u200fconv\u200e\u061c"),
    ("line-separator", "conv\u2028\u2029"),
    ("markup-close", "[/bold]x"),
    ("markup-link", "[link=https://example.invalid/]y[/link]"),
    ("markup-style", "[bold red on white]z"),
    ("markup-bare", "[/]"),
    ("emoji-code", ":warning: conv"),
    ("csv-equals", '=HYPERLINK("https://example.invalid/","x")'),
    ("csv-plus", "+1+cmd|' /C calc'!A0"),
    ("csv-minus", "-2+3"),
    ("csv-at", "@SUM(A1:A2)"),
    ("csv-tab", "\t=1+1"),
    ("csv-cr", "\r=1+1"),
)

_PIECES = [name for _, name in FIXED] + ["conv", "layer/3", "a" * 40, "ü", "日本", "\\x1b", "[", "]", ";", "/"]

# What a terminal obeys instead of showing (the set of cli/_table.py, written out again here as the
# independent reference): C0 but \n, DEL, C1, bidi controls, Unicode line breaks.
_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SGR = re.compile("\x1b\\[[0-9;]*m")  # rich's own colours, in a real terminal
# rich's own cursor control around a live display (the spinner): hide/show the cursor, erase the line, move up
_LIVE = re.compile("\x1b\\[\\?25[lh]|\x1b\\[2K|\x1b\\[[0-9]*[AG]|\r")


def hostile_names(seed: int, n: int) -> list[tuple[str, str]]:
    """The fixed cases, then ``n`` seeded mixtures of 2 - 4 pieces: the same for the same seed."""
    rng = random.Random(seed)
    mixed = [(f"mix-{seed}-{i}", "".join(rng.choice(_PIECES) for _ in range(rng.randint(2, 4)))) for i in range(n)]
    return list(FIXED) + mixed


def write_onnx(path: Path, layer_names: list[str], producer: str, seed: int = 0) -> Path:
    """A real ONNX model: one 8x8x3x3 Conv per name (a chain), its weight initialiser named ``name``."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    previous = "x"
    for i, name in enumerate(layer_names):
        weight = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.1
        inits.append(numpy_helper.from_array(weight, name))
        output = f"y{i}"
        nodes.append(helper.make_node("Conv", [previous, name], [output], name=name, pads=[1, 1, 1, 1]))
        previous = output
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=producer,
                              producer_version=producer[:8])
    save(model, str(path))
    return path


def build_store(root: Path, names: list[tuple[str, str]], per_model: int = 8) -> tuple[Path, list[Path]]:
    """A store of ONNX models whose layer, producer, model and metadata names are ``names`` (``per_model``
    layers per file), ingested from real files with a JSON manifest. Returns the store and the files."""
    from filterdb.ingest import ingest

    folder = root / "models"
    folder.mkdir(parents=True, exist_ok=True)
    rows, files = [], []
    values = [name for _, name in names]
    for k in range(0, len(values), per_model):
        chunk = values[k:k + per_model]
        # layer names must differ within a model: a suffix keeps each hostile name whole at its start
        layers = [f"{name}{'' if chunk.index(name) == j else f'#{j}'}" for j, name in enumerate(chunk)]
        path = write_onnx(folder / f"m{k // per_model}.onnx", layers, producer=chunk[0], seed=k)
        files.append(path)
        rows.append({"file": path.name, "name": chunk[-1] + f"#{k}", "task": chunk[1 % len(chunk)],
                     "visual_category": chunk[2 % len(chunk)], "training_dataset": "digits",
                     "architecture": chunk[0]})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(rows))
    store = root / "hostile.fdb"
    ingest(store, [folder], manifest=manifest, create=True, jobs=1)
    return store, files


def terminal_problems(text: str, *, tty: bool = False) -> list[str]:
    """The characters and sequences of ``text`` that a terminal would obey instead of show (empty: safe).

    ``tty``: the text came from a real terminal, where rich's own colour codes (SGR) and spinner control are
    expected: they are removed first; every other escape sequence (OSC, clear-screen, C1) still counts."""
    if tty:
        text = _LIVE.sub("", _SGR.sub("", text.replace("\r\n", "\n")))
    return [f"{m.group()!r} at {m.start()}: {text[max(0, m.start() - 20):m.start() + 20]!r}"
            for m in _RAW.finditer(text)][:5]


def table_commands(store: Path, model: Path) -> list[list[str]]:
    """Every command that prints stored or file names, as argv lists (without the program name)."""
    s, m = str(store), str(model)
    return [
        ["check", m], ["check", m, "--only-flagged"], ["check", m, "--csv"], ["check", m, "--json"],
        ["inspect", m], ["inspect", m, "--json"],
        ["models", s], ["models", s, "--all-columns"], ["models", s, "--format", "csv"],
        ["layers", s], ["layers", s, "--format", "csv"], ["layers", s, "--format", "json"],
        ["sql", s, "SELECT model, layer, producer FROM layers"], ["sql", s, "SELECT * FROM models"],
        ["stats", s], ["analyze", s, "degeneration", "--by", "task"],
    ]


_BIDI_AND_BREAKS = "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def shown_form(name: str) -> str:
    """How a name must look on the terminal, spelled out character by character (the reference the
    tests hold cli/_table.py's ``safe_text`` to): controls as ``\\t \\n \\r`` or ``\\xNN``, bidi and line breaks
    as ``\\uNNNN``, everything else (markup brackets, emoji codes, formulas) as written."""
    import unicodedata

    out = []
    for char in name:
        code = ord(char)
        if char in "\t\n\r":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[char])
        elif unicodedata.category(char) == "Cc":
            out.append(f"\\x{code:02x}")
        elif char in _BIDI_AND_BREAKS:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def run_in_pty(argv: list[str], columns: int = 80, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``python -m filterdb ARGV`` (or ``python -c CODE`` when ARGV is ``["-c", CODE]``) in a real
    pseudo-terminal of ``columns`` columns; its output as text (rich's colours included: it sees a terminal)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    child_env = {**(env or os.environ), "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    child_env.pop("NO_COLOR", None)
    command = [sys.executable, *(argv if argv[:1] == ["-c"] else ["-m", "filterdb", *argv])]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave,
                            env=child_env, close_fds=True)
    os.close(slave)
    chunks = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return b"".join(chunks).decode("utf-8", errors="replace")


def plain(text: str) -> str:
    """Terminal output without rich's colour and cursor codes, with \\n line ends."""
    return re.sub("\x1b\\[\\?25[lh]|\x1b\\[2K|\x1b\\[[0-9]*[AG]", "", _SGR.sub("", text)).replace("\r\n", "\n")
