"""Every documented example of docs/lineage.md, docs/monitor.md and docs/analysis.md runs.

The fenced blocks are extracted from the documents here, so an edited example stays tested:

- Python blocks are exec'd in a folder that holds what they name (``zoo.fdb``: a store of six corpus models
  ingested with a manifest; ``a.onnx``, ``b.tflite``, ``my-model.onnx``: corpus files);
- ``$ filterdb ...`` lines of console blocks run through the CLI; bracketed options (``[--json]``) run
  once left out and once given;
- synopsis blocks (``filterdb analyze STORE pca [--where SQL ...]``) name only options that the command's
  ``--help`` lists;
- the printed output the docs show is compared where it does not depend on training's floating point.

A block preceded by ``<!-- not run: REASON -->`` is skipped (it needs a GPU, a network service or minutes);
:data:`NOT_RUN` lists them, so that a new skip is a visible change.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import inspect
import io
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from filterdb.cli import main

pytestmark = pytest.mark.corpus

DOCS = Path(__file__).resolve().parents[1] / "docs"
LINEAGE_MD, MONITOR_MD, ANALYSIS_MD = DOCS / "lineage.md", DOCS / "monitor.md", DOCS / "analysis.md"

# (document, first line of the block) -> the reason it is not run; test_not_run_blocks_are_listed keeps it exact
NOT_RUN = {
    ("analysis.md", 'r = drift("zoo.fdb", by="visual_category", basis="basis.npz", engine="tcp://10.0.0.1:8786")'):
        "needs a Dask scheduler at that address",
}

_BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]*?) -->[ \t]*\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```",
                    re.S | re.M)


@dataclass(frozen=True)
class Block:
    doc: str
    lang: str  # "" for a bare block
    body: str
    not_run: str | None  # the reason given in the document, or None

    @property
    def first_line(self) -> str:
        return self.body.strip().splitlines()[0]


def blocks(path: Path) -> list[Block]:
    return [Block(path.name, m["lang"], m["body"], m["why"]) for m in _BLOCK.finditer(path.read_text())]


def runnable(path: Path, lang: str) -> list[Block]:
    return [b for b in blocks(path) if b.lang == lang and b.not_run is None]


def command_lines(block: str) -> list[str]:
    """The ``$ filterdb ...`` lines of a console block, without the prompt and a trailing comment."""
    return [re.sub(r"\s+#\s.*$", "", line[2:].strip()) for line in block.splitlines() if line.startswith("$ filterdb ")]


def variants(line: str) -> list[list[str]]:
    """The command without its bracketed options, and with all of them."""
    bare = re.sub(r"\s*\[[^\]]*\]", "", line)
    full = re.sub(r"\[([^\]]*)\]", r"\1", line)
    return [shlex.split(v)[1:] for v in dict.fromkeys((bare, full))]


def run_cli(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 0, (argv, out, err)
    assert "error" not in err.lower(), (argv, err)
    return out


def words(text: str) -> str:
    """Text with all whitespace runs as one space: the CLI wraps long lines to the terminal's width."""
    return " ".join(text.split())


# -- the blocks are found, and the skipped ones are the listed ones ------------------------------------------

def test_examples_are_found():
    assert len(runnable(LINEAGE_MD, "console")) == 1 and len(runnable(LINEAGE_MD, "python")) == 1
    assert len(command_lines(runnable(LINEAGE_MD, "console")[0].body)) == 5
    assert len(runnable(ANALYSIS_MD, "python")) == 3
    assert len(runnable(MONITOR_MD, "python")) == 5  # worked example, signature, Lightning, Keras, snapshots


def test_not_run_blocks_are_listed():
    found = {(b.doc, b.first_line): b.not_run for p in (LINEAGE_MD, MONITOR_MD, ANALYSIS_MD) for b in blocks(p)
             if b.not_run is not None}
    assert found == NOT_RUN


# -- the folder the examples run in ----------------------------------------------------------------------------

