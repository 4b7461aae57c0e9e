#!/usr/bin/env bash
# Create .venv and install filterdb into it. Usage: bash scripts/setup.sh [EXTRAS]
#   bash scripts/setup.sh            -> the light core (reads ONNX, PyTorch state_dicts, safetensors, Keras, TFLite)
#   bash scripts/setup.sh demo       -> + matplotlib for `filterdb demo` (no deep-learning framework)
#   bash scripts/setup.sh test,all,timm -> everything the test suite needs (pins in ci/constraints.txt)
# Prints one line per phase, one per package pip collects and one per download of a megabyte or more, and a
# line every 10 s in which nothing else is printed (installing: how many packages are in place); pip's full
# output goes to .venv/setup.log.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
started=$SECONDS
say() { printf '[setup %3d s] %s\n' "$((SECONDS - started))" "$*"; }

# Packages installed in .venv so far (their .dist-info folders): progress while pip installs, which it does silently.
installed() {
    local n=0 d
    for d in .venv/lib/python3*/site-packages/*.dist-info; do [ -e "$d" ] && n=$((n + 1)); done
    echo "$n"
}

# pip's lines that show progress: each package it collects, each download of a megabyte or more, and, when pip
# says nothing for 10 s (a large download, unpacking and installing), a line that says what it is still doing.
show_progress() {
    local line="" part doing="resolving" total=0 base=0 done_
    while true; do
        if IFS= read -r -t 10 part; then  # bash reads line by line (mawk would buffer the whole stream)
            line+=$part
        elif [ $? -gt 128 ]; then  # timed out: keep any partial line, say that pip is still at work
            line+=$part
            if [ "$doing" = installing ]; then
                done_=$(( $(installed) - base )); [ "$done_" -lt 0 ] && done_=0
                say "    ... still installing: $done_ of $total packages in place"
            else
                say "    ... still $doing"
            fi
            continue
        else
            break  # end of pip's output
        fi
        case "$line" in
            "Collecting "*) line=${line#Collecting }; echo "    ${line%% *}"; doing="resolving and downloading" ;;
            *Downloading*" MB)") echo "      ${line#"${line%%[! ]*}"}"; doing="downloading" ;;
            "Installing collected packages: "*)
                line=${line#*: }; line=${line//[^,]/}; total=$(( ${#line} + 1 )); base=$(installed)
                say "    installing $total packages ..."; doing=installing ;;
        esac
        line=""
    done
}

# Run a command; say what it is still doing every 10 s until it ends (its exit status is kept).
with_heartbeat() {
    local doing=$1 pid n=0
    shift
    "$@" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        n=$((n + 1))
        if [ $((n % 10)) -eq 0 ] && kill -0 "$pid" 2>/dev/null; then say "    ... still $doing"; fi
    done
    wait "$pid"
}

# pip's whole output goes to the log; its progress lines to the screen; the log's tail when pip fails.
pip_install() {
    local rc
    set +e
    PYTHONUNBUFFERED=1 .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 |
        tee -a "$log" | show_progress
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "error: pip failed (exit $rc); the last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit "$rc"
    fi
}

say "creating .venv with $(python3 --version 2>&1)"
with_heartbeat "creating .venv (python3 -m venv, with pip)" python3 -m venv .venv
log=.venv/setup.log
: >"$log"
say "upgrading pip (a few seconds)"
pip_install --quiet --upgrade pip
target="."
[ -n "$extras" ] && target=".[${extras}]"
case ",$extras," in
    *,test,*|*,all,*|*,torch,*) say "installing filterdb $target with torch (a large download: minutes on a fresh machine)" ;;
    *) say "installing filterdb $target" ;;
esac
pip_install -c ci/constraints.txt -e "$target"
say "done: .venv/bin/filterdb is ready (pip's output: $log)"
