"""How far decoded pixels move when g_s runs in float64 instead of float32 (docs/determinism.md).

    python benchmarks/synthesis_rounding.py [DIR] [--qualities 12,50,88] [--limit N] [--model ID]

Everything before g_s is exact (integer streams, fixed-point entropy parameters), so a file's
y_hat is the same on every machine; g_s is float32 and is not. Other hardware, BLAS builds or
torch versions round differently; a float64 copy of g_s is the nearest stand-in for them that one
machine has. For every image and quality the real file is encoded, its y_hat decoded exactly as
``neurocodec.decode`` does (the float32 pixels are checked against ``decode``'s), and g_s is run
again in float64. Reports the largest 8-bit difference and the fraction of values that differ.
Writes ``benchmarks/results/synthesis_rounding.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from neurocodec import codec, container, io, zoo  # noqa: E402
from neurocodec.container import Stream  # noqa: E402
from neurocodec.nets.inference import transforms  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402
from rd import DEFAULT_DIR  # noqa: E402


@torch.inference_mode()
def measure(model: zoo.PhotoModel, tf32, tf64, pic: io.Picture, quality: int) -> dict:
    data = codec.encode(pic, quality, model).data
    nac = container.unpack(data)
    level = torch.tensor([nac.rate / codec.RATE_SCALE])
    z_int = model.z_coder.decode(nac.stream(Stream.Z), nac.latent_shapes[1])
    scales, means = codec._entropy_parameters(model, z_int, level, "auto")
    y_hat = codec._decode_y(model, nac, scales, means)
    p32 = codec._synthesis(tf32, y_hat, level, pic.height, pic.width, "RGB", "auto")
    if not np.array_equal(p32, np.asarray(codec.decode(data).pixels)):
        raise RuntimeError("the float32 path does not reproduce neurocodec.decode's pixels")
    p64 = codec._synthesis(tf64, y_hat.double(), level.double(), pic.height, pic.width, "RGB", "auto")
    diff = np.abs(p32.astype(int) - p64.astype(int))
    return {"quality": quality, "bytes": len(data), "max_abs_diff": int(diff.max()),
            "fraction_differing": float((diff > 0).mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--qualities", default="12,50,88")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "synthesis_rounding.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    model = zoo.load(args.model)
    if not isinstance(model, zoo.PhotoModel):
        raise SystemExit(f"{args.model} is not a photo model")
    tf32 = transforms(model.net, "cpu")
    tf64 = transforms(copy.deepcopy(model.net).double(), "cpu")
    paths = sorted(args.folder.glob("*.png"))[: args.limit]
    if not paths:
        raise SystemExit(f"no PNG images in {args.folder}")
    started = time.time()
    per_image = []
    for path in paths:
        pic = io.load(path)
        points = [measure(model, tf32, tf64, pic, q) for q in qualities]
        per_image.append({"image": path.name, "points": points})
        print(path.name, [(p["quality"], p["max_abs_diff"], f"{100 * p['fraction_differing']:.4f} %") for p in points],
              flush=True)
    fractions = [p["fraction_differing"] for im in per_image for p in im["points"]]
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "folder": args.folder.name,
        "images": len(paths),
        "qualities": qualities,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - started, 1),
        "decodes": len(fractions),
        "decodes_with_a_difference": sum(f > 0 for f in fractions),
        "max_abs_diff": max(p["max_abs_diff"] for im in per_image for p in im["points"]),
        "fraction_differing_mean": float(np.mean(fractions)),
        "fraction_differing_max": float(np.max(fractions)),
        "per_image": per_image,
    }
    write_result(args.out, result, indent=2)
    print(f"{result['decodes_with_a_difference']}/{result['decodes']} decodes differ; at most "
          f"{result['max_abs_diff']} level(s), {100 * result['fraction_differing_mean']:.4f} % of values on average; "
          f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
