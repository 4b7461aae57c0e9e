#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,all,timm
bash scripts/install-chromium.sh   # the HTML reports are tested in headless Chromium
echo "type check: mypy (packages listed under [tool.mypy] in pyproject.toml)"
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
# The CLI smoke tests again where users are: fresh light-core installs with unpinned dependencies on the
# oldest and newest supported Python (pyenv); FILTERDB_TEST_MATRIX=0 skips them
bash scripts/test-matrix.sh
