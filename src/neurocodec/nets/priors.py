"""Differentiable probability models used while training, and their export to coding tables.

Training needs likelihoods of noisy latents; coding needs fixed integer-indexed probability
tables that every machine reads identically. This module owns both sides of that bridge:
``FactorizedDensity`` learns a per-channel density for the hyper-latent z (Ballé et al. 2018,
appendix 6.1) and ``to_tables`` freezes it into probability mass functions over integers;
``gaussian_likelihood`` and ``gaussian_tables`` do the same for the conditional model of y.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .layers import lower_bound

SCALE_MIN = 0.11
"""Smallest standard deviation the Gaussian conditional may use (in training and in the table)."""

LIKELIHOOD_MIN = 1e-9


class FactorizedDensity(nn.Module):
    """A learned, per-channel, univariate cumulative density c(x) = sigmoid(f(x)) with f monotone."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: Tensor) -> Tensor:
        """f(v) for v of shape (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(nn.functional.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def _interval_mass(self, v: Tensor) -> Tensor:
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # Evaluate on the side of the median where the sigmoid is not saturated.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, z: Tensor) -> Tensor:
        """P(z - 0.5 < Z < z + 0.5) for every element of a (B, C, H, W) tensor."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        p = self._interval_mass(v)
        p = lower_bound(p, LIKELIHOOD_MIN)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def to_tables(self, tail_mass: float = 1e-9, max_radius: int = 512) -> tuple[np.ndarray, list[np.ndarray]]:
        """Freeze the density into per-channel PMFs over integer symbols.

        Returns ``(offsets, pmfs)``: channel c covers symbols offsets[c] .. offsets[c]+len(pmfs[c])-1.
        Mass beyond the range is folded into its ends, so clamping z into the range (what the
        encoder does) is coded exactly as modelled.
        """
        c = self.matrices[0].shape[0]
        grid = torch.arange(-max_radius, max_radius + 1, dtype=torch.float64)
        model = self.double()
        mass = model._interval_mass(grid.view(1, 1, -1).expand(c, 1, -1).contiguous())[:, 0, :]
        self.float()
        mass = mass.numpy()
        offsets = np.zeros(c, dtype=np.int64)
        pmfs = []
        for ch in range(c):
            below = np.cumsum(mass[ch])
            above = np.cumsum(mass[ch, ::-1])[::-1]
            lo = int(np.searchsorted(below, tail_mass))
            hi = int(np.nonzero(above >= tail_mass)[0][-1]) if (above >= tail_mass).any() else lo
            hi = max(hi, lo + 1)  # constriction needs at least two symbols per table
            p = mass[ch, lo : hi + 1].copy()
            p[0] += mass[ch, :lo].sum()
            p[-1] += mass[ch, hi + 1 :].sum()
            pmfs.append(p / p.sum())
            offsets[ch] = lo - max_radius
        return offsets, pmfs


def gaussian_likelihood(y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
    """P(y - 0.5 < Y < y + 0.5) for Y ~ N(means, scales), computed on the lower tail for accuracy."""
    scales = lower_bound(scales, SCALE_MIN)
    v = torch.abs(y - means)
    half = 0.5 / scales
    upper = _std_normal_cdf(half - v / scales)
    lower = _std_normal_cdf(-half - v / scales)
    return lower_bound(upper - lower, LIKELIHOOD_MIN)


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def scale_table(levels: int = 64, smin: float = SCALE_MIN, smax: float = 256.0) -> np.ndarray:
    """Log-spaced standard deviations; the decoder picks one by integer index."""
    return np.exp(np.linspace(math.log(smin), math.log(smax), levels))


def gaussian_tables(scales: np.ndarray, tail: float = 6.0, escape_floor: float = 2.0**-14):
    """Discretized zero-mean Gaussians for each table scale, with one trailing escape symbol.

    Table k covers residuals -R_k .. R_k (R_k = ceil(tail * scale_k)) followed by an escape symbol
    whose probability is the tail mass (at least ``escape_floor``: real residuals have heavier tails
    than a Gaussian). Returns ``(radii, pmfs)`` with pmfs (K, 2*max(R)+2) zero-padded.
    """
    radii = np.maximum(1, np.ceil(tail * scales)).astype(np.int32)
    width = 2 * int(radii.max()) + 2
    pmfs = np.zeros((len(scales), width))
    for k, (s, r) in enumerate(zip(scales, radii)):
        edges = (np.arange(-r, r + 2) - 0.5) / s
        cdf = 0.5 * np.array([math.erfc(-e / math.sqrt(2)) for e in edges])
        p = np.diff(cdf)
        escape = max(1.0 - p.sum(), escape_floor)
        p = np.append(p, escape)
        pmfs[k, : len(p)] = p / p.sum()
    return radii, pmfs
