"""Hub sources (hf:, torchvision:, timm:) resolved against real, pre-filled local caches of each library.

The hubs cannot be reached from tests, so every test lays out a cache the way the library itself writes it
(Hugging Face: ``models--ORG--REPO/{blobs,snapshots,refs}``; torch hub: ``checkpoints/<url basename>``),
holding real model files, and lets the real library find them. Nothing is mocked.

huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE once, at import: the ``hf_cache`` fixture sets the
environment *and* the module's configuration values so that in-process calls see them; one test runs the
CLI in a fresh process with the environment alone. torchvision/timm tests skip where those packages do not
import (the main venv, whose torch has no matching torchvision wheel); run them in a torch+torchvision venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from filterdb import read_model
from filterdb.errors import ModelNotFoundError, SourceError
from filterdb.readers import read_path
from filterdb.sources import resolve_source
from filterdb.sources._hf import HfSpec, parse_hf_spec, pick_model_file
from filterdb.sources._timm import parse_timm_spec
from filterdb.sources._torchvision import parse_torchvision_spec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


# --- parsing: no library needed ---------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "parts"), [
    ("hf:org/repo", HfSpec("org/repo", None, None)),
    ("hf:org/repo@v1.0", HfSpec("org/repo", None, "v1.0")),
    ("hf:org/repo/model.onnx", HfSpec("org/repo", "model.onnx", None)),
    ("hf:org/repo.name/sub/dir/w.safetensors@" + COMMIT, HfSpec("org/repo.name", "sub/dir/w.safetensors", COMMIT)),
])
def test_parse_hf_spec(spec, parts):
    assert parse_hf_spec(spec) == parts


@pytest.mark.parametrize("spec", ["hf:", "hf:repo-without-org", "hf:org/repo/../x.bin",
                                  "hf:org/repo@", "hf:org/re po"])
def test_bad_hf_spec_names_the_expected_form(spec):
    with pytest.raises(SourceError, match=r"hf:ORG/REPO\[/FILE\]\[@REVISION\]"):
        resolve_source(spec)


@pytest.mark.parametrize(("spec", "parts"), [
    ("torchvision:resnet18", ("resnet18", "DEFAULT")),
    ("torchvision:resnet50/IMAGENET1K_V2", ("resnet50", "IMAGENET1K_V2")),
    ("torchvision:resnet50/ResNet50_Weights.IMAGENET1K_V1", ("resnet50", "IMAGENET1K_V1")),
])
def test_parse_torchvision_spec(spec, parts):
    assert parse_torchvision_spec(spec) == parts


@pytest.mark.parametrize("spec", ["torchvision:", "torchvision:res-net", "torchvision:a/b/c"])
def test_bad_torchvision_spec_names_the_expected_form(spec):
    with pytest.raises(SourceError, match=r"torchvision:NAME\[/WEIGHTS\]"):
        resolve_source(spec)


def test_parse_timm_spec():
    assert parse_timm_spec("timm:resnet18.a1_in1k") == "resnet18.a1_in1k"


@pytest.mark.parametrize("spec", ["timm:", "timm:a/b", "timm:-x"])
def test_bad_timm_spec_names_the_expected_form(spec):
    with pytest.raises(SourceError, match="timm:NAME"):
        resolve_source(spec)


def test_pick_model_file_prefers_safetensors_then_root_files():
    assert pick_model_file(["README.md", "pytorch_model.bin", "model.safetensors"]) == "model.safetensors"
    assert pick_model_file(["onnx/model.onnx", "pytorch_model.bin"]) == "pytorch_model.bin"
    assert pick_model_file(["config.json", "sub/deep/x.tflite", "weights.h5"]) == "weights.h5"
    assert pick_model_file(["README.md", "config.json"]) is None


# --- hf: against a pre-filled Hugging Face cache ----------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache in offline mode; returns its root."""
    hub = pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as constants

    root = tmp_path / "hf-hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import by huggingface_hub; set them for this process as the environment would at start
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.constants.HF_HUB_CACHE == str(root)
    return root


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], *, revision: str = "main",
                    commit: str = COMMIT) -> Path:
    """Write files into the cache the way hf_hub_download does: blobs by etag, symlinked snapshot, ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest()  # the etag of an LFS file is its sha256
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture
def onet_safetensors(corpus_path, tmp_path) -> bytes:
    """facenet-pytorch's real onet.pt, written as safetensors."""
    from safetensors.numpy import save

    from filterdb.readers import _torchfree

    return save({name: t.array for name, t in _torchfree.load(corpus_path("onet.pt")).items()})


