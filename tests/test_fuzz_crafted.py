"""The crafted lies of issue 12, built by code and checked as processes: ``python -m filterdb check`` exits
with a code and one line, within a memory bound and a (generous) time bound, writes nothing, and its
``--json`` stdout is valid JSON or empty. Nothing from a file runs; nothing is allocated on a file's word."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fuzzing
from filterdb.errors import MemoryBudgetError, ModelFormatError
from filterdb.readers import ReadOptions, read_path
from filterdb.readers._tflite_sparse import DENSE, SPARSE_CSR, DimMeta, densify

HANG_GUARD_S = 180  # far above any of these reads; only a hang reaches it
PEAK_MIB = 1024  # a refused bomb costs the interpreter and its imports, not the declared gigabytes
ADDRESS_LIMIT = 8 * 2**30  # protects the machine should a guard fail; the RSS bound is what is asserted

# Runs the CLI in this very process and writes its peak RSS (KiB) to $FDB_RSS_OUT at exit (the larger of its own,
# since exec, and its children's: readers fork a child for native parsers).
_WRAPPER = (
    "import atexit, os, resource, runpy, sys\n"
    + fuzzing.PEAK_KIB_SOURCE +
    "atexit.register(lambda: open(os.environ['FDB_RSS_OUT'], 'w').write(str(_peak_kib())))\n"
    "sys.argv = ['filterdb'] + sys.argv[1:]\n"
    "runpy.run_module('filterdb', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class Run:
    code: int
    out: str
    err: str
    peak_mib: float


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))


@pytest.fixture
def cli(tmp_path):
    """cli(*args) runs ``python -m filterdb *args`` in an empty folder and checks that it stays empty."""
    work = tmp_path / "cwd"
    work.mkdir()

    def run(*args: str) -> Run:
        rss = tmp_path / "rss"
        env = {**os.environ, "FDB_RSS_OUT": str(rss), "FILTERDB_CACHE_DIR": str(tmp_path / "cache")}
        env.pop("FILTERDB_MAX_MEMORY", None)
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=HANG_GUARD_S, preexec_fn=_limit_memory)
        assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
        assert list(work.iterdir()) == [], "the command wrote into the working folder"
        assert not (tmp_path / "cache").exists(), "the command wrote a cache"
        return Run(proc.returncode, proc.stdout, proc.stderr, int(rss.read_text()) / 1024)

    return run


def assert_refused(run: Run, path: Path, *words: str) -> None:
    """Exit 1, one 'error:' line naming the file and saying ``words``, empty stdout, bounded memory."""
    lines = [ln for ln in run.err.splitlines() if ln.strip()]
    assert run.code == 1, run.err
    assert len(lines) == 1 and lines[0].startswith("error:"), run.err
    message = lines[0]
    assert path.name in message and message.count(str(path)) <= 1
    for word in words:
        assert word in message, message
    assert "ran out of memory" not in message  # refused by a check, not rescued after allocating
    assert run.out == ""
    assert run.peak_mib < PEAK_MIB, f"peak RSS {run.peak_mib:.0f} MiB"


# --------------------------------------------------------------------------------------------------------
# nothing from a file runs


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript_code_never_runs(cli, tmp_path):
    path = fuzzing.torchscript_running_code(tmp_path / "hostile.pt")
    run = cli("check", "--json", str(path))  # with torch.jit.load this would print, then spin forever
    assert run.code == 0, run.err
    assert fuzzing.CODE_RAN not in run.out + run.err
    report = json.loads(run.out)
    assert report["model"]["format"] == "torchscript"
    assert run.peak_mib < PEAK_MIB


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript_is_read_without_torch_jit_load(tmp_path, monkeypatch):
    """The default read never calls torch.jit.load: weights come from data.pkl, hyper-parameters from code text."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.ReLU(),
                                torch.nn.Conv2d(6, 6, 3, groups=3, dilation=2))
    path = tmp_path / "script.pt"
    torch.jit.script(model).save(str(path))

    def refuse(*_a, **_k):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    record = read_path(path)
    assert [(lr.name, lr.groups, lr.stride, lr.dilation, lr.depth_source) for lr in record.layers] == [
        ("0", 1, (2, 2), (1, 1), "order"), ("2", 3, (1, 1), (2, 2), "order")]
    assert np.array_equal(record.layers[1].weight, model[2].weight.detach().numpy())
    assert record.info.n_parameters == sum(p.numel() for p in model.parameters())
    assert any("without running its code" in note for note in record.info.notes)


