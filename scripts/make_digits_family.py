"""Make the demo's digits family, the model files shipped in src/filterdb/demo/digits/ (needs torch, scikit-learn).

    python scripts/make_digits_family.py [OUT_DIR]     # default: src/filterdb/demo/digits

Trains every model of filterdb.demo.DIGITS_MODELS with fixed seeds on one thread and writes NAME.safetensors
(float16 state_dicts), digits-cnn-w2.onnx and digits.json (recipe version, torch release, manifest rows).
The same torch release on the same kind of CPU gives the same bytes: tests/test_digits_family.py re-runs it
and compares. Run it again (and commit the files) whenever the recipe changes, with DIGITS_VERSION bumped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from filterdb.demo import train_digits_family

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "filterdb" / "demo" / "digits"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    results = train_digits_family(out, threads=1, progress=print)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{len(results)} models, {size / 1024:.0f} KiB in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
