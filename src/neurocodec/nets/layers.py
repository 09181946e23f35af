"""Building blocks shared by the photo models: strided convolutions and GDN.

GDN (generalized divisive normalization, Ballé et al. 2016) is the nonlinearity that lets a
four-layer transform Gaussianize natural-image statistics; its parameters must stay positive,
which we enforce with a squared reparametrization and a lower bound whose gradient still lets
parameters climb back up (otherwise a parameter that touches the bound is frozen there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Pass the gradient where x is above the bound, or where descending would raise x.
        passthrough = (x >= ctx.bound) | (grad < 0)
        return grad * passthrough, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """max(x, bound) with a gradient that does not trap values at the bound."""
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); ``inverse=True`` multiplies instead (IGDN)."""

    _PEDESTAL = 2.0**-18

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        p = self._PEDESTAL
        self._beta_bound = (beta_min + p) ** 0.5
        self._gamma_bound = p**0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + p))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + p))

    def effective_params(self) -> tuple[Tensor, Tensor]:
        p = self._PEDESTAL
        beta = lower_bound(self.beta, self._beta_bound) ** 2 - p
        gamma = lower_bound(self.gamma, self._gamma_bound) ** 2 - p
        return beta, gamma

    def forward(self, x: Tensor) -> Tensor:
        beta, gamma = self.effective_params()
        c = gamma.shape[0]
        norm = nn.functional.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same'-padded convolution that downsamples by ``stride``."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples by exactly ``stride``."""
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )
