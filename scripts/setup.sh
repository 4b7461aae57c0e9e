#!/usr/bin/env bash
# Create .venv and install filterdb into it. Usage: bash scripts/setup.sh [EXTRAS]
#   bash scripts/setup.sh            -> the light core (reads ONNX, PyTorch state_dicts, safetensors, Keras, TFLite)
#   bash scripts/setup.sh test,all,timm -> everything the test suite needs (pins in ci/constraints.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
target="."
[ -n "$extras" ] && target=".[${extras}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c ci/constraints.txt -e "$target"
