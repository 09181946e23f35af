"""The float transforms of a trained hyperprior, rearranged for fast, thread-count-independent coding.

Training keeps ``MeanScaleHyperprior`` as the papers write it; coding wants two other things:

* Speed. Each stride-2 transposed convolution of ``g_s`` (kernel 5, padding 2, output padding 1)
  equals a 3x3 convolution with four times the output channels followed by a pixel shuffle (one
  set of channels per output phase). Convolutions on channels-last tensors run on oneDNN's direct
  kernels, which measured about 3x faster than torch's native transposed convolution here.
* Results that do not depend on the thread count. oneDNN's channels-last forward convolutions
  gave bit-identical outputs at 1, 2, 3, 4, 7 and 16 threads in our measurements (consistent with
  splitting the work over outputs, not over the summation); its transposed convolutions did not,
  at 3 threads and more, which is the other reason they are rewritten as convolutions. The tests
  check bytes and pixels at 1, 2 and 3 threads.

Only the float transforms live here. The entropy parameters stay in
``MeanScaleHyperprior.entropy_parameters``, exact in float64 on the CPU, whatever the device.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .hyperprior import MeanScaleHyperprior, run_synthesis
from .layers import GDN
from .postfilter import PostFilter

# Kernel index of a 5-tap, stride-2 transposed convolution that feeds output phase r from input
# offsets -1, 0, +1 (None: that offset does not reach the phase).
_PHASE_TAPS = {0: (4, 2, 0), 1: (None, 3, 1)}


def _as_subpixel_conv(layer: nn.ConvTranspose2d) -> nn.Conv2d:
    """A 3x3 convolution whose 4*C outputs, pixel-shuffled by 2, equal ``layer``'s output."""
    assert layer.kernel_size == (5, 5) and layer.stride == (2, 2) and layer.padding == (2, 2)
    assert layer.output_padding == (1, 1)
    w = layer.weight.detach()  # (cin, cout, 5, 5)
    cin, cout = w.shape[:2]
    sub = w.new_zeros(cout, 2, 2, cin, 3, 3)  # pixel_shuffle order: channel c*4 + ry*2 + rx
    for ry, ytaps in _PHASE_TAPS.items():
        for rx, xtaps in _PHASE_TAPS.items():
            for jy, ky in enumerate(ytaps):
                for jx, kx in enumerate(xtaps):
                    if ky is not None and kx is not None:
                        sub[:, ry, rx, :, jy, jx] = w[:, :, ky, kx].T
    conv = nn.Conv2d(cin, 4 * cout, 3, padding=1)
    conv.weight.data = sub.reshape(4 * cout, cin, 3, 3)
    conv.bias.data = layer.bias.detach().repeat_interleave(4)
    return conv


class _Upsample(nn.Module):
    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        self.conv = _as_subpixel_conv(layer)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class _FrozenGDN(nn.Module):
    """GDN with its parameters evaluated once and the elementwise steps done in place."""

    def __init__(self, gdn: GDN):
        super().__init__()
        beta, gamma = (t.detach() for t in gdn.effective_params())
        c = beta.shape[0]
        self.inverse = gdn.inverse
        self.norm = nn.Conv2d(c, c, 1)
        self.norm.weight.data = gamma.reshape(c, c, 1, 1).clone()
        self.norm.bias.data = beta.clone()

    def forward(self, x: Tensor) -> Tensor:
        norm = self.norm(x.square())
        if torch.is_grad_enabled() and x.requires_grad:  # the encoder's search differentiates through g_s
            return (norm.sqrt() if self.inverse else norm.rsqrt()) * x
        return (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(x)


def bfloat16_is_fast() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX). Elsewhere bfloat16
    is emulated and slower than float32, so nothing runs in it."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so looked up with care
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means no
        return False


BFLOAT16_IS_FAST = bfloat16_is_fast()

FILTER_BFLOAT16 = BFLOAT16_IS_FAST
"""Run the post-filter's convolutions in bfloat16 on a CPU where that is fast; g_s and the
residual add stay float32 (float64 transforms stay float64: autocast leaves them alone). The
correction the filter adds is small, so bfloat16's 8-bit mantissa moves it by a fraction of a
level: on the 16 tuning crops the PSNR changed by at most 0.001 dB (+0.01 % BD-rate); on three
Kodak images at qualities 5-90 up to 7 % of the 8-bit values moved, by one level, and the PSNR
by at most 0.0012 dB. kodim01 decodes ~30 % faster (1 thread: 730 -> 510 ms). Like any other
rounding of g_s, this moves pixels by a level between CPUs with and without AMX; the parse of
a file never changes."""


def _frozen(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.ConvTranspose2d):
        return _Upsample(module)
    if isinstance(module, GDN):
        return _FrozenGDN(module)
    return copy.deepcopy(module)


