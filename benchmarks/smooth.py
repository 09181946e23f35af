"""What flat and smoothly shaded pictures cost: the content photos never show a model.

    python benchmarks/smooth.py [--models ID,ID] [--qualities 25,75] [--out PATH]

Screenshots, graphics, rendered gradients and studio backdrops hold areas with no noise at all.
A hyperprior trained on photos has never seen one, and how it predicts such an area's latents
decides whether the area is nearly free or costs as much as a textured one. Each picture here is
made in code (no data needed): flat greys and colours and linear ramps at 512 x 512, and a flat
grey at 2048 x 2048 (coded in tiles). Pillow's JPEG, WebP and AVIF at quality 75 stand beside it.
Writes ``benchmarks/results/smooth.json`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from neurocodec import baselines, codec, io, metrics, zoo  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402


def ramp(size: int, start: tuple[int, int, int], end: tuple[int, int, int], diagonal: bool) -> np.ndarray:
    """A linear 8-bit ramp from ``start`` (top, or top left) to ``end`` (bottom, or bottom right)."""
    t = np.linspace(0.0, 1.0, size)
    w = (t[:, None] + t[None, :]) / 2 if diagonal else np.repeat(t[:, None], size, 1)
    a, b = np.array(start, float), np.array(end, float)
    return np.round(a + (b - a) * w[:, :, None]).astype(np.uint8)


def pictures() -> dict[str, np.ndarray]:
    out = {f"grey {g}": np.full((512, 512, 3), g, np.uint8) for g in (0, 64, 128, 192, 255)}
    for name, rgb in (("red", (200, 60, 40)), ("blue", (30, 120, 210)), ("cream", (250, 240, 200))):
        out[f"flat {name}"] = np.full((512, 512, 3), rgb, np.uint8)
    out["ramp grey 64-192, vertical"] = ramp(512, (64,) * 3, (192,) * 3, diagonal=False)
    out["ramp sky, vertical"] = ramp(512, (90, 140, 215), (200, 220, 245), diagonal=False)
    out["ramp orange-purple, diagonal"] = ramp(512, (240, 150, 60), (110, 60, 160), diagonal=True)
    out["grey 128, 2048x2048"] = np.full((2048, 2048, 3), 128, np.uint8)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated model IDs, retired ones included (their "
                   "files on $NEUROCODEC_WEIGHTS_PATH) [default: the default model]")
    p.add_argument("--qualities", default="25,75")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "smooth.json")
    args = p.parse_args(argv)
    revision = git_revision()
    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    ids = args.models.split(",") if args.models else [zoo.DEFAULT_MODEL]  # retired ones too, from the weights path
    pics = pictures()
    rows = []
    for name, pixels in pics.items():
        row = {"picture": name, "size": list(pixels.shape[:2]), "neurocodec": {}, "pillow_q75": {}}
        for c in baselines.available():
            coded = baselines.compress(pixels, c, 75)
            row["pillow_q75"][c] = {"bytes": len(coded.data), "psnr": metrics.psnr(pixels, coded.pixels)}
        rows.append(row)
    models = []
    for mid in ids:
        model = zoo.load(mid)
        models.append({"id": mid, "weights_sha256": model.card["sha256"]})
        for row, pixels in zip(rows, pics.values()):
            pic = io.load(pixels)
            for q in qualities:
                enc = codec.encode(pic, q, model, reconstruct=True)
                row["neurocodec"].setdefault(mid, {})[str(q)] = {
                    "bytes": len(enc.data), "psnr": metrics.psnr(pixels, enc.reconstruction.color)}
            sizes = ", ".join(f"q{q} {row['neurocodec'][mid][str(q)]['bytes']:,} B" for q in qualities)
            print(f"{mid:<22} {row['picture']:<30} {sizes}", flush=True)
    for row in rows:
        print(f"{'pillow q75':<22} {row['picture']:<30} "
              + ", ".join(f"{c} {v['bytes']:,} B" for c, v in row["pillow_q75"].items()))
    result = {
        "command": command(argv),
        "git_revision": revision, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch_threads": args.threads, "models": models, "qualities": qualities, "pictures": rows,
    }
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
