#!/usr/bin/env bash
# Set up, then encode and decode a photo that a dependency ships (matplotlib's grace_hopper.jpg),
# printing size, bits per pixel, PSNR and JPEG at the same size.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bench
img=$(.venv/bin/python -c "from matplotlib import cbook; print(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))")
out=${DEMO_OUT:-demo}
mkdir -p "$out"
.venv/bin/neurocodec encode "$img" -o "$out/grace_hopper.nac" --force
.venv/bin/neurocodec decode "$out/grace_hopper.nac" -o "$out/grace_hopper.png" --force
.venv/bin/neurocodec info "$out/grace_hopper.nac"