class InferenceTransforms:
    """g_a, h_a and g_s of one network on one device, in channels-last, without autograd; with
    ``postfilter``, the synthesis ends with it (a derived model's decoder, ``zoo.PhotoModel``)."""

    def __init__(self, net: MeanScaleHyperprior, device: torch.device, postfilter: PostFilter | None = None):
        self.device = device
        self.net = net
        self.dtype = net.gain.dtype  # float32 as shipped; a float64 copy of a net stays float64
        self.g_a = nn.Sequential(*map(_frozen, net.g_a))
        self.h_a = nn.Sequential(*map(_frozen, net.h_a))
        self.g_s = nn.Sequential(*map(_frozen, net.g_s))
        self.blocks = nn.ModuleDict({k: copy.deepcopy(b) for k, b in net.synthesis_blocks.items()})
        self.postfilter = copy.deepcopy(postfilter) if postfilter is not None else None
        for module in (self.g_a, self.h_a, self.g_s, self.blocks, self.postfilter):
            if module is not None:
                module.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
                module.eval().requires_grad_(False)

    def synthesis_reach(self) -> int:
        """Pixels away that the synthesis output still depends on a latent's (``tiling.synthesis_halo``)."""
        return self.net.synthesis_reach() + (self.postfilter.reach() if self.postfilter is not None else 0)

    def _gain(self, table: Tensor, level: Tensor) -> Tensor:
        return self.net.interpolate(table.detach(), level).to(self.device, self.dtype)

    def _y_gain(self, table: Tensor, level: Tensor) -> Tensor:
        return self.net.y_gain(table.detach(), level).to(self.device, self.dtype)

    def analysis(self, x: Tensor, level: Tensor) -> Tensor:
        """Pixels in [0, 1], (1, 3, H, W) -> gained latent y, (1, M, H/16, W/16), on the device."""
        x = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return self.g_a(x) * self._y_gain(self.net.gain, level)

    def hyper_analysis(self, y: Tensor, level: Tensor) -> Tensor:
        """Gained y -> rounded hyper-latent z (integers stored as floats), on the device."""
        y = y.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return torch.round(self.h_a(y) * self._gain(self.net.hyper_gain, level))

    def base_synthesis(self, y_hat: Tensor, level: Tensor) -> Tensor:
        """Dequantized y (gained domain) -> g_s's pixels, before any post-filter, on the device."""
        y_hat = y_hat.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return run_synthesis(self.g_s, self.blocks, y_hat * self._y_gain(self.net.inv_gain, level))

    def synthesis(self, y_hat: Tensor, level: Tensor) -> Tensor:
        """Dequantized y (gained domain) -> pixels in about [0, 1], (1, 3, 16h, 16w), on the device."""
        x = self.base_synthesis(y_hat, level)
        return self.filtered(x, level) if self.postfilter is not None else x

    def filtered(self, x: Tensor, level: Tensor) -> Tensor:
        """g_s's output ``x`` with the post-filter's correction added, as the decoder computes it."""
        # autocast leaves float64 alone, so float64 transforms stay exact
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=FILTER_BFLOAT16 and self.device.type == "cpu"):
            correction = self.postfilter.residual(x, level.to(self.device))
        return x + correction.to(x.dtype)


@functools.lru_cache(maxsize=8)
def transforms(net: MeanScaleHyperprior, device: str = "cpu", postfilter: PostFilter | None = None) -> InferenceTransforms:
    """Built once per (network, device, post-filter) and process, like the models in ``zoo``; never
    as inference tensors (even when first asked for inside ``torch.inference_mode``), because the
    encoder's search differentiates through the synthesis (``refine``)."""
    with torch.inference_mode(False):
        return InferenceTransforms(net, torch.device(device), postfilter)


@functools.lru_cache(maxsize=8)
def fixed_point_h_s(net: MeanScaleHyperprior) -> tuple[tuple[nn.Module, Tensor, Tensor], ...]:
    """``net.fixed_point_h_s()`` once per network and process: rounding the weights to the grid
    took about half of the entropy-parameter time when it was redone for every image and tile."""
    return tuple(net.fixed_point_h_s())


@functools.lru_cache(maxsize=8)
def fixed_point_context(net: MeanScaleHyperprior) -> tuple[tuple[nn.Module, Tensor, Tensor], ...]:
    """``net.fixed_point_context()`` once per context-model network and process."""
    return tuple(net.fixed_point_context())


@functools.lru_cache(maxsize=8)
def fixed_point_slices(net: MeanScaleHyperprior) -> tuple:
    """``net.fixed_point_slices()`` once per channel-slice network and process."""
    return tuple(net.fixed_point_slices())


def default_device() -> str:
    """CUDA when torch sees a GPU, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"