def assert_same_layers(record, reference):
    assert [(la.name, la.weight.shape) for la in record.layers] == [
        (la.name, la.weight.shape) for la in reference.layers]
    for a, b in zip(record.layers, reference.layers):
        assert np.array_equal(a.weight, b.weight)


@pytest.mark.corpus
def test_hf_repo_picks_model_safetensors_and_reads_end_to_end(hf_cache, onet_safetensors, corpus_path):
    onet = corpus_path("onet.pt").read_bytes()
    snapshot = put_in_hf_cache(hf_cache, "facenet/onet", {
        "model.safetensors": onet_safetensors, "pytorch_model.bin": onet, "README.md": b"# onet\n"})
    resolved = resolve_source("hf:facenet/onet")
    assert (resolved.scheme, resolved.path) == ("hf", snapshot / "model.safetensors")
    record = read_model("hf:facenet/onet")
    assert record.info.format == "safetensors" and record.info.source == "hf:facenet/onet"
    assert len(record.layers_2d) == 4
    assert_same_layers(record, read_path(corpus_path("onet.pt")))


@pytest.mark.corpus
def test_hf_named_file_and_revision(hf_cache, onet_safetensors, corpus_path):
    put_in_hf_cache(hf_cache, "facenet/onet", {"model.safetensors": onet_safetensors})
    other = "fedcba9876543210fedcba9876543210fedcba98"
    snapshot = put_in_hf_cache(hf_cache, "facenet/onet", {"torch/onet.pt": corpus_path("onet.pt").read_bytes()},
                               revision="v2", commit=other)
    path = resolve_source("hf:facenet/onet/torch/onet.pt@v2").path
    assert path == snapshot / "torch" / "onet.pt"
    assert resolve_source(f"hf:facenet/onet@{other}").path == path  # a commit hash is a revision too
    record = read_model("hf:facenet/onet/torch/onet.pt@v2")
    assert record.info.format == "pytorch"
    assert_same_layers(record, read_path(corpus_path("onet.pt")))


def test_hf_not_cached_offline_says_how_to_fix(hf_cache):
    with pytest.raises(SourceError, match=r"^hf:org/absent/model.onnx: cannot get org/absent/model.onnx "
                                          r"\(HF_HUB_OFFLINE is set\): the Hub could not be reached .*HF_HUB_OFFLINE=1"):
        resolve_source("hf:org/absent/model.onnx")
    with pytest.raises(SourceError, match=r"^hf:org/absent: cannot list the files of org/absent "
                                          r"\(HF_HUB_OFFLINE is set\): the Hub could not be reached"):
        resolve_source("hf:org/absent")