ZOO = [  # corpus file, then the manifest's columns (a test zoo: two tasks, three visual categories)
    ("pnet.pt", "pnet", "Detection", "faces"),
    ("onet.pt", "onet", "Detection", "faces"),
    ("face_detection_short_range.tflite", "blazeface", "Detection", "faces"),
    ("ch_PP-OCRv4_det_infer.onnx", "ppocr-det", "Detection", "text"),
    ("emotion_model.hdf5", "fer-emotion", "Classification", "faces"),
    ("iris_landmark.tflite", "iris", "Classification", "eyes"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corpus_path):
    """zoo.fdb (with lineage fingerprints), and the files the examples name."""
    from filterdb.ingest import ingest

    root = tmp_path_factory.mktemp("docs")
    (root / "models").mkdir()
    rows = []
    for key, name, task, category in ZOO:
        shutil.copy(corpus_path(key), root / "models" / key)
        rows.append({"file": f"models/{key}", "Name": name, "Task": task, "Visual Category": category,
                     "Training-Dataset": "test"})
    with open(root / "zoo.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = ingest(root / "zoo.fdb", manifest=root / "zoo.csv", create=True)
    assert len(report.ingested) == len(ZOO) and not report.failed
    copies = {
        "pnet.pt": "pnet.pt", "mtcnn/pnet.lz4": "pnet.lz4", "fer/emotion_model.hdf5": "emotion_model.hdf5",
        "fer/emotion_model_quantized.tflite": "emotion_model_quantized.tflite",
        "a.onnx": "ch_PP-OCRv4_rec_infer.onnx", "b.tflite": "emotion_model_quantized.tflite",
        "my-model.onnx": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    }
    for name, key in copies.items():
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(corpus_path(key), root / name)
    return root


@pytest.fixture()
def in_folder(folder, monkeypatch):
    monkeypatch.chdir(folder)
    return folder


def _digits_pair(folder: Path) -> None:
    """digits.pt, a seeded CNN's state_dict, and digits-pruned.pt, its copy with half of conv3's filters
    (the smallest by L1 norm) set to zero."""
    torch = pytest.importorskip("torch")
    if (folder / "digits-pruned.pt").exists():
        return
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.Conv2d(16, 32, 3), torch.nn.Conv2d(32, 64, 3))
    torch.save(model.state_dict(), folder / "digits.pt")
    with torch.no_grad():
        w = model[2].weight
        norms = w.abs().sum(dim=(2, 3), keepdim=True)
        w.mul_(norms > norms.flatten().quantile(0.5))
    torch.save(model.state_dict(), folder / "digits-pruned.pt")


# -- docs/lineage.md -----------------------------------------------------------------------------------------

def test_lineage_md_command_lines(in_folder, capsys):
    block = runnable(LINEAGE_MD, "console")[0].body
    _digits_pair(in_folder)
    for line in command_lines(block):
        for argv in variants(line):
            out = run_cli(argv, capsys)
            if argv[0] == "compare":
                # the relation the document shows after this command line, first word of its output
                shown = block.split(line, 1)[1].split("\n", 2)[1]
                relation = json.loads(out)["relation"] if "--json" in argv else out.split()[0]
                expected = re.search(r'"relation": "([\w-]+)"', shown)[1] if shown.startswith("{") else shown.split()[0]
                assert relation == expected, (argv, out)
            if "--json" in argv:
                json.loads(out)  # one JSON document
    assert (in_folder / "families.html").stat().st_size > 0


def test_lineage_md_python(in_folder):
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(runnable(LINEAGE_MD, "python")[0].body, str(LINEAGE_MD), "exec"), namespace)  # noqa: S102
    assert namespace["result"].relation in ("identical", "same-weights", "derived", "unrelated")
    assert sorted(m for family in namespace["forest"].families for m in family) == sorted(z[1] for z in ZOO)
    assert '<h2 id="lineage">' in namespace["lineage_html"](namespace["forest"])  # the report's fragment


# -- docs/analysis.md ----------------------------------------------------------------------------------------

