#!/usr/bin/env bash
# Create .venv (if needed) and install neurocodec into it with the given extras.
# torch is installed first and pinned (2.13.0), so no dependency can pull another build. On the
# project's machines pip finds the CPU build of that release locally; elsewhere PyPI's Linux wheel
# is a CUDA build of several GB, so set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu there.
# usage: [TORCH_INDEX_URL=URL] bash scripts/setup.sh [EXTRAS]     e.g. "test" or "bench,test"
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
