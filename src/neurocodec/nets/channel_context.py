"""Channel-slice context (Minnen & Singh 2020) inside each half of the checkerboard (He et al. 2021).

The checkerboard predicts every channel of a latent from the hyperprior and, in its second half,
from the anchors around it. Channels of one position are still coded independently, although they
are not: a position's first channels say much about its others. So y's M channels are cut into S
equal slices and, within each half, the slices are coded one after another; slice s's entropy
parameters are the checkerboard's plus a correction from

* the slices before it, decoded, in a 3x3 neighbourhood (in the first half only their anchors are
  decoded, so the others read as zero; in the second half, all of them), through a convolution
  masked so that slice s reads channels of slices < s only;
* the checkerboard's own parameters at the same position.

This is the checkerboard-plus-channel arrangement of ELIC (He et al. 2022), with equal slices. The
correction network's last layer starts at zero, so a model built on a trained checkerboard starts
out exactly as that model. Decoding stays parallel over positions: 2 * S passes instead of 2.

As for ``h_s`` and the checkerboard, encoder and decoder must agree on every parameter bit, so
the coding-time path (``slice_parameters``) runs on the fixed-point grid in float64, where every
sum is exact in any order; ``fixed_point_layers`` lets ``zoo.load`` check that bound.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .checkerboard import BAND_ROWS, CheckerboardHyperprior, gather_at
from .hyperprior import (
    ACT_FRAC_BITS, ACT_MAX, POINTWISE, HyperpriorConfig, _exact_conv, _fixed, exact_conv_at, fixed_band,
    fixed_point_layer, run_fixed_point,
)

KERNEL = 3


class SliceContext(nn.Module):
    """Corrections to (scales, means) for ``slices`` channel groups; group s reads groups < s only.

    Every layer is per slice: a masked 3x3 convolution over the decoded latents plus a 1x1 one
    over the checkerboard's parameters, then two grouped 1x1 layers, so slice s's output depends
    on nothing but its own inputs and can be computed alone at coding time."""

    def __init__(self, m: int, slices: int, width: int):
        super().__init__()
        if slices < 2 or m % slices:
            raise ValueError(f"{m} latent channels do not split into {slices} equal slices (need 2 or more)")
        self.m, self.slices, self.width = m, slices, width
        g = m // slices
        self.y_conv = nn.Conv2d(m, slices * width, KERNEL, padding=KERNEL // 2)
        mask = torch.zeros(slices * width, m, 1, 1)
        for s in range(slices):
            mask[s * width : (s + 1) * width, : s * g] = 1
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():  # hidden weights get no gradient: keep them at zero, in files too
            self.y_conv.weight.mul_(mask)
        self.p_conv = nn.Conv2d(2 * m, slices * width, 1)
        self.mid = nn.Conv2d(slices * width, slices * width, 1, groups=slices)
        self.out = nn.Conv2d(slices * width, 2 * m, 1, groups=slices)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def group(self) -> int:
        return self.m // self.slices

    def forward(self, s: int, y_hat: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """Float corrections (d_scales, d_means) of slice ``s``, each (B, G, H, W); ``y_hat`` is
        read in its first s * G channels only, so training pays for slice s's rows alone."""
        g, w = self.group, self.width
        rows, outs = slice(s * w, (s + 1) * w), slice(2 * s * g, 2 * (s + 1) * g)
        h = nn.functional.conv2d(torch.cat([scales, means], dim=1), self.p_conv.weight[rows], self.p_conv.bias[rows])
        h = h + self.y_conv.bias[rows].view(1, -1, 1, 1)
        if s > 0:  # the rows' other taps are the mask's zeros
            h = h + nn.functional.conv2d(y_hat[:, : s * g], self.y_conv.weight[rows, : s * g], padding=KERNEL // 2)
        h = torch.relu(nn.functional.conv2d(torch.relu(h), self.mid.weight[rows], self.mid.bias[rows]))
        o = nn.functional.conv2d(h, self.out.weight[outs], self.out.bias[outs])
        return o[:, :g], o[:, g:]


class SliceLayers(NamedTuple):
    """One slice's fixed-point weights (float64): its rows of every layer of ``SliceContext``."""

    y_weight: Tensor  # (width, s * group, 3, 3): the decoded slices before it
    p_weight: Tensor  # (width, 2M, 1, 1): the checkerboard's (scales, means)
    bias: Tensor  # y_conv's and p_conv's biases, summed (exactly: both on the 2^-20 grid)
    mid: tuple[nn.Module, Tensor, Tensor]
    out: tuple[nn.Module, Tensor, Tensor]


class SlicedCheckerboardHyperprior(CheckerboardHyperprior):
    """Checkerboard context + channel slices: 2 * S parallel decoding passes."""

    def __init__(self, config: HyperpriorConfig = HyperpriorConfig(context="checkerboard", channel_slices=4)):
        super().__init__(config)
        self.slices = SliceContext(config.m, config.channel_slices, config.slice_width)

    @property
    def context_reach(self) -> int:
        """2 * S cells: slice s of the first half reads decoded anchors one cell away whose means
        read the slices before them, so its reach is s; the checkerboard's second pass adds 2 to
        the last anchors' S - 1, and each slice of the second half 1 more: 2 + (S - 1) + S - 1 + 1."""
        return 2 * self.slices.slices

    # ----- training ----------------------------------------------------------------------
    def two_pass_parameters(self, y: Tensor, hyper: Tensor, first: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """Float (scales, means) as the decoder will have them: the anchors slice by slice from
        ``first``, the checkerboard's second pass on those anchors, then the rest slice by slice.
        Each slice is rounded around its own means, straight-through, before the next reads it."""
        g = self.slices.group

        def half(base: Tensor, where: Tensor, before: list[Tensor] | None) -> tuple[list[Tensor], ...]:
            """Per slice, this half's (y-hat, scales, means); y-hat is the rounded latents at
            ``where`` and ``before``'s slice (or 0) elsewhere, what the slices after it read."""
            s0, m0 = base.chunk(2, dim=1)
            hats, scales, means = [], [], []
            for s in range(self.slices.slices):
                c = slice(s * g, (s + 1) * g)
                ds, dm = self.slices(s, torch.cat(hats, 1) if s else y[:, :0], s0, m0)  # reads slices < s
                sc, mu = s0[:, c] + ds, m0[:, c] + dm
                q = y[:, c] + (torch.round(y[:, c] - mu) - (y[:, c] - mu)).detach()
                hats.append(torch.where(where, q, 0.0 if before is None else before[s]))
                scales.append(sc)
                means.append(mu)
            return hats, scales, means

        anchors, s1, m1 = half(first, anchor, None)  # y-hat is the anchors, 0 elsewhere: what the second pass reads
        _, s2, m2 = half(self._entropy_params(hyper, torch.cat(anchors, 1)), ~anchor, anchors)
        scales = torch.cat([torch.where(anchor, a, b) for a, b in zip(s1, s2)], 1)
        means = torch.cat([torch.where(anchor, a, b) for a, b in zip(m1, m2)], 1)
        return scales, means

    # ----- coding time (exact) -----------------------------------------------------------
    def fixed_point_slices(self) -> list[SliceLayers]:
        """Each slice's rows of the slice context, on the fixed-point grid."""
        sc, g, w = self.slices, self.slices.group, self.slices.width
        _, y_w, y_b = fixed_point_layer(sc.y_conv, sc.y_conv.weight * sc.mask)
        _, p_w, p_b = fixed_point_layer(sc.p_conv)
        _, mid_w, mid_b = fixed_point_layer(sc.mid)
        _, out_w, out_b = fixed_point_layer(sc.out)
        rows = [slice(s * w, (s + 1) * w) for s in range(sc.slices)]
        outs = [slice(2 * s * g, 2 * (s + 1) * g) for s in range(sc.slices)]
        return [SliceLayers(y_w[r, : s * g], p_w[r], y_b[r] + p_b[r], (sc.mid, mid_w[r], mid_b[r]),
                            (sc.out, out_w[o], out_b[o]))
                for s, (r, o) in enumerate(zip(rows, outs))]

    def fixed_point_layers(self) -> list[tuple[nn.Module, Tensor, Tensor]]:
        """For the exactness bound: the first slice layer as one convolution over the decoded
        latents and the parameters (the two sums add into one accumulator), then the others."""
        sc = self.slices
        _, y_w, y_b = fixed_point_layer(sc.y_conv, sc.y_conv.weight * sc.mask)
        _, p_w, p_b = fixed_point_layer(sc.p_conv)
        first = torch.cat([y_w, nn.functional.pad(p_w, (1, 1, 1, 1))], dim=1)
        return [*super().fixed_point_layers(), (sc.y_conv, first, y_b + p_b),
                fixed_point_layer(sc.mid), fixed_point_layer(sc.out)]

    def slice_parameters(
        self, s: int, scales: Tensor, means: Tensor, y_hat: Tensor, layers: list[SliceLayers] | None = None,
        where: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exact (scales, means) in float64 of slice ``s``'s channels, band by band. ``scales`` /
        ``means``: the checkerboard's parameters for this half (``context_parameters``); ``y_hat``:
        float64 latents decoded so far, zero where not yet decoded (only slices < s are read);
        ``where``: (rows, cols) bool, the positions wanted (0 elsewhere), ``None`` for all."""
        layer = (layers if layers is not None else self.fixed_point_slices())[s]
        g, rows, cols = self.slices.group, *scales.shape[2:]
        c = slice(s * g, (s + 1) * g)
        where = torch.ones(rows, cols, dtype=torch.bool) if where is None else where
        out_s, out_m = torch.zeros_like(scales[:, c]), torch.zeros_like(means[:, c])
        halo = KERNEL // 2
        for r0 in range(0, rows, BAND_ROWS):
            r1 = min(r0 + BAND_ROWS, rows)
            rr, cc = where[r0:r1].nonzero(as_tuple=True)
            p = gather_at((scales, means), r0 + rr, cc)
            a = _exact_conv(POINTWISE, _fixed(p, ACT_FRAC_BITS).clamp(-ACT_MAX, ACT_MAX), layer.p_weight, layer.bias)
            if s > 0:
                a = a + exact_conv_at(fixed_band(y_hat[:, : s * g], r0, r1, halo), layer.y_weight, None, rr, cc)
            a = _fixed(torch.relu(a), ACT_FRAC_BITS).clamp(max=ACT_MAX)
            d = run_fixed_point([layer.mid, layer.out], a)
            out_s[0, :, r0 + rr, cc] = scales[0, c, r0 + rr, cc] + d[0, :g, 0]
            out_m[0, :, r0 + rr, cc] = means[0, c, r0 + rr, cc] + d[0, g:, 0]
        return out_s, out_m


__all__ = ["SliceContext", "SlicedCheckerboardHyperprior", "SliceLayers"]
