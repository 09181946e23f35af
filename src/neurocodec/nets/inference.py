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


class _InverseGDN(torch.autograd.Function):
    """``x * sqrt(norm(x²))`` (IGDN, ``norm`` a 1x1 convolution) with its backward written out:
    dL/dx = g·s + x · normᵀ(g·x / s), s = sqrt(norm(x²)). Autograd's own takes about twice the
    passes over the activation, and the encoder's search spends its time in such elementwise
    passes at half resolution."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        s = F.conv2d(x.square(), weight, bias).sqrt_()
        ctx.save_for_backward(x, s, weight)
        return x * s

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        x, s, weight = ctx.saved_tensors
        t = F.conv2d(g * x / s, weight.transpose(0, 1).to(g.dtype))
        return torch.addcmul(g * s, x, t), None, None


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
        if torch.is_grad_enabled() and x.requires_grad:  # the encoder's search differentiates through g_s
            if self.inverse:
                return _InverseGDN.apply(x, self.norm.weight, self.norm.bias)
            return self.norm(x.square()).rsqrt() * x
        norm = self.norm(x.square())
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


def _conv_relu_op():
    """oneDNN's fused convolution + ReLU, or ``None`` where it is missing or does not give what
    a convolution followed by a ReLU gives, bit for bit, in float32 and bfloat16.

    ``torch.ops.mkldnn._convolution_pointwise`` is private (torch.compile's CPU backend emits
    it), so it is looked up with care and checked before use; without it the filter runs
    unfused, with the same result. Fused, the ReLU is applied as each output is written instead
    of in a second pass over a 64-channel activation: the filter's forward pass measured about
    20 % faster at 2 threads on a Kodak image (46 against 58 ms, speed-2threads.json)."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 9, 10, generator=gen).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(16, 8, 3, 3, generator=gen), torch.randn(16, generator=gen)
        for dtype in (torch.float32, torch.bfloat16):
            xd, wd, bd = x.to(dtype), w.to(dtype), b.to(dtype)
            fused = op(xd, wd, bd, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            if fused.dtype != dtype or not torch.equal(fused, F.relu(F.conv2d(xd, wd, bd, padding=1))):
                return None
        return op
    except Exception:  # noqa: BLE001 - any failure means: run unfused
        return None


CONV_RELU = _conv_relu_op()


class _FusedFilter:
    """A post-filter's forward pass for the decoder: each 3x3 convolution and its ReLU in one
    oneDNN call (``CONV_RELU``), weights cast once per dtype. Forward only (no autograd)."""

    def __init__(self, postfilter: PostFilter):
        self.postfilter = postfilter
        self._weights: dict[torch.dtype, list[tuple[Tensor, Tensor]]] = {}

    def weights(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        if dtype not in self._weights:
            convs = [m for m in self.postfilter.body if isinstance(m, nn.Conv2d)] + [self.postfilter.out]
            self._weights[dtype] = [(c.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last),
                                     c.bias.detach().to(dtype)) for c in convs]
        return self._weights[dtype]

    def residual(self, x: Tensor, level: Tensor, dtype: torch.dtype) -> Tensor:
        *body, (w_out, b_out) = self.weights(dtype)
        u = self.postfilter.features(x, level).to(dtype).contiguous(memory_format=torch.channels_last)
        for w, b in body:
            u = CONV_RELU(u, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        return F.pixel_shuffle(F.conv2d(u, w_out, b_out, padding=1), 2)


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
        self._fused_filter = _FusedFilter(self.postfilter) if self.postfilter is not None else None
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

    def filter_correction(self, x: Tensor, level: Tensor) -> Tensor:
        """The correction the post-filter adds to g_s's output ``x``, as the decoder computes it:
        in bfloat16 where that is fast (``FILTER_BFLOAT16``), with each convolution fused with its
        ReLU when nothing needs its gradient (``CONV_RELU``; the same values either way)."""
        level = level.to(self.device)
        bf16 = FILTER_BFLOAT16 and self.device.type == "cpu"
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if CONV_RELU is not None and self.device.type == "cpu" and self.dtype == torch.float32 and not wants_grad:
            return self._fused_filter.residual(x, level, torch.bfloat16 if bf16 else torch.float32)
        # autocast leaves float64 alone, so float64 transforms stay exact
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.postfilter.residual(x, level)

    def filtered(self, x: Tensor, level: Tensor) -> Tensor:
        """g_s's output ``x`` with the post-filter's correction added, as the decoder computes it."""
        return x + self.filter_correction(x, level).to(x.dtype)


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