# --------------------------------------------------------------------------------------------------------
# damaged archives: CRC-32 verified


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["state_dict", "torchscript"])
def test_damaged_zip_member_is_refused(cli, tmp_path, kind):
    import torch

    torch.manual_seed(0)
    src = tmp_path / "src.pt"
    if kind == "state_dict":
        torch.save({"conv.weight": torch.randn(16, 8, 3, 3)}, src)
    else:
        torch.jit.script(torch.nn.Conv2d(8, 16, 3)).save(str(src))
    path = fuzzing.damage_zip_member(src, tmp_path / "damaged.pt", "data/0")
    assert_refused(cli("check", str(path)), path, "CRC")


# --------------------------------------------------------------------------------------------------------
# declared sizes checked before allocating


@pytest.mark.parametrize("build, words", [
    (fuzzing.onnx_sparse_bomb, ("densifying", "would need")),
    (fuzzing.onnx_block_size_bomb, ("block_size",)),
    (fuzzing.torch_zero_stride_bomb, ("would need",)),
    (fuzzing.h5_huge_shape, ("would need",)),
], ids=["onnx-sparse", "onnx-block-size", "pt-zero-stride", "h5-huge-shape"])
def test_size_bombs_are_refused_before_allocating(cli, tmp_path, build, words):
    suffix = {"h5_huge_shape": ".h5", "torch_zero_stride_bomb": ".pt"}.get(build.__name__, ".onnx")
    path = build(tmp_path / f"bomb{suffix}")
    assert path.stat().st_size < 200_000
    assert_refused(cli("check", "--json", str(path)), path, *words)


def test_keras_member_inflating_past_the_budget(cli, tmp_path):
    path = fuzzing.keras_zip_inflating(tmp_path / "inflating.keras", inflated_mib=64)
    assert path.stat().st_size < 200_000
    assert_refused(cli("check", "--max-memory", "16M", str(path)), path, "model.weights.h5", "would need")


def test_max_memory_option_and_its_errors(cli, tmp_path):
    path = fuzzing.onnx_conv(tmp_path / "small.onnx")
    assert cli("inspect", "--max-memory", "1G", str(path)).code == 0
    assert_refused(cli("inspect", "--max-memory", "100", str(path)), path, "would need", "--max-memory")
    bad = cli("check", "--max-memory", "lots", str(path))
    assert bad.code == 2 and "--max-memory" in bad.err and "lots" in bad.err


def test_many_empty_safetensors_tensors(cli, tmp_path):
    path = fuzzing.safetensors_empty_tensors(tmp_path / "empty.safetensors", 100_000)
    assert_refused(cli("check", "--max-memory", "64M", str(path)), path, "JSON header", "would need")
    small = fuzzing.safetensors_empty_tensors(tmp_path / "few.safetensors", 2_000)
    assert read_path(small).layers == ()  # an empty weight holds no filter


# --------------------------------------------------------------------------------------------------------
# HDF5 data outside the file


