"""Per-image BD-rate against JPEG from an ``rd.py`` result: which pictures the codec loses on, and why.

    python benchmarks/per_image.py results/kodak.json [--out results/per-image-kodak.json]

``rd.py`` reports BD-rate on the mean curve. This splits it by image and sets each image's
BD-rate beside the highest PSNR neurocodec and JPEG reach on it (at quality 100): a codec whose
quality stops rising early has to be compared with JPEG where JPEG is expensive, so its BD-rate
suffers exactly on the pictures where its ceiling is lowest. The rank correlation of the two says
how much of the loss that ceiling explains. Nothing is re-encoded: it reads the per-image points.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import load  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402
from rd import bd_rate  # noqa: E402


def curves(result: dict, codec: str) -> dict[str, list[dict]]:
    """image -> that image's (bpp, psnr) points of ``codec``, in quality order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for point in result["codecs"][codec]["points"]:
        for im in point["per_image"]:
            out[im["image"]].append({"bpp": im["bpp"], "psnr": im["psnr"]})
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", help="an rd.py JSON (or REV:PATH)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from scipy.stats import spearmanr

    result = load(args.result)
    ours, jpeg = curves(result, "neurocodec"), curves(result, "jpeg")
    rows = []
    for image in sorted(ours):
        rows.append({
            "image": image,
            "bd_rate_vs_jpeg_percent": bd_rate(jpeg[image], ours[image]),
            "top_psnr_db": max(x["psnr"] for x in ours[image]),
            "jpeg_top_psnr_db": max(x["psnr"] for x in jpeg[image]),
        })
    known = [r for r in rows if r["bd_rate_vs_jpeg_percent"] is not None]
    record = {
        "command": command(argv),
        "git_revision": git_revision(),
        "source": {"file": args.result, "git_revision": result["git_revision"], "model": result["model"]},
        "dataset": result["dataset"],
        "spearman_bd_rate_vs_top_psnr": float(spearmanr([r["bd_rate_vs_jpeg_percent"] for r in known],
                                                        [r["top_psnr_db"] for r in known]).statistic),
        "images": sorted(rows, key=lambda r: (r["bd_rate_vs_jpeg_percent"] is None, r["bd_rate_vs_jpeg_percent"])),
    }
    print(f"{result['dataset']}, {result['model']['id']}: per-image BD-rate vs JPEG")
    print(f"{'image':<44} {'BD-rate':>8} {'top dB':>7} {'JPEG top':>9}")
    for r in record["images"]:
        bd = "n/a" if r["bd_rate_vs_jpeg_percent"] is None else f"{r['bd_rate_vs_jpeg_percent']:+.1f} %"
        print(f"{r['image'][:44]:<44} {bd:>8} {r['top_psnr_db']:>7.2f} {r['jpeg_top_psnr_db']:>9.2f}")
    print(f"Spearman rank correlation of BD-rate with top PSNR: {record['spearman_bd_rate_vs_top_psnr']:+.2f}")
    if args.out:
        write_result(args.out, record)
    return record


if __name__ == "__main__":
    main()
