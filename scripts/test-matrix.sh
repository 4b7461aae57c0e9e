#!/usr/bin/env bash
# The CLI smoke tests (pytest -m smoke) where users are: a plain install of the light core (no extras, no
# constraints file: today's versions of every dependency) on the oldest and the newest supported Python.
# The pinned CI environment cannot show an interpreter or dependency change; this can (issue 17: an exit
# abort seen only on 3.10/3.12/3.13 with current duckdb/pyarrow).
#
# Interpreters come from pyenv ($PYENV_ROOT, default ~/.pyenv): the newest 3.10.x and 3.13.x installed. One
# that is missing is skipped with a message. Each gets a virtual environment under $FILTERDB_MATRIX_DIR
# (default ~/.cache/filterdb-test-matrix), kept between runs and upgraded eagerly, so that a run costs the
# install of this checkout plus whatever dependency changed since the last one.
# FILTERDB_TEST_MATRIX=0 skips the whole matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "${FILTERDB_TEST_MATRIX:-1}" = "0" ]; then
    echo "test matrix: skipped (FILTERDB_TEST_MATRIX=0)"
    exit 0
fi

pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
matrix_dir=${FILTERDB_MATRIX_DIR:-$HOME/.cache/filterdb-test-matrix}
minors=(3.10 3.13)  # oldest (requires-python) and newest supported
start=$SECONDS
mkdir -p "$matrix_dir"

say() { echo "test matrix [$((SECONDS - start))s]: $*"; }

# One interpreter: venv, install, smoke tests; everything into $matrix_dir/py$minor.log, the verdict as the
# exit code. The interpreters run side by side (their time is mostly pip and child processes).
run_one() {
    local minor=$1 python=$2
    local venv=$matrix_dir/py$minor
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" || return 2
    fi
    # PIP_CONSTRAINT empty: no constraints file of CI or of the machine; --upgrade-strategy eager: every
    # dependency at its newest release, as a fresh `pip install filterdb` gets it
    PIP_CONSTRAINT="" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        --upgrade-strategy eager "$repo" pytest || return 2
    echo "versions: $("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
        | awk '$1 ~ /^(numpy|duckdb|pyarrow|pandas|scipy)$/ {printf "%s %s, ", $1, $2}')"
    # the package under test is the installed one: src/ is not on sys.path
    "$venv/bin/python" -m pytest -m smoke -q -p no:cacheprovider --basetemp="$matrix_dir/tmp-py$minor" \
        tests/test_cli_smoke.py
}

pids=()
names=()
for minor in "${minors[@]}"; do
    # the newest installed patch release of this minor version (3.10.13 before 3.10.9: version sort)
    python=$(ls -d "$pyenv_root"/versions/"$minor".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$python" ] || ! "$python" -c "import sys" 2>/dev/null; then
        say "SKIPPED Python $minor: no interpreter under $pyenv_root/versions/$minor.* (install it with \`pyenv install $minor\`)"
        continue
    fi
    say "Python $minor ($python): light core, unpinned dependencies, venv $matrix_dir/py$minor, log $matrix_dir/py$minor.log"
    run_one "$minor" "$python" >"$matrix_dir/py$minor.log" 2>&1 &
    pids+=($!)
    names+=("$minor")
done

failed=()
for i in "${!pids[@]}"; do
    minor=${names[$i]}
    log=$matrix_dir/py$minor.log
    if wait "${pids[$i]}"; then
        say "Python $minor: passed ($(grep -m1 '^versions: ' "$log" | cut -c11- | sed 's/, $//'); $(tail -n 1 "$log"))"
    else
        rc=$?
        say "Python $minor: FAILED ($([ $rc -eq 2 ] && echo "venv or install" || echo "smoke tests")); last lines of $log:"
        tail -n 25 "$log"
        failed+=("$minor")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    say "FAILED on Python ${failed[*]}"
    exit 1
fi
say "done (${#names[@]} interpreter(s))"