def test_analysis_md_python(in_folder):
    first, second, third = runnable(ANALYSIS_MD, "python")
    rng = np.random.default_rng(0)
    namespace: dict[str, object] = {"X": rng.normal(size=(500, 9))}
    exec(compile(first.body, str(ANALYSIS_MD), "exec"), namespace)  # noqa: S102 - our own documentation
    assert (in_folder / "basis.npz").exists() and (in_folder / "drift.json").exists()
    assert set(namespace["r"].groups) == {"faces", "eyes", "text"}
    assert set(namespace["paper"].groups) == {"Classification", "Detection"}
    exec(compile(second.body, str(ANALYSIS_MD), "exec"), namespace)  # noqa: S102
    assert set(namespace["r"].groups) == {"faces", "eyes"}  # the Classification models' categories
    from filterdb import open_store

    query = "SELECT sum(n_filters) AS n FROM layers WHERE kernel = '3x3' AND task = ?"
    classification = open_store("zoo.fdb").sql(query, ["Classification"])["n"][0]
    assert namespace["basis"].n_filters == classification  # every 3x3 filter of the Classification models
    deg = namespace["deg"]  # every 2-D kernel shape of the two Classification models, grouped by category
    assert sorted(deg.per_model["model"]) == ["fer-emotion", "iris"]
    assert set(deg.per_group[deg.by]) == {"faces", "eyes"}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(third.body, str(ANALYSIS_MD), "exec"), namespace)  # noqa: S102 - the study
    st, part = namespace["st"], namespace["part"]
    assert [a.axis for a in st.axes] == ["task", "visual_category"] and not st.errors
    assert set(st.axis("visual_category").groups) <= {"faces", "eyes", "text"}
    assert (in_folder / "study.json").exists() and "histogram pass:" in printed.getvalue()
    assert set(part.axis("visual_category").groups) == {"faces", "eyes"}


# -- docs/monitor.md -----------------------------------------------------------------------------------------

