"""`filterdb check` / `filterdb inspect` as a user and a CI pipeline see them: output formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys

import pytest

import filterdb
import filterdb._names
from filterdb.cli import main

pytestmark = pytest.mark.corpus

LAYER_KEYS = {"name", "kind", "shape", "groups", "kernel", "n_filters", "conv_depth", "conv_depth_norm", "sparsity",
              "variance_entropy", "variance_entropy_norm", "variance_entropy_clean", "orthogonality", "verdicts"}


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_json_has_the_documented_keys_and_the_api_numbers(corpus_path, capsys):
    path = corpus_path("onet.pt")
    code, out, _ = run(["check", str(path), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"model", "layers", "summary"}
    assert data["model"]["filters_by_shape"] == {"2x2": 8192, "3x3": 6240}
    assert data["model"]["n_conv_layers"] == 4
    assert all(LAYER_KEYS <= set(layer) for layer in data["layers"])
    assert data["layers"][0]["kernel"] == [3, 3] and data["layers"][0]["shape"] == [32, 3, 3, 3]
    # the CLI prints the numbers of the Python API
    api = filterdb.check_model(filterdb.read_model(path)).layers
    assert [layer["sparsity"] for layer in data["layers"]] == pytest.approx(list(api["sparsity"]))
    assert [layer["variance_entropy"] for layer in data["layers"]] == pytest.approx(list(api["variance_entropy"]))


def test_csv_has_one_row_per_layer(corpus_path, capsys):
    code, out, _ = run(["check", str(corpus_path("320n.onnx")), "--csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 64
    assert rows[0]["kernel"] == "3x3" and float(rows[0]["n_filters"]) == 48


def test_fail_on_gates_ci_with_exit_code_3(corpus_path, capsys):
    sparse_model = str(corpus_path("face_detection_full_range_sparse.tflite"))
    code, out, _ = run(["check", sparse_model, "--fail-on", "sparse"], capsys)
    assert code == 3 and "check failed" in out
    code, _, _ = run(["check", sparse_model, "--fail-on", "non-finite"], capsys)
    assert code == 0  # no NaN/Inf weights there
    healthy = str(corpus_path("onet.pt"))
    assert run(["check", healthy, "--fail-on", "any"], capsys)[0] == 0


def test_thresholds_are_options(corpus_path, capsys):
    path = str(corpus_path("onet.pt"))
    # a tiny threshold makes every layer with any sparse filter "sparse" (onet: conv2 and conv3)
    code, out, _ = run(["check", path, "--json", "--sparse-threshold", "0.0001", "--fail-on", "sparse"], capsys)
    assert code == 3
    for layer in json.loads(out)["layers"]:
        flagged = "sparse" in [v["kind"] for v in layer["verdicts"]]
        assert flagged == (layer["sparsity"] >= 0.0001), layer["name"]
    assert run(["check", path, "--fail-on", "sparse"], capsys)[0] == 0  # default threshold: healthy
    assert run(["check", path, "--fail-on", "bogus"], capsys)[0] == 2  # usage error names the choices
    assert run(["check", path, "--sparse-threshold", "0"], capsys)[0] == 2
    code, _, err = run(["check", path, "--low-diversity-threshold", "2", "--random-threshold", "1"], capsys)
    assert code == 2 and "must be below" in err


def test_output_file_is_written(corpus_path, tmp_path, capsys):
    target = tmp_path / "report.json"
    code, _, _ = run(["check", str(corpus_path("pnet.pt")), "--json", "-o", str(target)], capsys)
    assert code == 0 and json.loads(target.read_text())["model"]["n_conv_layers"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_model_without_2d_filters_is_reported_not_an_error(corpus_path, capsys):
    code, out, _ = run(["check", str(corpus_path("silero_vad.onnx"))], capsys)
    assert code == 0 and "none with 2-D kernels" in out


def test_inspect_lists_layers_without_metrics(corpus_path, capsys):
    code, out, _ = run(["inspect", str(corpus_path("emotion_model.hdf5")), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["model"]["n_conv_layers"] == 23 and "sparsity" not in data["layers"][0]
    assert data["model"]["filters_by_shape"]["3x3"] == 1328


def test_table_output_and_pypi_source_in_a_real_process(corpus_path):
    corpus_path("pnet.pt")  # cached: the command below resolves it without a download
    spec = "pypi:facenet-pytorch==2.6.0#facenet_pytorch/data/pnet.pt"
    proc = subprocess.run([sys.executable, "-m", "filterdb", "check", spec], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "degenerated layers" in proc.stdout and "filters by kernel shape" in proc.stdout
    assert "3x3: 702" in proc.stdout


def run_process(args, columns):
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run([sys.executable, "-m", "filterdb", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("columns", [80, 120, 160])
def test_every_display_name_and_verdict_is_readable_at_any_width(corpus_path, columns):
    # MediaPipe's fused tflite names run to 250 characters: the table shows the conv's own op name (whole, on
    # its own line in the narrow layout); --json keeps the full fused name
    path = corpus_path("face_detection_full_range_sparse.tflite")
    out = run_process(["check", str(path)], columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    api = filterdb.check_model(filterdb.read_model(path)).layers
    fused = [name.split(";")[0] for name in api["name"] if ";" in name]
    assert fused and not any(part in out for part in fused)  # fused names are shortened
    lines = out.splitlines()
    for name in api["name"]:
        own = name.split(";")[-1] if "/Conv2D" in name.split(";")[-1] else None
        shown = filterdb._names.display_name(name)
        assert any(line.strip().split(" ", 1)[-1] == shown or f" {shown} " in line for line in lines), shown
        if own is not None:
            assert shown == own
        assert not shown.endswith(("ReadVariableOp", "BiasAdd", "FusedBatchNormV3", "Relu"))
    joined = re.sub(r"\n {4}", " ", out)  # wrapped verdict lines continue with a 4-space indent
    verdict_lines = re.findall(r"verdicts: (.*)", joined)
    assert len(verdict_lines) == len(api)
    for kinds, line in zip(api["verdicts"], verdict_lines):
        assert re.findall(r"([a-z-]+) \(", line) == kinds or (not kinds and line.startswith("ok"))
    full = json.loads(run_process(["check", str(path), "--json"], columns))
    assert [layer["name"] for layer in full["layers"]] == list(api["name"])


def test_wide_terminal_gets_the_table(corpus_path):
    out = run_process(["check", str(corpus_path("onet.pt"))], 250)
    header = next(line for line in out.splitlines() if "var_entropy" in line)
    assert "name" in header and "nbr_corr" in header and "verdicts" in header
    assert re.search(r"│ conv1 +│ conv", out)
    assert "producer pytorch, opset –" in out  # no space before the comma when the version is unknown
    inspect = run_process(["inspect", str(corpus_path("onet.pt"))], 80)
    assert "conv4" in inspect and "producer pytorch, opset" in inspect


def test_help_shows_every_threshold_default(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--sparse-threshold", 0.5), ("--low-diversity-threshold", 0.5),
                            ("--random-threshold", 1.0), ("--random-corr-z", 2.576), ("--sparsity-eps", 0.01),
                            ("--min-filters", 32)]:
        assert re.search(re.escape(option) + r" (?:(?! --).)*?\[default: " + re.escape(str(default)) + r"\]", text), option


def test_output_file_gets_the_usual_permissions(corpus_path, tmp_path, capsys):
    target = tmp_path / "layers.csv"
    old = os.umask(0o022)
    try:
        code, _, _ = run(["check", str(corpus_path("pnet.pt")), "--csv", "-o", str(target)], capsys)
    finally:
        os.umask(old)
    assert code == 0 and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text(encoding="utf-8").startswith("name,")


def test_random_corr_z_option_restores_the_entropy_only_verdict(corpus_path, capsys):
    # iris_landmark's depthwise_conv2d_3: 32 trained filters at entropy 1.005 but neighbour correlation 0.34
    path = str(corpus_path("iris_landmark.tflite"))
    default = json.loads(run(["check", path, "--json"], capsys)[1])
    entropy_only = json.loads(run(["check", path, "--json", "--random-corr-z", "inf"], capsys)[1])
    kinds = {layer["name"]: [v["kind"] for v in layer["verdicts"]] for layer in default["layers"]}
    kinds_entropy = {layer["name"]: [v["kind"] for v in layer["verdicts"]] for layer in entropy_only["layers"]}
    assert kinds_entropy["depthwise_conv2d_3"] == ["random"] and kinds["depthwise_conv2d_3"] == []
    assert run(["check", path, "--random-corr-z", "0"], capsys)[0] == 2


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_check_without_csv_never_imports_pandas_or_pyarrow(corpus_path, mode):
    # pandas and pyarrow cost a CI gate about half a second of imports; only --csv needs a DataFrame
    code = ("import sys\nfrom filterdb.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb') if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, "check", *mode, str(corpus_path("320n.onnx"))],
                          capture_output=True, text=True, env={**os.environ}, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert "320n.onnx" in done.stdout
