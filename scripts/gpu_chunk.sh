#!/usr/bin/env bash
# One resumable chunk of photo-model training on the lent accelerator machine.
# usage: [CONFIG=src/neurocodec/train/configs/X.json] scripts/gpu_chunk.sh SECONDS TOTAL_STEPS
# CONFIG defaults to the accelerator config of the checkerboard model (cb-n128-m192.json).
# Resumes from .ckpt/hp/ckpt.pt when the machine is still warm, else from the carried
# .ckpt/carry/portable.safetensors (weights only). Copies the portable snapshot and the log to $OUT.
set -euo pipefail
budget=${1:?seconds}
steps=${2:?total steps}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p .ckpt/hp
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader || true
config=${CONFIG:-src/neurocodec/train/configs/cb-n128-m192.json}
python3 -m neurocodec.train --config "$config" \
  --data .data/photos-train-640 --out .ckpt/hp --steps "$steps" --time-budget "$budget" \
  --device cuda --init .ckpt/carry/portable.safetensors 2>&1 | tr '\r' '\n' | grep -v '^train: ' | tail -n 20 || true
tail -n 3 .ckpt/hp/log.jsonl
cp .ckpt/hp/portable.safetensors .ckpt/hp/log.jsonl "${OUT:-/tmp}/"
