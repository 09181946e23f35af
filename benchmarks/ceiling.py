"""Where a photo model's quality stops: the transform's ceiling against the quantizer's share.

    python benchmarks/ceiling.py [DIR] [--held-out 16] [--images 12] [--model ID]

For every trained level, on the held-out photos (the files the trainer holds out with
``holdout_every=N``, cropped to a multiple of 64 as the trainer's evaluation does), three PSNRs:

* ``psnr_unquantized``: ``g_s(g_a(x))`` with the level's gains and no rounding at all. This is the
  most any rate can buy at that level: the autoencoder's own reconstruction limit.
* ``psnr_rounded``: the codec's float path (latents rounded around their predicted means), with
  ``bpp`` estimated from the model's likelihoods for y plus z's actually coded bytes (within a
  fraction of a percent of a real file; ``rd.py`` measures files).
* ``quantization_loss_db``: the difference. Near zero means more bits cannot help: the
  transforms, not the entropy model or the quantizer, limit quality there, and the remedy is
  transform capacity (more channels, more training), not more levels or a finer quantizer.

Writes ``benchmarks/results/ceiling-MODEL.json`` with the command, git revision and model digest.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from neurocodec import zoo  # noqa: E402
from neurocodec.nets.priors import gaussian_likelihood  # noqa: E402
from neurocodec.train.data import evaluation_images, image_files, split  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR on 8-bit values, as every benchmark here measures it."""
    mse = torch.mean((torch.round(x_hat.clamp(0, 1) * 255) - torch.round(x * 255)) ** 2).item()
    return 10 * math.log10(255**2 / max(mse, 1e-10))


@torch.no_grad()
def ceiling(model, images: list[torch.Tensor]) -> list[dict]:
    net = model.net
    rows = []
    for lvl in range(net.config.levels):
        level = torch.full((1,), float(lvl))
        unq, rnd, bpp = [], [], []
        for x in images:
            y, z = net.analysis(x, level)
            unq.append(psnr(net.synthesis(y, level), x))
            hyper = net.h_s(z * net.interpolate(net.inv_hyper_gain, level))
            scales, means = net._y_parameters(y, hyper)
            y_hat = torch.round(y - means) + means
            rnd.append(psnr(net.synthesis(y_hat, level), x))
            # y: the trained Gaussian model's information content; z: the shipped coder's bytes
            # (a loaded model carries z's coding tables, not the density they were made from).
            y_bits = -torch.log2(gaussian_likelihood(y_hat, scales, means)).sum().item()
            z_int = model.z_coder.clamp(z[0].numpy().astype(np.int64))
            z_bits = 8 * len(model.z_coder.encode(z_int))
            bpp.append((y_bits + z_bits) / (x.shape[2] * x.shape[3]))
        row = {"level": lvl, "lambda": net.config.lambdas[lvl], "bpp": sum(bpp) / len(bpp),
               "psnr_unquantized": sum(unq) / len(unq), "psnr_rounded": sum(rnd) / len(rnd)}
        row["quantization_loss_db"] = row["psnr_unquantized"] - row["psnr_rounded"]
        rows.append(row)
        print(f"level {lvl:2d}  bpp {row['bpp']:.3f}  rounded {row['psnr_rounded']:.2f} dB  "
              f"unquantized {row['psnr_unquantized']:.2f} dB  (quantization costs {row['quantization_loss_db']:.2f} dB)",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    p.add_argument("--held-out", type=int, default=16, metavar="N", help="every N-th file, as the trainer holds out")
    p.add_argument("--images", type=int, default=12, help="how many of those files (the trainer's log uses 12)")
    p.add_argument("--model", default=zoo.DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="default: benchmarks/results/ceiling-MODEL.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out = args.out or HERE / "results" / f"ceiling-{args.model}.json"

    model = zoo.load(args.model)
    files = split(image_files(args.dir), args.held_out)[1][: args.images]
    images = evaluation_images(files)
    start = time.perf_counter()
    rows = ceiling(model, images)
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"id": args.model, "weights_sha256": model.card["sha256"]},
        "dataset": f"{args.dir.name} (held-out: every {args.held_out}th file), first {len(files)}",
        "images": [f.name for f in files],
        "seconds": round(time.perf_counter() - start, 1),
        "levels": rows,
    }
    write_result(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
