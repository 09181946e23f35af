"""Checkerboard context model (He et al. 2021) on top of the mean-scale hyperprior.

The latent grid is split like a checkerboard. *Anchors* (row + column even) are coded first, with
entropy parameters from the hyperprior alone; the other half is then coded with parameters that
also see the decoded anchors around it, through a 5x5 convolution masked to the anchor taps.
Decoding therefore takes two parallel passes over the grid, not one pass per latent as with an
autoregressive context (Minnen et al. 2018), and the second half costs fewer bits because its
neighbours are known.

The entropy-parameter network is residual: ``params = h_s(z) + ep(h_s(z), context)`` with the last
layer of ``ep`` starting at zero, so a model initialised from a trained hyperprior starts out
exactly as that hyperprior and fine-tuning only has to learn what the context adds.

As for ``h_s``, encoder and decoder must agree on every parameter bit for bit, so the coding-time
evaluation (``context_parameters``) runs ``ctx`` and ``ep`` on the same fixed-point grid in
float64, where every sum is exact whatever the order (see ``hyperprior``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .hyperprior import (
    ACT_FRAC_BITS, ACT_MAX, HyperpriorConfig, MeanScaleHyperprior, _fixed, exact_conv_at, fixed_band,
    fixed_point_layer, run_fixed_point,
)

KERNEL = 5
BAND_ROWS = 64
"""Latent rows per band when the exact context pass runs over a large grid (bounds its memory)."""


def gather_at(tensors: tuple[Tensor, ...], rows: Tensor, cols: Tensor) -> Tensor:
    """``tensors`` (1, C_i, H, W) at the positions (``rows``, ``cols``), channels concatenated:
    (1, sum C_i, 1, n). Gathered before concatenating, so only the wanted positions are copied."""
    return torch.cat([t[:, :, rows, cols] for t in tensors], dim=1).unsqueeze(2)


def anchor_mask(rows: int, cols: int, row0: int = 0, device=None) -> Tensor:
    """True at anchors, (row + col) even in whole-image latent coordinates, shape (rows, cols)."""
    r = torch.arange(row0, row0 + rows, device=device)[:, None]
    c = torch.arange(cols, device=device)[None, :]
    return (r + c) % 2 == 0


class CheckerboardConv(nn.Conv2d):
    """A 5x5 convolution that only reads taps at odd Manhattan distance: for a non-anchor
    position those are exactly its anchor neighbours, so it never sees undecoded latents."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, KERNEL, padding=KERNEL // 2)
        k = torch.arange(KERNEL) - KERNEL // 2
        mask = ((k[:, None] + k[None, :]) % 2 != 0).to(self.weight.dtype)
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():  # masked taps get no gradient: keep them at zero, in files too
            self.weight.mul_(mask)

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)


