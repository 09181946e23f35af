"""How the encoder turns latents into the integers it codes: rate-distortion-optimized rounding.

The decoder reconstructs every latent as ``mean + q`` for the coded integer ``q``; which ``q`` the
encoder sends is its own choice, and the format does not care. Rounding ``d = y - mean`` to the
nearest integer minimizes each latent's error but not the file's cost: where the entropy model is
confident (small scale), a residual of ±1 costs many more bits than 0, and a latent just past
±0.5 buys that ±1 for a small cut in error. ``rd_round`` moves a nonzero ``q`` one step toward
the mean wherever the bits saved exceed ``weight`` times the growth of the squared latent error
(in the gained latent space, where one step is one quantization bin at every quality), the
classic rate-distortion-optimized quantization of video coders (e.g. H.264's trellis or
"RDOQ"), here with the Gaussian's own rates. Decisions are per latent and greedy: a moved anchor
changes the context the other half is predicted from, and that half is then rounded against
the parameters the decoder will really use.

It is effort 0's rounding (the default) since 0.16.0: with ``photo-cb64-m224-r15`` its files need
0.8 % fewer bits than nearest rounding's on Kodak and 0.5 % fewer on the held-out photos at
the same PSNR (MS-SSIM axis -1.4 / -0.8 %; docs/benchmarks.md). Efforts 1 and 2 (``refine``)
already choose every latent's side of the rounding threshold by the decoder's true cost, and
rounding their result this way undid part of that: +1.2 % BD-rate at effort 1 on 10 of the
tuning crops (weight 40; +0.5 % at 80).
"""

from __future__ import annotations

import torch
from torch import Tensor

RD_WEIGHT = 40.0
"""Bits one unit of squared latent error is worth. Tuned on 16 photos-train *training* files
(every 16th from the 8th: not the held-out split, never Kodak), centre 768 x 512 crops, qualities
12-88, BD-rate against plain rounding over the PSNR range both cover: weight 20 -0.46 %, 28
-1.01 %, 40 -1.15 %, 56 -1.09 %, 80 -0.92 %, 120 -0.71 %. Weights per channel in proportion to
the squared inverse gain gave -1.21 % at 40, not worth the extra rule; other weights for the
anchors than for the rest (25 or 60 on one half, 40 on the other) did 0.03-0.22 % worse than 40
on both. On the first 3 of those
crops, where this rule gained up to -2.47 % (weight 32), a uniform "dead zone" (``|d|`` rounded
down below 0.5 + δ, whatever the scale) gained at best -1.17 % (δ 0.03).

With photo-cb64-m224-r15-pf3 a weight of 25 lowered the files' rate-distortion cost R + λD (λ the
quality's own) by 0.27 / 0.18 % on two sets of validation crops, yet on Kodak it was +0.9 %
BD-rate against 40 (+1.4 % below 28 dB; benchmarks.md): it moved every point down its curve,
fewer bits and less PSNR, and the cost at a fixed λ rewards such moves wherever λ is not the
curve's slope. So 40 stays, and such weights are compared by BD-rate, as above."""


def _bits(q: Tensor, scales: Tensor) -> Tensor:
    """-log2 P(q) under the zero-mean Gaussian of ``scales`` integrated over q's unit bin,
    computed in the lower tail (negative arguments) where ``ndtr`` keeps its precision."""
    a = q.abs()
    p = torch.special.ndtr((0.5 - a) / scales) - torch.special.ndtr((-0.5 - a) / scales)
    return -torch.log2(p.clamp_min(1e-300))


def rd_round(d: Tensor, scales: Tensor, weight: float = RD_WEIGHT) -> Tensor:
    """Integers to code for residuals ``d`` (latent minus mean, float64) with ``scales``: the
    nearest integer, or one step nearer zero where that saves more bits than ``weight`` times the
    squared error it adds. Pure and elementwise, so the same at every thread count."""
    q = torch.round(d)
    toward = q - torch.sign(q)
    saved = _bits(q, scales) - _bits(toward, scales)
    added = weight * ((d - toward).square() - (d - q).square())
    return torch.where(saved > added, toward, q)
