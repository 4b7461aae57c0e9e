#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,all,timm
bash scripts/install-chromium.sh   # the HTML reports are tested in headless Chromium
echo "type check: mypy (packages listed under [tool.mypy] in pyproject.toml)"
.venv/bin/python -m mypy
# The CLI smoke tests where users are: fresh light-core installs with unpinned dependencies on the oldest and
# newest supported Python (pyenv); FILTERDB_TEST_MATRIX=0 skips them. Before the suite, so that pytest's
# summary of the whole suite is the last line.
bash scripts/test-matrix.sh
.venv/bin/python -m pytest "$@"