@pytest.mark.parametrize("spec", ["hf:org/absent", "hf:org/absent/model.onnx"])
def test_hf_unreachable_hub_fails_fast_with_the_reason(hf_cache, monkeypatch, spec):
    """No network: one refused connection decides it (the Hub client would retry for ~25 s), and says so."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9 is unreachable \(ConnectionRefusedError"):
        resolve_source(spec)


def test_hf_cached_repo_without_model_file(hf_cache):
    put_in_hf_cache(hf_cache, "org/docs", {"README.md": b"nothing\n"})
    with pytest.raises(SourceError, match=r"cached snapshot of org/docs holds no model file"):
        resolve_source("hf:org/docs")


@pytest.mark.corpus
def test_hf_cli_in_a_fresh_process_with_the_environment_only(tmp_path, onet_safetensors):
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hf-home" / "hub"  # HF_HOME/hub is the default hub cache
    put_in_hf_cache(cache, "facenet/onet", {"model.safetensors": onet_safetensors})
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "filterdb", "inspect", "--json", "hf:facenet/onet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "onet" in proc.stdout and "safetensors" in proc.stdout
    json.loads(proc.stdout)


# --- torch hub cache (torchvision:, timm: url) ------------------------------------------------------------


def _import_or_skip(name: str):
    try:
        return __import__(name)
    except (ImportError, RuntimeError) as e:  # RuntimeError: a torchvision built for another torch
        pytest.skip(f"{name} does not import here ({type(e).__name__}: {str(e)[:80]}); "
                    "run in a venv with matching torch and torchvision")


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache (torch.hub.get_dir() reads TORCH_HOME on each call)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.mark.torch
def test_torchvision_default_weights_from_the_torch_hub_cache(torch_home):
    _import_or_skip("torchvision")
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    torch.manual_seed(0)
    model = torchvision.models.squeezenet1_1()
    target = torch_home / Path(weights.url).name
    target.parent.mkdir(parents=True)
    torch.save(model.state_dict(), target)
    # torchvision itself loads that very file (it checks the hash prefix only when downloading)
    loaded = torchvision.models.squeezenet1_1(weights="DEFAULT")
    assert torch.equal(loaded.features[0].weight, model.features[0].weight)

    for spec in ("torchvision:squeezenet1_1", "torchvision:squeezenet1_1/IMAGENET1K_V1"):
        resolved = resolve_source(spec)
        assert (resolved.scheme, resolved.path) == ("torchvision", target)
    record = read_model("torchvision:squeezenet1_1")
    reference = read_model(model)  # the live module: an independent reader
    assert len(record.layers_2d) == 26
    assert [la.name for la in record.layers] == [la.name for la in reference.layers]
    for a, b in zip(record.layers, reference.layers):
        assert np.array_equal(a.weight, b.weight)


@pytest.mark.torch
def test_torchvision_errors(torch_home):
    _import_or_skip("torchvision")
    with pytest.raises(ModelNotFoundError, match="torchvision has no model 'nosuchnet'"):
        resolve_source("torchvision:nosuchnet")
    with pytest.raises(ModelNotFoundError, match=r"squeezenet1_1 has no weights 'NOPE'; known: IMAGENET1K_V1"):
        resolve_source("torchvision:squeezenet1_1/NOPE")


# --- timm: ------------------------------------------------------------------------------------------------

TIMM_NAME = "mobilenetv3_small_050.lamb_in1k"


@pytest.fixture
def timm_model():
    _import_or_skip("timm")
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model(TIMM_NAME, pretrained=False)


@pytest.mark.torch
@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_timm_hf_hub_weights_from_the_hf_cache(hf_cache, torch_home, timm_model, tmp_path, filename):
    import io

    import timm
    import torch
    from safetensors.torch import save

    cfg = timm.models.get_pretrained_cfg(TIMM_NAME)
    assert cfg.hf_hub_id == "timm/" + TIMM_NAME
    state = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    if filename.endswith(".bin"):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    else:
        data = save(state)
    snapshot = put_in_hf_cache(hf_cache, cfg.hf_hub_id, {filename: data})

    resolved = resolve_source("timm:" + TIMM_NAME)
    assert (resolved.scheme, resolved.path) == ("timm", snapshot / filename)
    # timm itself loads the same file: from the hub cache, and through pretrained_cfg_overlay=dict(file=...)
    for kwargs in ({}, {"pretrained_cfg_overlay": dict(file=str(resolved.path))}):
        loaded = timm.create_model(TIMM_NAME, pretrained=True, **kwargs)
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in
                   zip(loaded.state_dict().values(), timm_model.state_dict().values()))
    record = read_model("timm:" + TIMM_NAME)
    reference = read_model(timm_model)
    assert len(record.layers_2d) == len(reference.layers_2d) > 20
    assert {la.name: la.weight.shape for la in record.layers} == {la.name: la.weight.shape for la in reference.layers}
    by_name = {la.name: la.weight for la in reference.layers}
    assert all(np.array_equal(la.weight, by_name[la.name]) for la in record.layers)


@pytest.mark.torch
def test_timm_falls_back_to_the_url_in_the_torch_hub_cache(hf_cache, torch_home, timm_model):
    import timm
    import torch

    cfg = timm.models.get_pretrained_cfg(TIMM_NAME)
    target = torch_home / Path(cfg.url).name
    target.parent.mkdir(parents=True)
    torch.save(timm_model.state_dict(), target)
    resolved = resolve_source("timm:" + TIMM_NAME)  # not in the HF cache, offline: the url's cached file
    assert (resolved.scheme, resolved.path) == ("timm", target)
    record = read_model("timm:" + TIMM_NAME)
    assert len(record.layers_2d) == len(read_model(timm_model).layers_2d)


@pytest.mark.torch
def test_timm_errors(hf_cache, torch_home, timm_model):
    with pytest.raises(ModelNotFoundError, match=r"no pretrained weights named .mobilenetv3_small_050.nosuchtag.; "
                                                 r"list them with timm.list_pretrained\(.mobilenetv3_small_050\*.\)"):
        resolve_source("timm:mobilenetv3_small_050.nosuchtag")
    with pytest.raises(ModelNotFoundError, match=r"timm has no pretrained weights named 'nosuchnet'"):
        resolve_source("timm:nosuchnet")
