"""A bounded slice of the tampered-store campaign (tests/fuzz_store.py; bench/fuzz_store.py runs it at length):
every tamper class, two seeds each; each case must hold (one clear error or success, nothing outside touched)."""

from __future__ import annotations

import pytest
from fuzz_store import TAMPERS, build_base, new_model_file, run_case

pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-store")
    return build_base(folder / "base"), new_model_file(folder)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_store_holds(base, tmp_path, tamper, seed):
    root, new_model = base
    outcome = run_case(root, tmp_path / "case", tamper, seed, new_model)
    assert outcome.held, f"{outcome.what}: {outcome.reason}"
