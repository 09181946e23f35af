"""How well ``--bpp`` / ``--psnr`` targets land: every image of a folder at a few targets.

    python benchmarks/targets.py [DIR] [--bpp 0.25,0.5,1.0] [--psnr 28,30,32] [--model ID]

A target is met within 5 % of the bpp or 0.2 dB of the PSNR (``neurocodec.targets``); a miss
carries the codec's own reason (the model's range, or adjacent settings straddling the target).
Writes ``benchmarks/results/targets.json`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from neurocodec import io, targets, zoo  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402

DEFAULT_DIR = HERE.parent.parent / "shared" / "datasets" / "kodak"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    p.add_argument("--bpp", default="0.25,0.5,1.0")
    p.add_argument("--psnr", default="28,30,32")
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "targets.json")
    args = p.parse_args(argv)
    revision = git_revision()  # of the code that runs, not of the tree when the run ends
    torch.set_num_threads(args.threads)
    model = zoo.load(zoo.resolve(args.model))
    files = sorted(f for f in args.dir.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    pictures = [(f.name, io.load(f)) for f in files]
    asks = [("bpp", float(v)) for v in args.bpp.split(",") if v] + [("psnr", float(v)) for v in args.psnr.split(",") if v]
    summary = []
    for kind, value in asks:
        rows = []
        for name, pic in pictures:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", targets.TargetWarning)
                r = targets.encode_to_target(pic, model, **{f"target_{kind}": value})
            rows.append({"image": name, "bpp": r.bpp, "psnr": r.psnr, "met": r.met, "note": r.note})
        errors = [abs(r[kind] - value) / (value if kind == "bpp" else 1) for r in rows]
        entry = {"target": kind, "value": value, "met": sum(r["met"] for r in rows), "images": len(rows),
                 "worst_error": max(errors), "unit": "relative" if kind == "bpp" else "dB", "per_image": rows}
        summary.append(entry)
        print(f"{kind} {value}: met on {entry['met']}/{len(rows)}, worst error {entry['worst_error']:.3f} "
              f"{entry['unit']}; misses: {sorted({r['note'].split(' is ')[0].split(';')[0] for r in rows if not r['met']})}",
              flush=True)
    result = {
        "command": command(argv),
        "git_revision": revision, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "dataset": args.dir.name, "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "tolerance": {"bpp_relative": targets.BPP_TOLERANCE, "psnr_db": targets.PSNR_TOLERANCE},
        "targets": summary,
    }
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
