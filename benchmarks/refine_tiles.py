"""What tiling costs the encoder's latent search (effort 1 or 2; docs/scaling.md), per halo width.

    python benchmarks/refine_tiles.py [DIR] [--halos 2 3 4 5] [--images 4] [--tile 16] [--effort 1] [--no-large]

Images above ~2.4 MP are refined tile by tile, each tile with ``tiling.REFINE_HALO`` latents of
halo; near a tile's edge a halo narrower than the reach of g_s (5 latents) and of the context
model (2 x slices, 8 for the shipped model) shows the search an approximate cost. At effort 0 tiling changes nothing (``speed.py``'s seams: the files
are byte-identical), so coding the same picture whole and in forced small tiles at effort 1
isolates what each halo costs the search. Small tiles (16 latents, 256 pixels) put far more of
each picture near an edge than the codec's 64-latent tiles do, so this is an upper bound. Uses
the held-out photos' top-left 768x512 crops (never Kodak); then, for what each halo costs in
time and memory, encodes the first of them resized to 2560x1920 on the codec's own tiles, in a
fresh process per halo and round. Writes
``benchmarks/results/refine_tiles.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
from provenance import git_revision, write_result  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"
QUALITIES = (25, 50, 75)


LARGE = (1920, 2560)


def large_child(path: Path, halo: int, args) -> dict:
    """In a fresh process: ``path`` resized to 2560x1920 (4.9 MP, 120x160 latents, six tiles)
    encoded twice at quality 50 with this search halo; the best time, and the resident memory's
    high-water mark above what the process held once the model and the picture were loaded."""
    from PIL import Image

    import torch

    torch.set_num_threads(args.threads)
    model = zoo.load(args.model)
    with Image.open(path) as im:
        pic = io.Picture(np.asarray(im.convert("RGB").resize(LARGE[::-1], Image.LANCZOS)).copy(), None)
    tiling.REFINE_HALO = halo  # read by refine.refine at each call; this process does nothing else
    times = []
    with peak_above_start() as peak:
        for _ in range(2):
            t = time.perf_counter()
            data = codec.encode(pic, 50, model, effort=args.effort).data
            times.append(time.perf_counter() - t)
    return {"seconds": min(times), "bytes": len(data), "peak_bytes": peak.bytes}


def time_large(path: Path, args) -> dict:
    """``large_child`` per halo, in two rounds (the halos in order, then reversed, so a drift in
    the machine's speed does not favour either end); the best time and the largest peak."""
    runs: dict[int, list[dict]] = {h: [] for h in args.halos}
    for order in (args.halos, args.halos[::-1]):
        for halo in order:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--large-child", str(halo), str(path),
                   "--model", args.model, "--effort", str(args.effort), "--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[halo].append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = runs[halo][-1]
            peak = "?" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**30:.2f} GiB"
            print(f"2560x1920 at halo {halo}: {r['seconds']:.2f} s, {r['bytes']} bytes, peak {peak}", flush=True)
    out = {"source": path.name, "size": list(LARGE), "quality": 50, "fresh_process_per_run": True, "by_halo": {}}
    for halo, rs in runs.items():
        peaks = [r["peak_bytes"] for r in rs]
        out["by_halo"][str(halo)] = {"seconds": round(min(r["seconds"] for r in rs), 2),
                                     "seconds_runs": [round(r["seconds"], 2) for r in rs], "bytes": rs[0]["bytes"],
                                     "peak_bytes": None if None in peaks else max(peaks)}
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
    ap.add_argument("--large-child", nargs=2, metavar=("HALO", "PATH"), help=argparse.SUPPRESS)  # internal
    args = ap.parse_args(argv)
    if args.large_child:
        print(json.dumps(large_child(Path(args.large_child[1]), int(args.large_child[0]), args)))
        return {}

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
                try:
                    e = codec.encode(pic, q, model, reconstruct=True, tile=args.tile, effort=args.effort)
                finally:
                    tiling.REFINE_HALO = shipped
                b1, p1 = len(e.data), psnr(e.reconstruction.color, pic.pixels)
                row["tiled"][str(halo)] = {"bytes": b1, "psnr": p1, "bytes_percent": 100 * (b1 / b0 - 1),
                                           "psnr_delta_db": p1 - p0}
            rows.append(row)
            print(f"{f.name} q{q}: {b0} bytes whole; tiled, by halo: " + ", ".join(
                f"{h}: {t['bytes_percent']:+.2f} % {t['psnr_delta_db']:+.3f} dB" for h, t in row["tiled"].items()),
                flush=True)
    large = time_large(files[0], args) if args.large else None
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
    write_result(args.out, result)
    for halo, v in by_halo.items():
        print(f"halo {halo}: bytes {v['mean_bytes_percent']:+.3f} % on average, at most {v['max_bytes_percent']:+.3f} %; "
              f"PSNR within {v['max_abs_psnr_delta_db']:.3f} dB")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