def test_hdf5_external_storage_is_refused(cli, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:SECRET-CONTENT" * 64)
    path = fuzzing.h5_external_storage(tmp_path / "external.h5", secret)
    run = cli("check", "--json", str(path))
    assert_refused(run, path, "external file")
    assert "SECRET" not in run.out + run.err


@pytest.mark.parametrize("build, words", [(fuzzing.h5_external_link, "external link"),
                                          (fuzzing.h5_virtual, "virtual dataset")], ids=["link", "virtual"])
def test_hdf5_links_and_virtual_datasets_are_refused(cli, tmp_path, build, words):
    path = build(tmp_path / "hostile.h5", tmp_path / "other.h5")
    assert_refused(cli("check", str(path)), path, words)


# --------------------------------------------------------------------------------------------------------
# ONNX lies


def test_deep_dequantize_chain_is_linear(cli, tmp_path):
    """Each level reads the previous one three times: 3^30 steps unless each value is resolved once."""
    path = fuzzing.onnx_chain(tmp_path / "chain.onnx", depth=30)
    run = cli("check", "--json", str(path))
    assert run.code == 0, run.err
    json.loads(run.out)


def test_chain_longer_than_the_limit_is_noted(tmp_path):
    record = read_path(fuzzing.onnx_chain(tmp_path / "chain.onnx", depth=40))
    assert record.layers == ()
    assert any("more than 32" in note for note in record.info.notes)


@pytest.mark.parametrize("dims, group, words", [
    ((4, -3, 3, 3), None, "invalid shape"),
    ((4, 3, 3, 3), 0, "groups=0"),
    ((4, 3, 3, 3), -1, "groups=-1"),
    ((4, 3, 3, 3), 1000, "groups=1000"),
    ((4, 3, 3, 3), 3, "groups=3"),  # 4 output channels cannot be split into 3 groups
])
def test_onnx_impossible_shapes_and_groups(cli, tmp_path, dims, group, words):
    path = fuzzing.onnx_conv(tmp_path / "lie.onnx", dims=dims, group=group)
    assert_refused(cli("check", str(path)), path, words)


def test_non_utf8_onnx_names(cli, tmp_path):
    path = fuzzing.onnx_conv(tmp_path / "bytes.onnx", node_name=b"co\xff\xfe")  # as long as the placeholder
    run = cli("check", "--json", str(path))
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["layers"][0]["name"] == "co\ufffd\ufffd"


# --------------------------------------------------------------------------------------------------------
# TFLite sparse tensors that lie (the densify step on its own: building a sparse flatbuffer needs TF)


def test_densify_refuses_levels_that_address_more_than_the_shape():
    values = np.ones(4, np.float32)
    levels = [DimMeta(DENSE, 2**31), DimMeta(DENSE, 2**31)]
    with pytest.raises(ValueError, match="addresses more entries"):
        densify(values, (2, 2), (0, 1), (), levels)


def test_densify_checks_the_dense_size_first():
    asked = []

    def check(nbytes: int, what: str) -> None:
        asked.append(nbytes)
        raise MemoryBudgetError(what)

    with pytest.raises(MemoryBudgetError, match="densifying"):
        densify(np.ones(1, np.float32), (60000, 60000), (0, 1), (), [DimMeta(DENSE, 1), DimMeta(DENSE, 1)],
                check=check)
    assert asked[0] >= 60000 * 60000 * 4


def test_densify_refuses_a_negative_csr_index():
    dims = [DimMeta(DENSE, 2), DimMeta(SPARSE_CSR, segments=np.array([0, 1, 2]), indices=np.array([1, -1]))]
    with pytest.raises(ValueError, match="negative index"):
        densify(np.array([5.0, 6.0]), (2, 3), (0, 1), (), dims)


# --------------------------------------------------------------------------------------------------------
# format sniffing runs inside the reader's error wrapper


@pytest.mark.parametrize("name, data", [
    ("flipped.h5", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8),
    ("flipped.keras", b"PK\x03\x04" + b"\xff" * 2000),
])
def test_corrupt_containers_end_in_model_format_error(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=name):
        read_path(path, ReadOptions())


# --------------------------------------------------------------------------------------------------------
# pickle refusals: one line, the path named once


@pytest.mark.parametrize("kind", ["plain-pickle", "checkpoint-with-objects"])
def test_pickle_refusal_names_the_path_once(cli, tmp_path, kind):
    import argparse
    import pickle

    if kind == "plain-pickle":
        path = tmp_path / "model.pkl"
        path.write_bytes(pickle.dumps({"conv.weight": np.ones((2, 3, 3, 3), np.float32)}))
    else:
        import torch

        path = tmp_path / "checkpoint.pt"
        torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"conv.weight": torch.ones(2, 3, 3, 3)}}, path)
    run = cli("check", str(path))
    assert_refused(run, path, "--trust-pickle")


