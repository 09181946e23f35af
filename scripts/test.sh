#!/usr/bin/env bash
# Set up with the test extras, then run the test suite (self-contained: no ../shared needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest tests "$@"
