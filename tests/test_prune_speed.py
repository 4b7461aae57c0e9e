"""What keeps `filterdb prune` fast on a weights file (bench/bench_prune_speed.py measures it, docs/prune.md): the
prune path never imports torch (nor scipy where no layer has near-duplicates), the plan's low-diversity layers —
found from the variance entropy alone, not the whole check — are exactly the layers `filterdb check` gives the
low-diversity verdict, and the shortcuts (the hash beside the read, to_dict without asdict) give the same
results. The float32 duplicate screen has its own file, tests/test_prune_screen.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from filterdb import ModelInfo, ModelRecord
from filterdb.check import check_model
from filterdb.prune import prune_plan
from filterdb.prune._build import _low_diversity
from filterdb.readers import make_layer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _weights(path: Path) -> None:
    """A small VGG-like state dict as safetensors, written without torch."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {"features.0.weight": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
               "features.2.weight": rng.standard_normal((32, 16, 3, 3)).astype(np.float32),
               "features.4.weight": rng.standard_normal((32, 32, 3, 3)).astype(np.float32),
               "classifier.weight": rng.standard_normal((10, 32)).astype(np.float32)}
    save_file(tensors, str(path))


def test_the_prune_command_on_a_weights_file_never_imports_torch(tmp_path) -> None:
    path = tmp_path / "net.safetensors"
    _weights(path)
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "filterdb", "prune", str(path), "--target",
                           "0.5", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    assert [lp["name"] for lp in plan["layers"]] == ["features.0", "features.2", "features.4"]
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "filterdb.prune._build" in imported  # the listing is real
    assert not [name for name in imported if name == "torch" or name.startswith(("torch.", "torch_pruning"))]
    # nor scipy (a third of the start-up): the default strategy needs LAPACK's pivoted Cholesky only for a
    # layer with near-duplicate channels, and these random layers have none
    assert not [name for name in imported if name == "scipy" or name.startswith("scipy.")]


def test_the_python_prune_path_never_imports_torch(tmp_path) -> None:
    path = tmp_path / "net.safetensors"
    _weights(path)
    code = ("import sys; from filterdb.prune import prune_plan; plan = prune_plan(sys.argv[1], target=0.4); "
            "print(plan.params_removed > 0, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'torch_pruning')))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True []"


def _record() -> ModelRecord:
    """Layers on both sides of the low-diversity threshold: filters repeating 1, 2 or 3 patterns, random ones,
    1×1 kernels (no entropy), too few filters to judge."""
    rng = np.random.default_rng(3)
    layers = []
    for i, patterns in enumerate((1, 2, 3, 9)):
        base = rng.standard_normal((patterns, 9))
        w = base[rng.integers(0, patterns, 32 * 16)] + 0.05 * rng.standard_normal((32 * 16, 9))
        layers.append(make_layer(f"conv{i}", "Conv", w.reshape(32, 16, 3, 3)))
    layers.append(make_layer("pointwise", "Conv", rng.standard_normal((32, 32, 1, 1))))
    layers.append(make_layer("few", "Conv", np.repeat(rng.standard_normal((1, 1, 3, 3)), 4, axis=0)))
    return ModelRecord(ModelInfo(source="diversity", format="onnx"), tuple(layers))


def test_the_plans_low_diversity_layers_are_the_checks() -> None:
    record = _record()
    report = check_model(record)
    expected = {layer.name for layer, verdicts in zip(record.layers, report.verdicts)
                if any(v.kind == "low-diversity" for v in verdicts)}
    assert expected and expected != {layer.name for layer in record.layers}  # both sides present
    assert _low_diversity(record) == expected
    plan = prune_plan(record, target=0.5)
    assert {lp.name for lp in plan.layers if lp.reason == "low diversity"} <= expected


@pytest.mark.parametrize("entropy", ["all", "clean"])
def test_low_diversity_follows_the_thresholds(entropy: str) -> None:
    from filterdb.check import Thresholds

    record = _record()
    t = Thresholds(low_diversity=0.9, entropy=entropy)  # type: ignore[arg-type]
    report = check_model(record, t)
    expected = {layer.name for layer, verdicts in zip(record.layers, report.verdicts)
                if any(v.kind == "low-diversity" for v in verdicts)}
    assert _low_diversity(record, t) == expected


def test_to_dict_is_dataclasses_asdict() -> None:
    """PrunePlan.to_dict skips asdict's deep copy of every score (docs/prune.md, "Speed"); the dict is the same."""
    import dataclasses

    plan = prune_plan(_record(), target=0.5)
    expected = {**dataclasses.asdict(plan), "format": 1, "reduction": plan.reduction, "headline": plan.headline()}
    assert plan.to_dict() == expected
    assert json.dumps(plan.to_dict()) == json.dumps(expected)
    assert plan.to_dict()["settings"] is not plan.settings


def test_the_hash_computed_beside_the_read_is_the_files(tmp_path) -> None:
    """read_path hashes the file in a thread while the reader parses it; the hash is hashlib's of the bytes, and a
    hash the caller already has (ingest) is kept."""
    import hashlib

    from filterdb import read_model
    from filterdb.readers import read_path

    path = tmp_path / "net.safetensors"
    _weights(path)
    assert read_model(path).info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_path(path, sha256="given").info.sha256 == "given"
