"""Mean-scale hyperprior with GDN (Minnen, Ballé, Toderici 2018) and gain units (Cui et al. 2021).

One set of weights serves a continuum of rates: per-channel gain vectors scale the latent y (and
the hyper-latent z) before rounding, one vector per training lambda; between two trained levels
the gains are interpolated linearly. Coarser gains mean coarser quantization and fewer bits.

The hyper-synthesis ``h_s`` decides the probability model of every symbol of y, so encoder and
decoder must compute it bit-identically on any machine. ``entropy_parameters`` therefore runs it as
a fixed-point network: weights on a 2^-12 grid, activations on a 2^-8 grid, evaluated in float64,
where every product and every partial sum is an exactly representable dyadic number, so the
result does not depend on summation order, thread count or hardware. Training uses the float
network; the rounding costs a negligible amount of rate (measured in docs/).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..tiling import SYNTHESIS_HALO
from .layers import GDN, conv, deconv
from .priors import FactorizedDensity, gaussian_likelihood

WEIGHT_FRAC_BITS = 12
ACT_FRAC_BITS = 8
ACT_MAX = 2.0**12 - 1  # keeps |w * a| * terms far below 2^53 on the 2^-20 grid
WEIGHT_MAX = 8.0
EXACT_SUM_LIMIT = 2**53  # float64 holds every integer below this exactly
SYNTHESIS_REACH_LIMIT = 16 * SYNTHESIS_HALO  # pixels: the decoder's tile halo, in latent cells of 16


@dataclass(frozen=True)
class HyperpriorConfig:
    n: int = 128
    m: int = 192
    lambdas: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
    context: str = "none"  # or "checkerboard" (nets.checkerboard)
    gain_interpolation: str = "linear"  # of y's gains between levels; "geometric" keeps gain * inv_gain steady
    entropy_width: int | None = None  # channels inside h_s and the context model; None: m
    synthesis_blocks: tuple[int, ...] = ()  # g_s layer indices followed by a residual block
    channel_slices: int = 1  # > 1: a channel-slice context inside each checkerboard half (nets.channel_context)
    slice_width: int = 64  # hidden channels of that context, per slice

    def __post_init__(self):  # from JSON, tuples arrive as lists
        object.__setattr__(self, "lambdas", tuple(self.lambdas))
        object.__setattr__(self, "synthesis_blocks", tuple(self.synthesis_blocks))

    @property
    def e(self) -> int:
        """Width of the entropy-parameter networks. It is decoupled from m because they hold most
        of the parameters (they grow like m^2), while the quality ceiling at high rate is set by
        m alone: more latent channels are affordable only with a narrower entropy side."""
        return self.m if self.entropy_width is None else self.entropy_width

    @property
    def levels(self) -> int:
        return len(self.lambdas)


def initial_gains(lambdas: tuple[float, ...]) -> Tensor:
    """Per-level gain sqrt(lambda_i / geometric mean of the lambdas), shape (levels,)."""
    lam = torch.tensor(lambdas, dtype=torch.float64)
    return (lam / lam.log().mean().exp()).sqrt().float()


def _fixed(x: Tensor, frac_bits: int) -> Tensor:
    scale = float(2**frac_bits)
    return torch.round(x * scale) / scale


class MeanScaleHyperprior(nn.Module):
    """g_a -> y -> h_a -> z ; z_hat -> h_s -> (scales, means) ; y_hat -> g_s."""

    STRIDE = 64  # g_a (16) times h_a (4): inputs are padded to a multiple of this

    def __init__(self, config: HyperpriorConfig = HyperpriorConfig()):
        super().__init__()
        n, m, e, levels = config.n, config.m, config.e, config.levels
        self.config = config
        self.g_a = nn.Sequential(
            conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
        )
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
            deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
        )
        bad = [i for i in config.synthesis_blocks if not (0 <= i < len(self.g_s) - 1)]
        if bad:
            raise ValueError(f"synthesis_blocks {bad}: g_s has layers 0-{len(self.g_s) - 2} before its output")
        self.synthesis_blocks = nn.ModuleDict({str(i): ResidualBlock(n) for i in config.synthesis_blocks})
        if self.synthesis_reach() >= SYNTHESIS_REACH_LIMIT:
            raise ValueError(f"synthesis_blocks {list(config.synthesis_blocks)} reach {self.synthesis_reach()} "
                             f"pixels, more than the decoder's tiles allow ({SYNTHESIS_REACH_LIMIT - 1})")
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n)
        )
        self.h_s = nn.Sequential(
            deconv(n, e), nn.ReLU(), deconv(e, e * 3 // 2), nn.ReLU(), conv(e * 3 // 2, 2 * m, 3, 1)
        )
        self.z_density = FactorizedDensity(n)
        # Gains: y is multiplied by gain before rounding, the decoder multiplies by inv_gain.
        # They start at sqrt(lambda / geometric-mean lambda): at high rate the MSE-optimal
        # quantizer step shrinks like lambda^-1/2, so every level begins near its own rate
        # instead of all levels starting at one rate and drifting apart over many thousand steps.
        self.gain = nn.Parameter(initial_gains(config.lambdas).repeat(m, 1).T.contiguous())
        self.inv_gain = nn.Parameter(1.0 / self.gain.detach().clone())
        self.hyper_gain = nn.Parameter(torch.ones(levels, n))
        self.inv_hyper_gain = nn.Parameter(torch.ones(levels, n))

    # ----- gains -------------------------------------------------------------------------
    @staticmethod
    def interpolate(table: Tensor, level: Tensor) -> Tensor:
        """Rows of ``table`` at (possibly fractional) ``level`` (shape (B,)), as (B, C, 1, 1).

        Linear interpolation keeps the result exact in float64 when table and level are dyadic,
        which the decoder relies on for ``inv_hyper_gain``.
        """
        return _lerp_rows(table.abs(), level)

    def y_gain(self, table: Tensor, level: Tensor) -> Tensor:
        """``gain`` or ``inv_gain`` at ``level``. Geometric interpolation (Cui et al. 2021) keeps
        the product gain * inv_gain between two levels between its values at those levels; linear
        interpolation of both lets it drift above 1, so the decoder rescales y wrongly between
        trained levels (measured: PSNR dips of up to 10 dB half-way on a smooth image). The hyper
        gains stay linear: the exact entropy-parameter path needs dyadic arithmetic, no exp/log."""
        if self.config.gain_interpolation == "geometric":
            return _lerp_rows(table.abs().log(), level).exp()
        return self.interpolate(table, level)

    # ----- training ----------------------------------------------------------------------
    def forward(self, x: Tensor, level: Tensor, rate_rounding: str = "noise") -> dict[str, Tensor]:
        """Training forward pass; ``level`` holds one level per sample. The synthesis always sees
        y rounded around its means (straight-through). The rate is priced on uniformly noisy
        latents (``"noise"``, Ballé et al.: smooth, what the entropy model needs to learn), or on
        the rounded latents the codec codes (``"straight-through"``: the exact rate's value, but
        its gradient vanishes for latents that round onto their mean, so nothing holds them there;
        an encoder-only leg on r10 trained this way spent 3 % more bits for its PSNR, one with
        noise -0.05 %: docs/training.md)."""
        if rate_rounding not in ("noise", "straight-through"):
            raise ValueError(f"rate_rounding must be 'noise' or 'straight-through', got {rate_rounding!r}")
        y = self.g_a(x) * self.y_gain(self.gain, level)
        z = self.h_a(y) * self.interpolate(self.hyper_gain, level)
        z_round = z + (torch.round(z) - z).detach()
        hyper = self.h_s(z_round * self.interpolate(self.inv_hyper_gain, level))
        scales, means = self._y_parameters(y, hyper)
        y_hat = means + (torch.round(y - means) - (y - means)).detach() + (y - means)
        if rate_rounding == "noise":
            z_priced = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            y_priced = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            z_priced, y_priced = z_round, y_hat
        z_lik = self.z_density.likelihood(z_priced)
        y_lik = gaussian_likelihood(y_priced, scales, means)
        x_hat = self.synthesis(y_hat, level)
        return {"x_hat": x_hat, "y_likelihood": y_lik, "z_likelihood": z_lik}

    def _y_parameters(self, y: Tensor, hyper: Tensor, use_context: bool = True) -> tuple[Tensor, Tensor]:
        """(scales, means) of y from h_s's output; context models also look at y's neighbours."""
        return hyper.chunk(2, dim=1)

    @torch.no_grad()
    def estimate(self, x: Tensor, level: Tensor, use_context: bool = True) -> tuple[Tensor, Tensor]:
        """(bits per image, reconstruction) with hard rounding, from the float network: what the
        codec would spend up to the table quantization, for held-out evaluation in training.
        ``use_context=False`` codes every latent as an anchor (how much the context saves)."""
        y, z = self.analysis(x, level)
        hyper = self.h_s(z * self.interpolate(self.inv_hyper_gain, level))
        scales, means = self._y_parameters(y, hyper, use_context)
        y_hat = torch.round(y - means) + means
        bits = -(torch.log2(gaussian_likelihood(y_hat, scales, means)).sum((1, 2, 3))
                 + torch.log2(self.z_density.likelihood(z)).sum((1, 2, 3)))
        return bits, self.synthesis(y_hat, level)

    # ----- coding-time pieces (used by neurocodec.codec) ---------------------------------
    def analysis(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        """Image in [0, 1] -> (gained y, rounded z as integers in float)."""
        y = self.g_a(x) * self.y_gain(self.gain, level)
        z = self.h_a(y) * self.interpolate(self.hyper_gain, level)
        return y, torch.round(z)

    def fixed_point_h_s(self) -> list[tuple[nn.Module, Tensor, Tensor]]:
        """h_s's convolutions with their weights and biases on the fixed-point grid, in float64."""
        return [fixed_point_layer(layer) for layer in self.h_s if not isinstance(layer, nn.ReLU)]

    def entropy_parameters(
        self, z_symbols: Tensor, level: Tensor, layers: list[tuple[nn.Module, Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Exact (scales, means) in float64 from integer z symbols; see the module docstring.
        ``layers``: ``fixed_point_h_s()`` computed once, for callers whose weights do not change."""
        ihg = self.interpolate(self.inv_hyper_gain.detach().double(), level.double())
        a = _fixed(z_symbols.double() * ihg, ACT_FRAC_BITS).clamp(-ACT_MAX, ACT_MAX)
        a = run_fixed_point(layers if layers is not None else self.fixed_point_h_s(), a)
        scales, means = a.chunk(2, dim=1)
        return scales, means

    def fixed_point_layers(self) -> list[tuple[nn.Module, Tensor, Tensor]]:
        """Every layer the exact entropy-parameter path runs, with its fixed-point weights."""
        return self.fixed_point_h_s()

    def fixed_point_bound(self) -> int:
        """Largest |partial sum| any input could produce in the exact entropy-parameter layers, in
        units of the 2^-20 product grid. Below 2^53 every float64 sum is exact in any order;
        ``zoo.load`` refuses weights that break this, so exactness is checked, not assumed
        (biases are not clamped, so it depends on the weights)."""
        a_max = int(ACT_MAX * 2**ACT_FRAC_BITS)
        worst = 0
        for layer, w, b in self.fixed_point_layers():
            w_int = (w * 2**WEIGHT_FRAC_BITS).abs().long()
            b_int = (b * 2 ** (WEIGHT_FRAC_BITS + ACT_FRAC_BITS)).abs().long()
            out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            per_output = w_int.sum(dim=[d for d in range(4) if d != out_dim]) * a_max + b_int
            worst = max(worst, int(per_output.max()))
        return worst

    def synthesis(self, y_hat: Tensor, level: Tensor) -> Tensor:
        """Dequantized y (gained domain) -> pixels."""
        return self.synthesis_transform(y_hat * self.y_gain(self.inv_gain, level))

    def synthesis_reach(self) -> int:
        """How many pixels away g_s's output still depends on an input latent: 30 for the four
        upsamplings (3x3 sub-pixel convolutions at 1/16, 1/8, 1/4 and 1/2 resolution reach 16 + 8
        + 4 + 2), plus two cells of each residual block's resolution (layers 0-1 run at 1/8, 2-3 at
        1/4, 4-5 at 1/2). ``tiling`` sizes the decoder's halo by it."""
        return 30 + sum(2 * (8 >> (i // 2)) for i in self.config.synthesis_blocks)

    def synthesis_transform(self, v: Tensor) -> Tensor:
        """g_s with its residual blocks, on y divided by its gains."""
        return run_synthesis(self.g_s, self.synthesis_blocks, v)


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3 convolutions; the second starts at zero, so a block added to a
    trained g_s leaves its output unchanged until training teaches it something. Extra synthesis
    capacity where it is cheap: a block at 1/4 resolution costs about a tenth of g_s's time."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


def run_synthesis(g_s: nn.Sequential, blocks: nn.ModuleDict, v: Tensor) -> Tensor:
    """``g_s``'s layers in order, each ``blocks[str(i)]`` right after layer i."""
    for i, layer in enumerate(g_s):
        v = layer(v)
        if str(i) in blocks:
            v = blocks[str(i)](v)
    return v


def fixed_point_layer(layer: nn.Module, weight: Tensor | None = None) -> tuple[nn.Module, Tensor, Tensor]:
    """``layer`` with its weights (``weight`` if given, e.g. masked) on the 2^-12 grid, clamped
    to ±8, and its bias on the 2^-20 grid, in float64."""
    w = layer.weight if weight is None else weight
    return (layer,
            _fixed(w.detach().double(), WEIGHT_FRAC_BITS).clamp(-WEIGHT_MAX, WEIGHT_MAX),
            _fixed(layer.bias.detach().double(), WEIGHT_FRAC_BITS + ACT_FRAC_BITS))


def run_fixed_point(layers: list[tuple[nn.Module, Tensor, Tensor]], a: Tensor) -> Tensor:
    """Exact convolutions in sequence on fixed-point input ``a``, with a ReLU rounded back to the
    2^-8 grid (and capped at ``ACT_MAX``) between them; the last output is not rounded."""
    for i, (layer, w, b) in enumerate(layers):
        a = _exact_conv(layer, a, w, b)
        if i < len(layers) - 1:
            a = _fixed(torch.relu(a), ACT_FRAC_BITS).clamp(max=ACT_MAX)
    return a


def _exact_conv(layer: nn.Module, a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """Run ``layer``'s convolution in float64 on fixed-point inputs (every sum exact)."""
    if isinstance(layer, nn.ConvTranspose2d):
        return nn.functional.conv_transpose2d(
            a, w, b, stride=layer.stride, padding=layer.padding, output_padding=layer.output_padding
        )
    return nn.functional.conv2d(a, w, b, stride=layer.stride, padding=layer.padding)


POINTWISE = nn.Conv2d(1, 1, 1)
"""Stands for any 1x1 convolution in ``_exact_conv`` (it reads only stride and padding)."""


def fixed_band(x: Tensor, r0: int, r1: int, halo: int) -> Tensor:
    """What ``exact_conv_at`` reads for output rows r0..r1 of a convolution with zero padding
    ``halo``: rows r0 - halo .. r1 + halo of ``x`` (1, C, rows, cols) on the 2^-8 grid and clamped
    like every input, zero beyond the grid's edges and in ``halo`` columns either side."""
    rows, cols = x.shape[2:]
    lo, hi = max(r0 - halo, 0), min(r1 + halo, rows)
    band = torch.zeros(1, x.shape[1], r1 - r0 + 2 * halo, cols + 2 * halo, dtype=x.dtype)
    band[:, :, lo - (r0 - halo) : hi - (r0 - halo), halo : halo + cols] = (
        _fixed(x[:, :, lo:hi], ACT_FRAC_BITS).clamp(-ACT_MAX, ACT_MAX))
    return band


def exact_conv_at(a: Tensor, w: Tensor, b: Tensor | None, rows: Tensor, cols: Tensor) -> Tensor:
    """A stride-1 convolution with zero padding of k // 2, exact like ``_exact_conv``, evaluated
    only at the output positions (``rows``, ``cols``) and only over the kernel taps that are not
    all zero: (1, C_out, 1, n) for n positions. ``a``: (1, C_in, H + k - 1, W + k - 1), the input
    already padded, so output (r, c) reads ``a[..., r:r + k, c:c + k]``. The context passes need
    their parameters on one half of the grid only, and the checkerboard's mask zeroes half the
    taps: this does a quarter of the dense convolution's work, with the same exact result."""
    out = None
    for i, j in (w.abs().sum(dim=(0, 1)) != 0).nonzero().tolist():
        x = a[:, :, rows + i, cols + j].unsqueeze(2)
        y = _exact_conv(POINTWISE, x, w[:, :, i : i + 1, j : j + 1], None)
        out = y if out is None else out + y
    if out is None:
        out = torch.zeros(1, w.shape[0], 1, len(rows), dtype=a.dtype)
    return out if b is None else out + b.view(1, -1, 1, 1)


def _lerp_rows(table: Tensor, level: Tensor) -> Tensor:
    """Rows of ``table`` linearly interpolated at ``level`` (shape (B,)), as (B, C, 1, 1)."""
    top = table.shape[0] - 1
    level = level.to(table.dtype).clamp(0, top)
    lo = torch.floor(level).long().clamp(max=top - 1) if top > 0 else torch.zeros_like(level).long()
    t = (level - lo.to(table.dtype)).unsqueeze(1)
    hi = (lo + 1).clamp(max=top)
    rows = table[lo] * (1 - t) + table[hi] * t
    return rows[:, :, None, None]
