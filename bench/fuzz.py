"""A fuzzing campaign against the readers: seeded byte flips, truncations and lying words of every corpus format.

Run by hand (CI runs a bounded slice of the same cases in tests/test_fuzz.py):

    PYTHONPATH=src .venv/bin/python bench/fuzz.py [--per-file 100] [--seed 0] [--keys pnet.pt ...]

Each mutant is read by ``read_path`` in a worker process (many per process; a crash or hang is charged to
the file being read and a new worker continues). Prints the counts: inputs tried, read, refused, and the
failures - uncaught exceptions, crashes, hangs, memory blow-ups - with the files kept under --keep.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from corpus import CORPUS  # noqa: E402
from fuzzing import mutants, report_failures, run_cases, torchscript_running_code  # noqa: E402

from filterdb.sources import resolve_source  # noqa: E402

DEFAULT_KEYS = ["pnet.pt", "alex.pth", "emotion_model.hdf5", "emotion_model_quantized.tflite",
                "face_detection_full_range_sparse.tflite", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "nmp.onnx",
                "silero_vad_16k.safetensors", "pnet.lz4"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", nargs="*", default=DEFAULT_KEYS)
    parser.add_argument("--per-file", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-timeout", type=float, default=60.0)
    parser.add_argument("--blowup-mib", type=float, default=2048, help="peak RSS counted as a blow-up")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = {key: resolve_source(CORPUS[key].spec).path for key in args.keys}
        sources["script.pt"] = torchscript_running_code(root / "script.pt")
        paths = []
        for key, src in sources.items():
            for name, data in mutants(src.read_bytes(), args.seed, args.per_file):
                path = root / f"{name}-{key}"
                path.write_bytes(data)
                paths.append(path)
        start = time.perf_counter()
        results = run_cases(paths, case_timeout=args.case_timeout)
        elapsed = time.perf_counter() - start
        counts = Counter(r.outcome for r in results)
        blowups = [r for r in results if r.rss_mib > args.blowup_mib]
        failures = [r for r in results if r.outcome in ("unexpected", "crash", "hang")] + blowups
        print(f"inputs tried: {len(results)} ({len(sources)} files x {args.per_file}, seed {args.seed}) "
              f"in {elapsed:.0f} s")
        print(f"read: {counts['ok']}, refused with a FilterDBError: {counts['refused']}")
        print(f"uncaught exceptions: {counts['unexpected']}, crashes: {counts['crash']}, hangs: {counts['hang']}, "
              f"blow-ups (> {args.blowup_mib:.0f} MiB): {len(blowups)}")
        report_failures(results, failures, args.keep)


if __name__ == "__main__":
    main()