# --------------------------------------------------------------------------------------------------------
# ingest --keep-going skips what cannot be read, whatever failed


def test_ingest_keep_going_skips_corrupt_containers(cli, tmp_path):
    good = fuzzing.onnx_conv(tmp_path / "good.onnx")
    bad_h5 = tmp_path / "flipped.h5"
    bad_h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    bad_zip = tmp_path / "flipped.keras"
    bad_zip.write_bytes(b"PK\x03\x04" + b"\xff" * 2000)
    lie = fuzzing.onnx_conv(tmp_path / "lie.onnx", group=0)
    store = tmp_path / "store"
    run = cli("ingest", str(store), str(bad_h5), str(bad_zip), str(good), str(lie), "--init", "--keep-going",
              "--require", "", "--no-progress", "--max-memory", "1G")
    assert "ingested 1 model" in run.out + run.err, run.out + run.err
    assert "Traceback" not in run.err and "unexpected" not in run.err
    for path in (bad_h5, bad_zip, lie):
        assert path.name in run.err


# --------------------------------------------------------------------------------------------------------
# native parsers run in a child process: their crash is an error, not the end of filterdb


def test_a_crash_in_the_isolated_reader_is_an_error(tmp_path):
    import signal

    from filterdb.readers._isolated import read_isolated

    def crash():
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(ModelFormatError, match=r"model\.h5: the HDF5 parser crashed on this file \(signal SIGSEGV\)"):
        read_isolated(tmp_path / "model.h5", "HDF5", crash)


def test_the_isolated_reader_returns_the_same_record(tmp_path):
    from filterdb.readers._isolated import read_isolated
    from filterdb.types import ConvLayer, ModelInfo, ModelRecord

    weight = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    record = ModelRecord(
        info=ModelInfo(source="s", format="keras", op_counts={"Conv2D": 1}, n_parameters=72, notes=("n",)),
        layers=(ConvLayer("c\u00e9", "Conv2D", "conv", weight, groups=1, stride=(1, 2), conv_depth=0,
                          conv_depth_norm=0.0, notes=("x",)),))
    back = read_isolated(tmp_path / "m.h5", "HDF5", lambda: record)
    assert (back.info.source, back.info.format, back.info.n_parameters) == ("s", "keras", 72)
    assert dict(back.info.op_counts) == {"Conv2D": 1} and back.info.notes == ("n",)
    (layer,) = back.layers
    assert (layer.name, layer.stride, layer.dilation, layer.notes, layer.conv_depth) == ("c\u00e9", (1, 2), None, ("x",), 0)
    assert np.array_equal(layer.weight, weight) and layer.weight.dtype == np.float32


def test_an_error_in_the_isolated_reader_keeps_its_class(tmp_path):
    from filterdb.readers._isolated import read_isolated

    def refuse():
        raise MemoryBudgetError("m.h5: too big")

    with pytest.raises(MemoryBudgetError, match="m.h5: too big"):
        read_isolated(tmp_path / "m.h5", "HDF5", refuse)


@pytest.mark.corpus
def test_tflite_sparse_levels_that_lie(cli, corpus_path, tmp_path):
    """The real sparse face detector with its dense levels rewritten to 2^31 - 1 entries each."""
    path = fuzzing.tflite_lying_dense_levels(corpus_path("face_detection_full_range_sparse.tflite"),
                                             tmp_path / "levels.tflite")
    assert_refused(cli("check", "--json", str(path)), path, "addresses more entries")
