"""BD-rate of one neurocodec model against another, from two ``rd.py`` results on the same images.

    python benchmarks/compare.py OLD.json NEW.json [--out results/compare.json]

OLD or NEW may be ``REV:PATH`` to read a results file as committed at git revision REV (e.g.
``925fdbc:benchmarks/results/kodak.json``), so a model can be compared with the one it replaces
after ``rd.py`` has overwritten that file. Writes the BD-rates (PSNR and MS-SSIM axes, over the
overlapping range only) with both files' provenance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from provenance import git_revision, command, write_result  # noqa: E402
from rd import bd_rate, bd_rate_ms_ssim  # noqa: E402


def load(spec: str) -> dict:
    if ":" in spec and not Path(spec).exists():
        return json.loads(subprocess.run(["git", "show", spec], capture_output=True, text=True, check=True,
                                         cwd=HERE.parent).stdout)
    return json.loads(Path(spec).read_text())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--out", type=Path, default=HERE / "results" / "compare.json")
    args = p.parse_args(argv)
    old, new = load(args.old), load(args.new)
    if (old["dataset"], old["images"]) != (new["dataset"], new["images"]):
        raise SystemExit(f"different image sets: {old['dataset']} ({old['images']}) vs {new['dataset']} ({new['images']})")
    a, b = old["codecs"]["neurocodec"]["points"], new["codecs"]["neurocodec"]["points"]
    overlap = [max(min(x["psnr"] for x in a), min(x["psnr"] for x in b)),
               min(max(x["psnr"] for x in a), max(x["psnr"] for x in b))]
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "dataset": new["dataset"], "images": new["images"],
        "old": {"source": args.old, "model": old["model"], "git_revision": old["git_revision"]},
        "new": {"source": args.new, "model": new["model"], "git_revision": new["git_revision"]},
        "psnr_overlap_db": overlap,
        "bd_rate_new_vs_old_percent": bd_rate(a, b),
        "bd_rate_ms_ssim_new_vs_old_percent": bd_rate_ms_ssim(a, b),
    }
    if "jpeg" in old["codecs"] and "jpeg" in new["codecs"]:
        # BD-rate vs JPEG covers the range both curves reach, so a model whose curve reaches higher
        # is also judged where JPEG is strongest; on the old model's range alone both compare alike.
        old_range = (min(x["psnr"] for x in a), max(x["psnr"] for x in a))
        jpeg = new["codecs"]["jpeg"]["points"]
        result["bd_rate_vs_jpeg_on_old_psnr_range_percent"] = {
            "psnr_range_db": list(old_range),
            "old": bd_rate(old["codecs"]["jpeg"]["points"], a, old_range),
            "new": bd_rate(jpeg, b, old_range),
        }
    write_result(args.out, result)
    print(f"{new['model']['id']} vs {old['model']['id']} on {new['dataset']}: BD-rate "
          f"{result['bd_rate_new_vs_old_percent']:+.1f} % (PSNR {overlap[0]:.2f}-{overlap[1]:.2f} dB), "
          f"MS-SSIM axis {result['bd_rate_ms_ssim_new_vs_old_percent']:+.1f} %; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
