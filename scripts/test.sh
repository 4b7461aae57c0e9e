#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,all,timm
bash scripts/install-chromium.sh   # the HTML reports are tested in headless Chromium
echo "type check: mypy (packages listed under [tool.mypy] in pyproject.toml)"
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