@pytest.fixture()
def one_torch_thread():
    """Tiny models train faster on one thread than on two shared with other jobs."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # 300 training steps of a tiny CNN: ~15-30 s
def test_monitor_md_worked_example_and_its_output(tmp_path, monkeypatch, capsys, one_torch_thread):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    example = runnable(MONITOR_MD, "python")[0]
    shown = [b for b in blocks(MONITOR_MD) if b.lang == ""]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.warns(Warning, match="conv3"):
        exec(compile(example.body, str(MONITOR_MD), "exec"), {})  # noqa: S102
    assert printed.getvalue() == shown[0].body  # "160 layer 'conv3': the layer is now 'sparse' ..."
    command = re.search(r"Then `(filterdb monitor [^`]+)` prints", MONITOR_MD.read_text())[1]
    out = words(run_cli(shlex.split(command)[1:], capsys))
    summary = shown[1].body.splitlines()
    assert words(summary[0]) in out  # log, number of evaluations, steps
    assert words(summary[-1]) in out  # the alert
    assert (tmp_path / "monitor.html").stat().st_size > 0


def test_monitor_md_signature_is_the_real_one():
    import filterdb

    block = next(b for b in runnable(MONITOR_MD, "python") if b.first_line.startswith("filterdb.Monitor("))
    documented = ast.parse(block.body.replace("filterdb.Monitor(", "def Monitor(", 1).rstrip() + ": pass").body[0]
    args = documented.args
    names = [a.arg for a in args.args] + [a.arg for a in args.kwonlyargs]
    defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults) + list(args.kw_defaults)
    real = [p for p in inspect.signature(filterdb.Monitor).parameters.values()]
    assert names == [p.name for p in real]
    assert [a.arg for a in args.kwonlyargs] == [p.name for p in real if p.kind is p.KEYWORD_ONLY]
    for default, parameter in zip(defaults, real):
        if default is None:
            assert parameter.default is inspect.Parameter.empty, parameter.name
        elif isinstance(default, ast.Call):  # AlertRules(), Thresholds(): the class's defaults
            assert type(parameter.default).__name__ == ast.unparse(default.func), parameter.name
            assert parameter.default == type(parameter.default)(), parameter.name
        else:
            assert parameter.default == ast.literal_eval(default), parameter.name


def test_monitor_md_lightning(tmp_path, monkeypatch):
    lightning = pytest.importorskip("lightning.pytorch")
    monkeypatch.chdir(tmp_path)
    block = next(b for b in runnable(MONITOR_MD, "python") if "lightning" in b.body)
    namespace: dict[str, object] = {"Trainer": lambda **kw: lightning.Trainer(logger=False, **kw)}
    exec(compile(block.body, str(MONITOR_MD), "exec"), namespace)  # noqa: S102
    monitors = [c for c in namespace["trainer"].callbacks if type(c).__name__ == "FilterMonitor"]
    assert len(monitors) == 1 and monitors[0].options.every == 200


@pytest.mark.filterwarnings("ignore::filterdb.monitor.MonitorAlert")  # an 8-filter layer after one epoch
def test_monitor_md_keras(tmp_path, monkeypatch):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # no TensorFlow needed: Keras 3 runs on torch
    keras = pytest.importorskip("keras")
    monkeypatch.chdir(tmp_path)
    block = next(b for b in runnable(MONITOR_MD, "python") if "integrations.keras" in b.body)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3), keras.layers.Conv2D(16, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 1)).astype("float32"), rng.integers(0, 2, 32)
    namespace = {"model": model, "x": x, "y": y, "keras": keras}
    exec(compile(block.body.replace("model.fit(x, y, ", "model.fit(x, y, verbose=0, "), str(MONITOR_MD), "exec"),
         namespace)  # noqa: S102
    assert (tmp_path / "logs" / "filterdb-monitor.jsonl").stat().st_size > 0
    with open(tmp_path / "epochs.csv", newline="") as fh:  # the CSVLogger listed after it recorded the scalars
        epochs = list(csv.DictReader(fh))
    assert len(epochs) == 10 and any(column.startswith("filterdb") for column in epochs[0]), list(epochs[0])


@pytest.mark.filterwarnings("ignore::filterdb.monitor.MonitorAlert")  # an untrained model
def test_monitor_md_snapshots_and_their_drift(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    block = next(b for b in runnable(MONITOR_MD, "python") if b.first_line.startswith("monitor = "))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.Conv2d(16, 32, 3))  # 528 3x3 filters
    namespace = {"model": model, "filterdb": __import__("filterdb")}
    exec(compile(block.body, str(MONITOR_MD), "exec"), namespace)  # noqa: S102
    with namespace["monitor"] as monitor:
        for step in range(500, 3501, 500):
            with torch.no_grad():
                model[0].weight.mul_(0.5)
            monitor.step(step)
            if monitor.last_step != step:  # skipped by max_overhead: a loop without training takes no time
                monitor.evaluate()
    # evaluations at steps 0, 500, ..., 3500: snapshots of the 1st, the 5th and the last
    assert monitor_steps(tmp_path / "runs.fdb") == [0, 2000, 3500]
    command = next(b for b in blocks(MONITOR_MD) if b.body.startswith("filterdb analyze runs.fdb")).body.strip()
    out = run_cli(shlex.split(command)[1:], capsys)
    assert all(str(step) in out for step in (2000, 3500)), out


def monitor_steps(store_path: Path) -> list[int]:
    from filterdb import open_store

    frame = open_store(store_path).sql("SELECT DISTINCT CAST(step AS INTEGER) AS s FROM models ORDER BY s")
    return [int(s) for s in frame["s"]]


def synopses(block: str) -> list[tuple[list[str], str]]:
    """(command, text) of each synopsis in a block: a ``filterdb CMD`` line with its indented continuation
    lines; a ``common:`` entry after ``filterdb analyze`` lines is checked against the subcommands it names."""
    logical: list[str] = []
    for line in block.splitlines():
        if line[:1].isspace() and logical:
            logical[-1] += " " + line.strip()
        else:
            logical.append(line.removeprefix("$ "))
    out: list[tuple[list[str], str]] = []
    for text in logical:
        match = re.match(r"filterdb (?:analyze STORE (\w+)|(monitor|similar|lineage|compare))\b", text)
        if match:
            out.append((["analyze", "STORE", match[1]] if match[1] else [match[2]], text))
        elif text.startswith("common:") and out and out[-1][0][0] == "analyze":  # "common: A ; pca and drift also: B"
            common, _, streaming = text.partition("pca and drift also:")
            out += [(["analyze", "STORE", sub], common) for sub in ("pca", "drift", "degeneration")]
            out += [(["analyze", "STORE", sub], streaming) for sub in ("pca", "drift")]
    return out


def test_synopses_name_real_options():
    """Each option of a synopsis (`filterdb analyze STORE drift --by ... [--bins 70]`) is in that command's
    --help: the synopses of docs/analysis.md, docs/monitor.md and docs/lineage.md."""
    from click.testing import CliRunner

    from filterdb.cli import app

    runner = CliRunner()
    checked = set()
    for path in (ANALYSIS_MD, MONITOR_MD, LINEAGE_MD):
        for block in blocks(path):
            for command, text in synopses(block.body):
                result = runner.invoke(app, [c if c != "STORE" else "zoo.fdb" for c in command] + ["--help"])
                assert result.exit_code == 0, (command, result.output)
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text):
                    assert option in result.output, (path.name, command, option)
                    checked.add((command[-1], option))
    assert {("drift", "--task-rows"), ("degeneration", "--json"), ("monitor", "--fail-on")} <= checked
    assert len(checked) >= 40
