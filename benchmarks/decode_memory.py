"""Peak memory of one decode per pixel, the figure behind ``codec.DECODE_BYTES_PER_PIXEL``.

    python benchmarks/decode_memory.py [--sizes 512x512,704x1024,1024x1024]

Linux only. Each size is measured in a fresh process (memory freed by earlier work would hide
part of the peak): encode one synthetic photo-like image, reset the peak resident size
(``/proc/self/clear_refs``), decode, and report (VmHWM - RSS before) against the codec's estimate.
Writes ``benchmarks/results/decode_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

import neurocodec  # noqa: E402
from neurocodec import codec  # noqa: E402
from conftest import photo_like  # noqa: E402
from provenance import git_revision  # noqa: E402


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(h: int, w: int) -> dict:
    data = neurocodec.encode(photo_like(h, w, seed=1), quality=75)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS:")
    codec.decode(data)
    peak = _status("VmHWM:") - before
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    return {"height": h, "width": w, "peak_bytes": peak, "bytes_per_padded_pixel": peak / (hp * wp),
            "estimate_bytes": codec.decode_memory_estimate(w, h)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x512,1024x1024,2048x2048", help="HxW,...")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decode_memory.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*(int(v) for v in args.one.split("x")))))
        return
    rows = []
    for size in args.sizes.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", size], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    result = {"command": "python " + " ".join(["benchmarks/decode_memory.py", *(argv if argv is not None else sys.argv[1:])]),
              "git_revision": git_revision(), "threads": torch.get_num_threads(), "sizes": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
