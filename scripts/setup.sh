#!/usr/bin/env bash
# Create .venv (if needed) and install neurocodec into it with the given extras.
# torch is installed first and pinned to the CPU build, so no dependency can pull CUDA wheels.
# usage: bash scripts/setup.sh [EXTRAS]     e.g. "test" or "bench,test"
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