class CheckerboardHyperprior(MeanScaleHyperprior):
    """Mean-scale hyperprior + checkerboard context: two-pass parallel decoding."""

    def __init__(self, config: HyperpriorConfig = HyperpriorConfig(context="checkerboard")):
        super().__init__(config)
        m, e = config.m, config.e
        self.context = CheckerboardConv(m, 2 * e)
        self.ep = nn.Sequential(
            nn.Conv2d(2 * m + 2 * e, 10 * e // 3, 1), nn.ReLU(),
            nn.Conv2d(10 * e // 3, 8 * e // 3, 1), nn.ReLU(),
            nn.Conv2d(8 * e // 3, 2 * m, 1),
        )
        nn.init.zeros_(self.ep[-1].weight)
        nn.init.zeros_(self.ep[-1].bias)

    @property
    def context_reach(self) -> int:
        """How many latent cells away a latent can still change another's parameters through the
        context (what a tile of ``refine``'s search sees only partly near its edges)."""
        return KERNEL // 2

    # ----- training ----------------------------------------------------------------------
    def _entropy_params(self, hyper: Tensor, anchors: Tensor | None) -> Tensor:
        """Float entropy parameters at every position: with ``anchors`` (y_hat zeroed off the
        anchors) they are right for non-anchors; with ``None`` they are right for anchors."""
        if anchors is None:
            ctx = self.context.bias.view(1, -1, 1, 1).expand(hyper.shape[0], -1, *hyper.shape[2:])
        else:
            ctx = self.context(anchors)
        return hyper + self.ep(torch.cat([hyper, ctx], dim=1))

    def _y_parameters(self, y: Tensor, hyper: Tensor, use_context: bool = True) -> tuple[Tensor, Tensor]:
        """(scales, means) for y: anchors from the hyperprior, the rest also from the rounded
        anchors (straight-through, so training sees the values the decoder will have)."""
        first = self._entropy_params(hyper, None)
        if not use_context:
            return first.chunk(2, dim=1)
        return self.two_pass_parameters(y, hyper, first, anchor_mask(*y.shape[2:], device=y.device))

    def two_pass_parameters(self, y: Tensor, hyper: Tensor, first: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """Float (scales, means) of both passes: ``first`` (``_entropy_params(hyper, None)``) at the
        ``anchor`` positions, elsewhere the parameters that see the anchors of y rounded around their
        means (straight-through). Training and the encoder's search (``refine``) share it; the
        search passes a tile's own mask, whose parity follows its offset in the whole grid."""
        means_a = first.chunk(2, dim=1)[1]
        y_hat_a = y + (torch.round(y - means_a) - (y - means_a)).detach()
        second = self._entropy_params(hyper, y_hat_a * anchor)
        return torch.where(anchor, first, second).chunk(2, dim=1)

    # ----- coding time (exact) -----------------------------------------------------------
    def fixed_point_context(self) -> list[tuple[nn.Module, Tensor, Tensor]]:
        """``context`` then ``ep``'s convolutions on the fixed-point grid, in float64."""
        return [fixed_point_layer(self.context, self.context.masked_weight()),
                *(fixed_point_layer(mod) for mod in self.ep if not isinstance(mod, nn.ReLU))]

    def fixed_point_layers(self) -> list[tuple[nn.Module, Tensor, Tensor]]:
        return [*super().fixed_point_layers(), *self.fixed_point_context()]

    def context_parameters(
        self, hyper_scales: Tensor, hyper_means: Tensor, anchors: Tensor | None,
        layers: list[tuple[nn.Module, Tensor, Tensor]] | None = None, where: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exact (scales, means) in float64, band by band over the latent rows.

        ``hyper_*``: ``entropy_parameters``' output. ``anchors``: float64 y_hat at the anchors and 0
        elsewhere, or ``None`` for the first pass (then the result is valid at the anchors).
        ``where``: (rows, cols) bool, the positions whose parameters are wanted (a pass needs its
        own half only); they are computed there alone and left 0 elsewhere. ``None``: everywhere."""
        layers = layers if layers is not None else self.fixed_point_context()
        (_, ctx_w, ctx_b), ep_layers = layers[0], layers[1:]
        rows, cols = hyper_scales.shape[2:]
        where = torch.ones(rows, cols, dtype=torch.bool) if where is None else where
        scales, means = torch.zeros_like(hyper_scales), torch.zeros_like(hyper_means)
        halo = KERNEL // 2
        for r0 in range(0, rows, BAND_ROWS):
            r1 = min(r0 + BAND_ROWS, rows)
            rr, cc = where[r0:r1].nonzero(as_tuple=True)
            h = gather_at((hyper_scales, hyper_means), r0 + rr, cc)
            a_h = _fixed(h, ACT_FRAC_BITS).clamp(-ACT_MAX, ACT_MAX)
            if anchors is None:
                ctx = ctx_b.view(1, -1, 1, 1).expand(1, -1, 1, len(rr))
            else:
                ctx = exact_conv_at(fixed_band(anchors, r0, r1, halo), ctx_w, ctx_b, rr, cc)
            a = torch.cat([a_h, _fixed(ctx, ACT_FRAC_BITS).clamp(-ACT_MAX, ACT_MAX)], dim=1)
            p_s, p_m = (h + run_fixed_point(ep_layers, a)).chunk(2, dim=1)
            scales[0, :, r0 + rr, cc], means[0, :, r0 + rr, cc] = p_s[0, :, 0], p_m[0, :, 0]
        return scales, means
