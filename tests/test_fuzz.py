"""Seeded mutants of every corpus format: each is read or refused with a FilterDBError; none crashes the
process, hangs, raises an uncaught exception or blows up memory (a bounded slice of bench/fuzz.py)."""

from __future__ import annotations

import pytest

from fuzzing import mutants, run_cases, torchscript_running_code

# one real file per reader (and container flavour: legacy and zip torch files, sparse TFLite)
FILES = ["pnet.pt", "alex.pth", "emotion_model.hdf5", "emotion_model_quantized.tflite",
         "face_detection_full_range_sparse.tflite", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
         "silero_vad_16k.safetensors", "pnet.lz4"]
PER_FILE = 12  # x 4 mutators; the campaign in bench/fuzz.py runs hundreds
SEED = 12
CASE_TIMEOUT_S = 60  # a hang guard, far above any real read of these files
PEAK_MIB = 1536  # a worker reads all cases in turn: imports (torch among them) + the largest legitimate read
ADDRESS_LIMIT = 16 * 2**30  # a safety net for the machine running the tests; the RSS bound is the assertion


@pytest.mark.corpus
def test_mutants_of_every_format_are_read_or_refused(corpus_path, tmp_path):
    sources = {key: corpus_path(key) for key in FILES}
    sources["torchscript.pt"] = torchscript_running_code(tmp_path / "torchscript.pt")
    paths = []
    for key, src in sources.items():
        for name, data in mutants(src.read_bytes(), SEED, PER_FILE):
            path = tmp_path / f"{name}-{key}"
            path.write_bytes(data)
            paths.append(path)
    results = run_cases(paths, case_timeout=CASE_TIMEOUT_S, address_limit=ADDRESS_LIMIT)
    assert len(results) == len(paths)
    bad = [f"{r.outcome}: {r.path}: {r.detail}" for r in results if r.outcome not in ("ok", "refused")]
    assert bad == []
    assert max(r.rss_mib for r in results) < PEAK_MIB
    # the mutants are not all trivially refused: the harness exercises the readers' insides too
    assert sum(r.outcome == "ok" for r in results) > 0 and sum(r.outcome == "refused" for r in results) > 0


def test_the_worker_reports_a_crash_and_carries_on(tmp_path):
    """The harness itself: a file that kills the worker is charged with a crash, the next file is still read."""
    import os

    crash = tmp_path / "crash.onnx"
    crash.write_bytes(b"x")
    ok = tmp_path / "empty.pt"
    ok.write_bytes(b"")
    env = {**os.environ, "FILTERDB_FUZZ_CRASH_ON": str(crash)}
    results = run_cases([crash, ok], case_timeout=CASE_TIMEOUT_S, env=env)
    assert [(r.path, r.outcome) for r in results] == [(str(crash), "crash"), (str(ok), "refused")]
