"""What tiling costs the encoder's latent search (effort 1 or 2; docs/scaling.md).

    python benchmarks/refine_tiles.py [DIR] [--held-out 16] [--images 4] [--tile 16] [--effort 1]

Images above ~2.4 MP are refined tile by tile, each tile with ``tiling.HALO`` latents of halo,
which is narrower than the reach of g_s and of the channel-slice context: near a tile's edge the
search sees an approximate cost. At effort 0 tiling changes nothing (``speed.py``'s seams: the
files are byte-identical), so coding the same picture whole and in forced small tiles at
effort 1 isolates what the halo costs the search. Small tiles (16 latents, 256 pixels) put far
more of each picture near an edge than the codec's 64-latent tiles do, so this is an upper bound.
Uses the held-out photos' top-left 768x512 crops (never Kodak) and writes
``benchmarks/results/refine_tiles.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from neurocodec import codec, io, tiling, zoo  # noqa: E402
from neurocodec.metrics import psnr  # noqa: E402
from neurocodec.train.data import image_files, split  # noqa: E402
from provenance import git_revision  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"
QUALITIES = (25, 50, 75)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--held-out", type=int, default=16, metavar="N", help="every N-th file, as the trainer holds out")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--tile", type=int, default=16, help="forced tile side in latents")
    ap.add_argument("--effort", type=int, default=1)
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "refine_tiles.json")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    model = zoo.load(args.model)
    files = split(image_files(args.folder), args.held_out)[1][: args.images]
    start, rows = time.time(), []
    for f in files:
        full = io.load(f)
        pic = io.Picture(np.ascontiguousarray(full.pixels[:512, :768]), full.icc)
        for q in QUALITIES:
            coded = {}
            for name, tile in (("whole", None), ("tiled", args.tile)):
                e = codec.encode(pic, q, model, reconstruct=True, tile=tile, effort=args.effort)
                coded[name] = (len(e.data), psnr(e.reconstruction.color, pic.pixels))
            (b0, p0), (b1, p1) = coded["whole"], coded["tiled"]
            rows.append({"image": f.name, "quality": q, "whole_bytes": b0, "whole_psnr": p0, "tiled_bytes": b1,
                         "tiled_psnr": p1, "bytes_percent": 100 * (b1 / b0 - 1), "psnr_delta_db": p1 - p0})
            print(f"{f.name} q{q}: {b0} -> {b1} bytes ({rows[-1]['bytes_percent']:+.2f} %), "
                  f"{p1 - p0:+.3f} dB", flush=True)
    result = {
        "command": "python benchmarks/refine_tiles.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "effort": args.effort, "tile_latents": args.tile, "halo_latents": tiling.HALO,
        "crop": [512, 768], "threads": args.threads, "seconds": round(time.time() - start, 1),
        "max_bytes_percent": max(r["bytes_percent"] for r in rows),
        "mean_bytes_percent": float(np.mean([r["bytes_percent"] for r in rows])),
        "max_abs_psnr_delta_db": max(abs(r["psnr_delta_db"]) for r in rows),
        "images": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"bytes {result['mean_bytes_percent']:+.3f} % on average, at most {result['max_bytes_percent']:+.3f} %; "
          f"PSNR within {result['max_abs_psnr_delta_db']:.3f} dB; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
