"""How many bits a channel-slice context (Minnen & Singh 2020) would save on top of a photo model's
checkerboard, with the model's transforms frozen.

    python benchmarks/channel_context_probe.py [DIR] [--slices 4] [--steps 4000] [--model ID] [--save-init F]

The latent channels are cut into ``--slices`` groups. Decoding order stays parallel: the anchors
slice by slice, then the other half slice by slice, so each slice's entropy parameters may read
the slices before it (their anchors in the first half, everything in the second) through a 3x3
convolution masked per group, plus the checkerboard's own parameters. The new network adds to
those parameters (last layer starting at zero, so it starts as the shipped model) and is trained
alone, on the rate of y only: with g_a, g_s and the checkerboard frozen, the distortion does not
depend on it (the rounding offsets move with the means, but straight-through it has no gradient).
Training crops come from the non-held-out part of DIR, 256x256, levels drawn uniformly; the
result is y's estimated bits (rounded latents, float model) on the first 12 held-out photos at
every level, with and without the slices. z's bits do not change. The network is the codec's
(``nets.channel_context``); ``--save-init`` writes the model with the trained slices as a start
for the trainer, which is how the first sliced model began.

Writes ``benchmarks/results/channel-context-probe.json`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from neurocodec import zoo  # noqa: E402
from neurocodec.nets import build  # noqa: E402
from neurocodec.nets.checkerboard import CheckerboardHyperprior  # noqa: E402
from neurocodec.nets.priors import gaussian_likelihood  # noqa: E402
from neurocodec.train.data import CropSampler, evaluation_images, image_files, split  # noqa: E402
from neurocodec.train.export import trainable_state  # noqa: E402
from neurocodec.train.trainer import save_portable  # noqa: E402
from provenance import git_revision, write_result  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"


def sliced_model(model, slices: int, width: int = 64):
    """``model``'s network (its trainable state: a density of z refitted to its tables) inside a
    ``SlicedCheckerboardHyperprior`` whose slice context starts at zero, so it starts as ``model``."""
    base_state, step = trainable_state(zoo.weights_file(model.model_id))
    net = build(dataclasses.replace(model.net.config, channel_slices=slices, slice_width=width))
    missing, unexpected = net.load_state_dict(base_state, strict=False)
    if unexpected or any(not k.startswith("slices.") for k in missing):
        raise ValueError(f"{model.model_id} does not fit a sliced model: missing {missing}, unexpected {unexpected}")
    return net.float().eval(), step


def coded_parameters(net, y: torch.Tensor, level: torch.Tensor, use_slices: bool = True):
    """(scales, means) of every latent in the decoder's order, with or without the slices."""
    with torch.no_grad():
        z = torch.round(net.h_a(y) * net.interpolate(net.hyper_gain, level))
        hyper = net.h_s(z * net.interpolate(net.inv_hyper_gain, level))
    if use_slices:
        return net._y_parameters(y, hyper)
    return CheckerboardHyperprior._y_parameters(net, y, hyper)


@torch.no_grad()
def y_bpp(net, use_slices: bool, latents: list[torch.Tensor], pixels: int) -> list[float]:
    out = []
    for lvl in range(net.config.levels):
        level = torch.tensor([float(lvl)])
        bits = 0.0
        for y0 in latents:
            y = y0 * net.y_gain(net.gain, level)
            scales, means = coded_parameters(net, y, level, use_slices)
            y_hat = torch.round(y - means) + means
            bits -= torch.log2(gaussian_likelihood(y_hat, scales, means)).sum().item()
        out.append(bits / pixels)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", default=str(DEFAULT_DIR))
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--model", default=None)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-drop-at", type=int, default=1300, help="halve the learning rate from this step on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "channel-context-probe.json")
    p.add_argument("--save-init", type=Path, default=None,
                   help="also write the model with the trained slices as a training start (trainer --init)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    model = zoo.load(args.model) if args.model else zoo.load()
    net, model_step = sliced_model(model, args.slices)
    for name, param in net.named_parameters():
        param.requires_grad_(name.startswith("slices."))
    train_files, held = split(image_files(args.data), args.held_out)
    sampler = CropSampler(train_files, 256, torch.device("cpu"), seed=args.seed + 5)
    held_x = evaluation_images(held[:12])
    pixels = sum(x.shape[2] * x.shape[3] for x in held_x)
    with torch.no_grad():
        held_y = [net.g_a(x) for x in held_x]

    base = y_bpp(net, False, held_y, pixels)
    opt = torch.optim.Adam(net.slices.parameters(), lr=args.lr)
    pool = None
    log = []
    for step in range(args.steps):
        if step == args.lr_drop_at:
            for group in opt.param_groups:
                group["lr"] = args.lr / 2
        if step % 50 == 0:  # g_a on a fresh batch of crops now and then: it is the slow part
            with torch.no_grad():
                pool = net.g_a(sampler.sample(32))
        idx = torch.randint(len(pool), (args.batch,))
        level = torch.randint(net.config.levels, (args.batch,)).float()
        y = pool[idx] * net.y_gain(net.gain, level)
        scales, means = coded_parameters(net, y, level)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bpp = -torch.log2(gaussian_likelihood(noisy, scales, means)).sum() / (args.batch * 256 * 256)
        opt.zero_grad()
        bpp.backward()
        opt.step()
        if (step + 1) % 200 == 0:
            log.append({"step": step + 1, "train_y_bpp": round(bpp.item(), 4)})
            print(log[-1], flush=True)
    sliced = y_bpp(net, True, held_y, pixels)
    if args.save_init:
        save_portable(net, model_step, args.save_init)

    result = {
        "command": "python benchmarks/channel_context_probe.py " + " ".join(sys.argv[1:]),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "dataset": f"{Path(args.data).name}: trained on the files the trainer trains on, "
                   f"evaluated on the first 12 held-out (every {args.held_out}th)",
        "slices": args.slices, "steps": args.steps, "batch": args.batch, "lr": args.lr,
        "lr_halved_at": args.lr_drop_at, "context_parameters": sum(p.numel() for p in net.slices.parameters()),
        "seconds": round(time.time() - started, 1),
        "levels": [{"level": i, "y_bpp_checkerboard": round(b, 5), "y_bpp_with_slices": round(s, 5),
                    "y_rate_change_percent": round(100 * (s / b - 1), 2)} for i, (b, s) in enumerate(zip(base, sliced))],
        "training_log": log,
    }
    write_result(args.out, result)
    for row in result["levels"]:
        print(row)


if __name__ == "__main__":
    main()
