"""What tiling costs the encoder's latent search (effort 1 or 2; docs/scaling.md), per halo width.

    python benchmarks/refine_tiles.py [DIR] [--halos 2 3 4 5] [--images 4] [--tile 16] [--effort 1] [--no-large]

Images above ~2.4 MP are refined tile by tile, each tile with ``tiling.REFINE_HALO`` latents of
halo; near a tile's edge a narrower halo than the reach of g_s and of the context model shows the
search an approximate cost. At effort 0 tiling changes nothing (``speed.py``'s seams: the files
are byte-identical), so coding the same picture whole and in forced small tiles at effort 1
isolates what each halo costs the search. Small tiles (16 latents, 256 pixels) put far more of
each picture near an edge than the codec's 64-latent tiles do, so this is an upper bound. Uses
the held-out photos' top-left 768x512 crops (never Kodak); then, for what each halo costs in
time, encodes the first of them resized to 2560x1920 on the codec's own tiles. Writes
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
from memory import peak_above_start  # noqa: E402
from provenance import git_revision  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"
QUALITIES = (25, 50, 75)


def time_large(path: Path, model, args) -> dict:
    """The search's time and memory on the codec's own 64-latent tiles per halo: ``path`` resized
    to 2560x1920 (4.9 MP, 160x120 latents, six tiles), quality 50, the best of two encodes; the
    peak is the resident memory's high-water mark above what the process held before the encode."""
    from PIL import Image

    with Image.open(path) as im:
        pic = io.Picture(np.asarray(im.convert("RGB").resize((2560, 1920), Image.LANCZOS)).copy(), None)
    shipped, out = tiling.REFINE_HALO, {"source": path.name, "size": [1920, 2560], "quality": 50, "by_halo": {}}
    for halo in args.halos:
        tiling.REFINE_HALO = halo
        times, peaks = [], []
        for _ in range(2):
            with peak_above_start() as peak:
                t = time.perf_counter()
                data = codec.encode(pic, 50, model, effort=args.effort).data
                times.append(time.perf_counter() - t)
            peaks.append(peak.bytes)
        peak = None if None in peaks else max(peaks)
        out["by_halo"][str(halo)] = {"seconds": round(min(times), 2), "bytes": len(data), "peak_bytes": peak}
        print(f"2560x1920 at halo {halo}: {min(times):.2f} s, {len(data)} bytes, peak "
              f"{'?' if peak is None else f'{peak / 2**30:.2f} GiB'} above the process' start", flush=True)
    tiling.REFINE_HALO = shipped
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--held-out", type=int, default=16, metavar="N", help="every N-th file, as the trainer holds out")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--tile", type=int, default=16, help="forced tile side in latents")
    ap.add_argument("--effort", type=int, default=1)
    ap.add_argument("--halos", type=int, nargs="+", default=[2, 3, 4, 5], help="search halos to compare, latents")
    ap.add_argument("--large", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the search on a 2560x1920 image, on the codec's own tiles")
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "refine_tiles.json")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    model = zoo.load(args.model)
    files = split(image_files(args.folder), args.held_out)[1][: args.images]
    start, rows, shipped = time.time(), [], tiling.REFINE_HALO
    for f in files:
        full = io.load(f)
        pic = io.Picture(np.ascontiguousarray(full.pixels[:512, :768]), full.icc)
        for q in QUALITIES:
            whole = codec.encode(pic, q, model, reconstruct=True, effort=args.effort)
            b0, p0 = len(whole.data), psnr(whole.reconstruction.color, pic.pixels)
            row = {"image": f.name, "quality": q, "whole_bytes": b0, "whole_psnr": p0, "tiled": {}}
            for halo in args.halos:
                tiling.REFINE_HALO = halo  # read by refine.refine at each call
                e = codec.encode(pic, q, model, reconstruct=True, tile=args.tile, effort=args.effort)
                b1, p1 = len(e.data), psnr(e.reconstruction.color, pic.pixels)
                row["tiled"][str(halo)] = {"bytes": b1, "psnr": p1, "bytes_percent": 100 * (b1 / b0 - 1),
                                           "psnr_delta_db": p1 - p0}
            tiling.REFINE_HALO = shipped
            rows.append(row)
            print(f"{f.name} q{q}: {b0} bytes whole; tiled, by halo: " + ", ".join(
                f"{h}: {t['bytes_percent']:+.2f} % {t['psnr_delta_db']:+.3f} dB" for h, t in row["tiled"].items()),
                flush=True)
    large = time_large(files[0], model, args) if args.large else None
    by_halo = {}
    for halo in map(str, args.halos):
        cells = [r["tiled"][halo] for r in rows]
        by_halo[halo] = {"mean_bytes_percent": float(np.mean([c["bytes_percent"] for c in cells])),
                         "max_bytes_percent": max(c["bytes_percent"] for c in cells),
                         "max_abs_psnr_delta_db": max(abs(c["psnr_delta_db"]) for c in cells)}
    result = {
        "command": "python benchmarks/refine_tiles.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "effort": args.effort, "tile_latents": args.tile, "shipped_halo_latents": shipped,
        "crop": [512, 768], "threads": args.threads, "seconds": round(time.time() - start, 1),
        "by_halo": by_halo, "large": large, "images": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for halo, v in by_halo.items():
        print(f"halo {halo}: bytes {v['mean_bytes_percent']:+.3f} % on average, at most {v['max_bytes_percent']:+.3f} %; "
              f"PSNR within {v['max_abs_psnr_delta_db']:.3f} dB")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
