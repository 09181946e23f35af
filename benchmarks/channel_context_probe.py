"""How many bits a channel-slice context (Minnen & Singh 2020) would save on top of a photo model's
checkerboard, with the model's transforms frozen: a probe for the next entropy model, not a codec.

    python benchmarks/channel_context_probe.py [DIR] [--slices 4] [--steps 4000] [--model ID]

The latent channels are cut into ``--slices`` groups. Decoding order stays parallel: the anchors
slice by slice, then the other half slice by slice, so each slice's entropy parameters may read
the slices before it (their anchors in the first half, everything in the second) through a 3x3
convolution masked per group, plus the checkerboard's own parameters. The new network adds to
those parameters (last layer starting at zero, so it starts as the shipped model) and is trained
alone, on the rate of y only: with g_a, g_s and the checkerboard frozen, the distortion does not
depend on it (the rounding offsets move with the means, but straight-through it has no gradient).
Training crops come from the non-held-out part of DIR, 256x256, levels drawn uniformly; the
result is y's estimated bits (rounded latents, float model) on the first 12 held-out photos at
every level, with and without the slices. z's bits do not change.

Writes ``benchmarks/results/channel-context-probe.json`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from neurocodec import zoo  # noqa: E402
from neurocodec.nets.checkerboard import anchor_mask  # noqa: E402
from neurocodec.nets.priors import gaussian_likelihood  # noqa: E402
from neurocodec.train.data import CropSampler, evaluation_images, image_files, split  # noqa: E402
from provenance import git_revision  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "photos-train"


class SliceContext(nn.Module):
    """Entropy-parameter corrections for ``slices`` channel groups; group s reads groups < s only."""

    def __init__(self, m: int, slices: int, hidden: int = 64, kernel: int = 3):
        super().__init__()
        if m % slices:
            raise ValueError(f"{m} channels do not split into {slices} slices")
        self.m, self.slices, self.kernel = m, slices, kernel
        g = m // slices
        self.y_conv = nn.Conv2d(m, slices * hidden, kernel, padding=kernel // 2)
        mask = torch.zeros(slices * hidden, m, 1, 1)
        for s in range(slices):
            mask[s * hidden:(s + 1) * hidden, : s * g] = 1
        self.register_buffer("mask", mask)
        self.p_conv = nn.Conv2d(2 * m, slices * hidden, 1)
        self.mid = nn.Conv2d(slices * hidden, slices * hidden, 1, groups=slices)
        self.out = nn.Conv2d(slices * hidden, 2 * m, 1, groups=slices)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor):
        h = nn.functional.conv2d(y_hat, self.y_conv.weight * self.mask, self.y_conv.bias, padding=self.kernel // 2)
        h = torch.relu(self.mid(torch.relu(h + self.p_conv(torch.cat([scales, means], 1)))))
        b, _, r, c = h.shape
        o = self.out(h).view(b, self.slices, 2, self.m // self.slices, r, c)
        return o[:, :, 0].reshape(b, self.m, r, c), o[:, :, 1].reshape(b, self.m, r, c)


def coded_parameters(net, ctx: SliceContext | None, y: torch.Tensor, level: torch.Tensor):
    """(scales, means) of every latent in the decoder's order: anchors slice by slice, the
    checkerboard's second pass on those anchors, then the rest slice by slice."""
    with torch.no_grad():
        z = torch.round(net.h_a(y) * net.interpolate(net.hyper_gain, level))
        hyper = net.h_s(z * net.interpolate(net.inv_hyper_gain, level))
        first = net._entropy_params(hyper, None)
    anchor = anchor_mask(*y.shape[2:], device=y.device)
    slices = ctx.slices if ctx is not None else 1
    g = y.shape[1] // slices
    y_hat, scales, means = torch.zeros_like(y), torch.zeros_like(y), torch.zeros_like(y)

    def half(base: torch.Tensor, where: torch.Tensor, visible):
        nonlocal y_hat
        s0, m0 = base.chunk(2, 1)
        for s in range(slices):
            c = slice(s * g, (s + 1) * g)
            ds, dm = ctx(visible(), s0, m0) if ctx is not None else (0 * s0, 0 * m0)
            sc, mu = s0[:, c] + ds[:, c], m0[:, c] + dm[:, c]
            q = y[:, c] + (torch.round(y[:, c] - mu) - (y[:, c] - mu)).detach()
            y_hat = y_hat.clone()
            y_hat[:, c] = torch.where(where, q, y_hat[:, c])
            scales[:, c] = torch.where(where, sc, scales[:, c])
            means[:, c] = torch.where(where, mu, means[:, c])

    half(first, anchor, lambda: y_hat * anchor)
    with torch.no_grad():
        second = net._entropy_params(hyper, (y_hat * anchor).detach())
    half(second, ~anchor, lambda: y_hat)
    return scales, means


@torch.no_grad()
def y_bpp(net, ctx, latents: list[torch.Tensor], pixels: int) -> list[float]:
    out = []
    for lvl in range(net.config.levels):
        level = torch.tensor([float(lvl)])
        bits = 0.0
        for y0 in latents:
            y = y0 * net.y_gain(net.gain, level)
            scales, means = coded_parameters(net, ctx, y, level)
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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    model = zoo.load(args.model) if args.model else zoo.load()
    net = model.net.float().eval().requires_grad_(False)
    train_files, held = split(image_files(args.data), args.held_out)
    sampler = CropSampler(train_files, 256, torch.device("cpu"), seed=args.seed + 5)
    held_x = evaluation_images(held[:12])
    pixels = sum(x.shape[2] * x.shape[3] for x in held_x)
    with torch.no_grad():
        held_y = [net.g_a(x) for x in held_x]

    ctx = SliceContext(net.config.m, args.slices)
    base = y_bpp(net, None, held_y, pixels)
    opt = torch.optim.Adam(ctx.parameters(), lr=args.lr)
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
        scales, means = coded_parameters(net, ctx, y, level)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bpp = -torch.log2(gaussian_likelihood(noisy, scales, means)).sum() / (args.batch * 256 * 256)
        opt.zero_grad()
        bpp.backward()
        opt.step()
        if (step + 1) % 200 == 0:
            log.append({"step": step + 1, "train_y_bpp": round(bpp.item(), 4)})
            print(log[-1], flush=True)
    sliced = y_bpp(net, ctx, held_y, pixels)

    result = {
        "command": "python benchmarks/channel_context_probe.py " + " ".join(sys.argv[1:]),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"id": model.model_id, "weights_sha256": model.card["sha256"]},
        "dataset": f"{Path(args.data).name}: trained on the files the trainer trains on, "
                   f"evaluated on the first 12 held-out (every {args.held_out}th)",
        "slices": args.slices, "steps": args.steps, "batch": args.batch, "lr": args.lr,
        "lr_halved_at": args.lr_drop_at, "context_parameters": sum(p.numel() for p in ctx.parameters()),
        "seconds": round(time.time() - started, 1),
        "levels": [{"level": i, "y_bpp_checkerboard": round(b, 5), "y_bpp_with_slices": round(s, 5),
                    "y_rate_change_percent": round(100 * (s / b - 1), 2)} for i, (b, s) in enumerate(zip(base, sliced))],
        "training_log": log,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["levels"]:
        print(row)


if __name__ == "__main__":
    main()
