"""Peak memory of one decode against the estimate that ``Limits.max_memory_bytes`` is checked with.

    python benchmarks/decode_memory.py [--sizes 512x512,1024x1024,2048x2048,4000x6000] [--repeats 3]

Linux only. Each size is measured in fresh processes (memory freed by earlier work would hide
part of the peak): encode one synthetic photo-like image, reset the peak resident size
(``/proc/self/clear_refs``), decode, and report (VmHWM - RSS before) against the codec's estimate.
The peak varies from process to process (at 2048x2048, twelve runs of the same code gave
0.47-0.87 GB with three models; the cause was not traced), so every size
runs ``--repeats`` times and ``peak_bytes`` is the largest, the one the estimate must cover; each
run's peak is kept in ``peak_bytes_runs``. Writes ``benchmarks/results/decode_memory.json``.
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
from neurocodec import codec, tiling, zoo  # noqa: E402
from conftest import photo_like  # noqa: E402
from memory import peak_above_start  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402


def measure(h: int, w: int) -> dict:
    model = zoo.load()
    data = neurocodec.encode(photo_like(h, w, seed=1), quality=75)
    with peak_above_start() as measured:
        codec.decode(data)
    if measured.bytes is None:
        raise RuntimeError("decode_memory.py needs Linux' /proc/self/clear_refs and VmHWM")
    peak = measured.bytes
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    return {"height": h, "width": w, "peak_bytes": peak, "bytes_per_padded_pixel": peak / (hp * wp),
            "tiled": tiling.auto_tile(hp // 16, wp // 16) is not None,
            "estimate_bytes": codec.decode_memory_estimate(w, h, model.net.config.m)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x512,1024x1024,2048x2048,4000x6000", help="HxW,...")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per size [default: 3]")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decode_memory.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*(int(v) for v in args.one.split("x")))))
        return
    model = zoo.load()
    rows = []
    for size in args.sizes.split(","):
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--one", size], capture_output=True,
                                          text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(max(1, args.repeats))]
        row = max(runs, key=lambda r: r["peak_bytes"])
        row["peak_bytes_runs"] = [r["peak_bytes"] for r in runs]
        rows.append(row)
        print(row, flush=True)
    result = {"command": command(argv),
              "git_revision": git_revision(), "threads": torch.get_num_threads(),
              "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]}, "sizes": rows}
    over = [r for r in rows if r["peak_bytes"] > r["estimate_bytes"]]
    if over:
        print(f"the estimate is below the measured peak at {len(over)} size(s): raise the constants in codec.py",
              file=sys.stderr)
    write_result(args.out, result, indent=2)


if __name__ == "__main__":
    main()
