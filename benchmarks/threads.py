"""Does the thread count change the bytes an encoder writes? (docs/determinism.md)

    python benchmarks/threads.py [IMAGE] [--quality 50] [--efforts 0 1 2] [--threads 1 2 3]

Effort 0 promises the same file for an image, quality and model at every thread count (a test
checks it on small pictures); efforts 1 and 2 search the latents by gradient descent, whose
backward pass sums in float32 in an order that depends on the thread count, so their files may
differ. This encodes one picture (by default Kodak's first, which the docs cite) at each effort
and thread count, and records every file's size and SHA-256 and whether it decodes to the same
pixels as the 1-thread file's. Writes ``benchmarks/results/threads.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from neurocodec import codec, io, zoo  # noqa: E402
from provenance import command, git_revision, write_result  # noqa: E402

DEFAULT_IMAGE = ROOT.parent / "shared" / "datasets" / "kodak" / "kodim01.png"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, nargs="?", default=DEFAULT_IMAGE)
    p.add_argument("--quality", type=int, default=50)
    p.add_argument("--efforts", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--model", default=zoo.DEFAULT_MODEL)
    p.add_argument("--out", type=Path, default=HERE / "results" / "threads.json")
    args = p.parse_args(argv)
    if not args.image.is_file():
        p.error(f"{args.image} is not a file (give a picture's path)")
    revision = git_revision()
    model = zoo.load(args.model)
    pic = io.load(args.image)
    rows = []
    for effort in args.efforts:
        first = None
        for threads in args.threads:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            data = codec.encode(pic, args.quality, model, effort=effort).data
            seconds = time.perf_counter() - t0
            torch.set_num_threads(1)  # decode at one thread count: only the encoder is under test
            pixels = codec.decode(data).pixels
            if first is None:
                first = (data, pixels)
            row = {
                "effort": effort, "threads": threads, "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "same_file_as_first": data == first[0],
                "same_pixels_as_first": bool(np.array_equal(pixels, first[1])),
                "encode_seconds": round(seconds, 2),
            }
            rows.append(row)
            print(f"effort {effort}  {threads} threads  {len(data):,} B  {row['sha256'][:12]}  "
                  f"same file as {args.threads[0]} thread(s): {row['same_file_as_first']}", flush=True)
    result = {
        "command": command(argv), "git_revision": revision, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "model": args.model, "weights_sha256": model.card["sha256"], "image": args.image.name,
        "quality": args.quality, "torch": torch.__version__, "rows": rows,
    }
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
