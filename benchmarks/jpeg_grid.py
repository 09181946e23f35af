"""How much JPEG gains on pictures that were JPEGs before: its rate with the 8x8 grid kept vs moved.

    python benchmarks/jpeg_grid.py DIR [--held-out 16] [--shift 4] [--name NAME]

photos-train consists of JPEG files. Re-encoding a decoded JPEG with JPEG on the same 8x8 grid is
cheap: the blocks' coefficients are already quantized, so JPEG looks better against any other
codec on such pictures than on camera or film originals. This measures the effect with JPEG
alone: every image is cropped twice to the same size, once on the source's grid (rows and columns
from 0) and once moved by ``--shift`` pixels (not a multiple of 8), both are encoded at the same
qualities, and the BD-rate of the moved crops against the kept ones is the extra rate JPEG needs
once its grid no longer matches the source's. Run it on Kodak (PNG from film scans) as a control.
Writes ``results/jpeg-grid-NAME.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from provenance import git_revision, command, write_result  # noqa: E402
from rd import bd_rate  # noqa: E402

from neurocodec import baselines, io, metrics  # noqa: E402

QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def curve(crops: list[np.ndarray]) -> list[dict]:
    points = []
    for q in QUALITIES:
        coded = [baselines.compress(c, "jpeg", q) for c in crops]
        points.append({
            "quality": q,
            "bpp": float(np.mean([8 * len(k.data) / (c.shape[0] * c.shape[1]) for c, k in zip(crops, coded)])),
            "psnr": float(np.mean([metrics.psnr(c, k.pixels) for c, k in zip(crops, coded)])),
        })
    return points


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path)
    p.add_argument("--held-out", type=int, default=0, metavar="N", help="only the files rd.py --held-out N uses")
    p.add_argument("--shift", type=int, default=4, help="pixels to move the grid by (not a multiple of 8)")
    p.add_argument("--name", default=None, help="results file stem [default: heldout or the folder's name]")
    args = p.parse_args(argv)
    if args.shift <= 0 or args.shift % 8 == 0:
        p.error("--shift must be positive and not a multiple of 8 (that keeps the grid)")
    from neurocodec.train.data import image_files, split

    files = image_files(args.dir)
    if args.held_out:
        files = split(files, args.held_out)[1]
    pad = 8 * ((args.shift + 7) // 8)  # both crops lose the same number of rows and columns
    kept, moved = [], []
    for f in files:
        a = io.load(f).color
        h, w = a.shape[0] - pad, a.shape[1] - pad
        kept.append(np.ascontiguousarray(a[:h, :w]))
        moved.append(np.ascontiguousarray(a[args.shift : args.shift + h, args.shift : args.shift + w]))
    on_grid, off_grid = curve(kept), curve(moved)
    name = args.name or ("heldout" if args.held_out else args.dir.name)
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "dataset": args.dir.name + (f" (held-out: every {args.held_out}th file)" if args.held_out else ""),
        "images": len(files),
        "shift_px": args.shift,
        "jpeg_on_source_grid": on_grid,
        "jpeg_off_source_grid": off_grid,
        "bd_rate_off_vs_on_grid_percent": bd_rate(on_grid, off_grid),
    }
    out = HERE / "results" / f"jpeg-grid-{name}.json"
    write_result(out, result)
    print(f"{result['dataset']}, {len(files)} images: JPEG needs {result['bd_rate_off_vs_on_grid_percent']:+.1f} % "
          f"rate when its grid is moved {args.shift} px off the source's; wrote {out}")
    return result


if __name__ == "__main__":
    main()
