#!/usr/bin/env bash
# Create .venv and install filterdb into it. Usage: bash scripts/setup.sh [EXTRAS]
#   bash scripts/setup.sh            -> the light core (reads ONNX, PyTorch state_dicts, safetensors, Keras, TFLite)
#   bash scripts/setup.sh demo       -> + torch, scikit-learn, matplotlib for `filterdb demo`
#   bash scripts/setup.sh test,all,timm -> everything the test suite needs (pins in ci/constraints.txt)
# Prints one line per phase, one per package pip collects and one per download of a megabyte or more; pip's
# full output goes to .venv/setup.log.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
started=$SECONDS
say() { printf '[setup %3d s] %s\n' "$((SECONDS - started))" "$*"; }

# pip's own output into the log; its "Collecting NAME" lines on screen; the log's tail when pip fails.
pip_install() {
    local rc
    set +e
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 | tee -a "$log" |
        awk '/^Collecting /{print "    " $2; fflush()}
             /^ *Downloading .*[0-9] MB\)/{sub(/^ */, ""); print "      " $0; fflush()}
             /^Installing collected packages/{print "    installing ..."; fflush()}'
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "error: pip failed (exit $rc); the last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit "$rc"
    fi
}

say "creating .venv with $(python3 --version 2>&1)"
python3 -m venv .venv
log=.venv/setup.log
: >"$log"
say "upgrading pip"
pip_install --quiet --upgrade pip
target="."
[ -n "$extras" ] && target=".[${extras}]"
case ",$extras," in
    *,demo,*|*,test,*|*,all,*|*,torch,*) say "installing filterdb $target with torch (a large download: minutes on a fresh machine)" ;;
    *) say "installing filterdb $target" ;;
esac
pip_install -c ci/constraints.txt -e "$target"
say "done: .venv/bin/filterdb is ready (pip's output: $log)"
