#!/usr/bin/env bash
# Install headless Chromium (Debian's package) for the browser tests of the HTML reports.
# Idempotent: does nothing when a chromium binary is already there. Needs root (or sudo) and apt.
set -euo pipefail
for bin in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$bin" ]; then
        echo "chromium already installed: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium.sh: apt-get not found; install Chromium with your package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "install-chromium.sh: run as root (or install sudo) to install chromium" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(/usr/bin/chromium --version)"
