"""Encoder-side latent refinement: smaller files for more encoding time, with no decoder change.

``g_a`` is amortized: one forward pass guesses latents that are good on average over the
training crops. For one given image the encoder can do better by searching the latents directly
for that image's rate-distortion cost ``R + λ · 255² · MSE``, through the decoder's own synthesis
and entropy model (Campos et al., "Content adaptive optimization for neural image compression",
2019; Yang, Bamler & Mandt, "Improving inference for neural image compression", NeurIPS 2020).
The file format and the decoder are untouched: refined latents are just other integers in the
same streams, so every neurocodec that reads the model reads these files.

Choices, each measured on held-out photos-train crops (never on Kodak):

* Rounding has no useful gradient, so the search runs on *soft rounding*: each latent is the mix
  of its two neighbouring integers with weights ``softmax(-atanh(distance) / τ)``, at a low τ
  (0.15 at the lowest level), so the relaxation is already close to the hard rounding the codec
  applies. It is the deterministic mean of Yang et al.'s stochastic Gumbel annealing (no sampling,
  so the result is a function of the image); annealing τ over ten small steps, effort 2 until
  0.20.0, did worse than two or four larger steps at the low τ (``EFFORTS``). Straight-through
  rounding gained less at the same step count and diverged with Adam.
* Plain gradient descent on ``bits + λ · 255² · SSE / 3`` (the training loss times the pixel
  count). The gain units make the curvature of that cost in the gained latent space about the
  same at every λ, so one step size serves every quality; Adam's per-element steps move every
  latent by about the same amount, and at quality 25 they raised the cost instead of lowering it.
* The hyper-latent z is chosen once from the amortized y and then held, so the entropy parameters
  from ``h_s`` are fixed and only y moves (gradients pass through the context model and g_s).
  z holds 1-6 % of a file's bits (Kodak, quality 88 to 12); re-deriving z from the refined y
  and searching again gained nothing.
* The synthesis output is scored unclamped, although the decoder clamps it to [0, 1]: clamping
  it in the search (no gradient through saturated pixels) moved six held-out crops' files at
  qualities 12, 50 and 88 by at most 1.2 % of their bytes and 0.08 dB, mostly much less and in
  no consistent direction, so the simpler cost stays.
* On a CPU with bfloat16 matrix units (Intel AMX) the synthesis runs forward and backward under
  bfloat16 autocast (``SEARCH_BFLOAT16``): the search only needs the gradient's direction, and
  at 2 threads on a Kodak image the synthesis' forward and backward take about 145 ms instead of
  440 ms (gradients' cosine with float32's 0.99993). On the 16 tuning crops (below) effort 1's
  files came out +0.07 % BD-rate against the float32 search with 0.20.0's one step, +0.08 % with
  0.21.0's two. Elsewhere bfloat16 is emulated and slower, so the search stays in float32.

Large images are refined tile by tile on the encoder's tiling (``tiling``), each tile with its
halo; only the interior of each tile is kept. The refined bytes depend on float arithmetic in
the backward pass, so unlike effort 0 they may differ by thread count or machine (bfloat16 or
not above all); any such file decodes to the same pixels everywhere, because the decoder's
entropy model is exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import tiling
from .nets.checkerboard import CheckerboardHyperprior, anchor_mask
from .nets.hyperprior import MeanScaleHyperprior
from .nets.inference import BFLOAT16_IS_FAST, InferenceTransforms
from .nets.priors import gaussian_likelihood


class Search(NamedTuple):
    """One effort level's search: one gradient-descent step per entry of ``schedule``, step t of
    ``step_size`` · ``schedule[t]``, all at soft-rounding temperature ``tau``; at level ℓ the step
    is scaled by exp(``growth`` · ℓ) and τ by exp(``growth`` · ℓ / 2). The first ``filter_steps``
    steps (all of them if ``None``) differentiate through the post-filter, later ones through g_s
    alone, adding the correction the filter made at the last step that ran it (with
    ``filter_steps=0``, the correction of a forward pass at the first step)."""

    schedule: tuple[float, ...]
    tau: float
    step_size: float
    growth: float = 0.0
    filter_steps: int | None = None
    parameter_gradient: bool = True  # False: the entropy parameters are computed without autograd
    # at every step, so the bits' gradient is each latent's own term (not through the context model)

    def at(self, level: float) -> tuple[float, float]:
        """(step size, τ) at ``level``."""
        return self.step_size * math.exp(self.growth * level), self.tau * math.exp(self.growth * level / 2)

    def through_filter(self, t: int) -> bool:
        """Whether step ``t`` differentiates through the post-filter (else it reuses its correction)."""
        return self.filter_steps is None or t < self.filter_steps


EFFORTS: tuple[Search | None, ...] = (
    None,
    Search((1.25, 0.6), 0.15, 3e-3, 0.105, filter_steps=0, parameter_gradient=False),
    Search((1.25, 0.7, 0.45, 0.25), 0.15, 3e-3, 0.105),
)
"""The search per effort level; effort 0 takes the amortized latents as they are.

Effort 1: a large step at a low τ, then one about half as large from where it landed, both
differentiating through g_s alone, with the post-filter's correction from a forward pass at the
first step held (since 0.22.0), and the entropy parameters taken as constants of each step
(since 0.23.0): see the last two points below.
Effort 2: four steps of shrinking size (1.25, 0.7, 0.45, 0.25 times 3e-3, times e^(0.105 level)),
each through the filter. All steps use the same low τ: at τ this low the soft rounding is flat
near integers and steep near the rounding thresholds, so the gradient moves mostly the latents
near a threshold, each to the side the rate-distortion cost prefers.

Chosen in 0.21.0 for photo-cb64-m224-r15-pf3 by BD-rate on the 16 tuning crops (centre 256x384
crops of photos-train's files 16k+3, the post-filter's validation files, neither the held-out
split nor Kodak; qualities 5-90), against 0.20.0's one step of 3e-3 · e^(0.105 level) at
τ 0.15 · e^(0.0525 level), bfloat16 throughout (per third of the quality range in brackets):

* two steps of that size, the second at τ annealed to 0.05, as 0.20.0's ten-step schedule would:
  +6.4 %; at half size from τ 0.3: +1.0 %. Two steps at the *same* τ: second step 0.15 / 0.3 /
  0.5 / 0.7 times the first: -0.86 / -1.47 / -1.87 / -1.90 %; 1.25 and 0.6: -2.00 % (-2.00 /
  -1.67 / -2.66), 1.5 and 0.75: -1.88 %; τ 0.8 times as high for both -1.96 %, the second step's
  τ 1.5 or 0.6 times the first's -0.98 / -1.72 %. Three steps (1.25, 0.6, 0.3) -2.59 %, four
  (as effort 2) -2.82 % (-2.81 / -2.28 / -3.96), six (1.25 down to 0.2) -2.73 %. 0.20.0's effort 2,
  ten steps annealed from τ 0.5, was -1.59 % (-1.98 / -1.47 / -1.07): fewer, larger steps at a
  fixed low τ do better for less time.
* what each step differentiates through, for (1.25, 0.6): the second step through g_s with the
  filter's correction recomputed but held (forward only) -1.51 %, the first step's correction
  reused -1.33 % (-0.61 / -1.31 / -2.56), the second step without the filter at all -1.17 %, the
  first without it -0.97 %, both with held corrections -1.04 %; entropy parameters held in the
  second step cost 0.72 % more. At 2 threads on a Kodak image the filter's gradient is about
  100 ms a step and its forward about 40 ms, so effort 1 takes the reused correction and
  stays under 0.7 s: about 0.65 s, against 0.47 s for one step and 0.75 s for two full ones.
* 0.22.0's filter (photo-cb64-m224-r15-pf4, 64 channels and 12 layers against 48 and 10) costs
  about 135 ms forward and backward at 2 threads instead of 90, and on an hour when the machine
  ran 15 % slower effort 1 took 761 ms. Without the filter's gradient in either step (its
  correction from one forward pass, held) it is about 12 % faster; on the 16 crops, with pf4,
  that costs +0.43 % BD-rate against the first step through the filter (+0.92 / +0.15 / +0.12 %
  by thirds of the PSNR range), so effort 1 takes it to stay within 0.7 s.
* In 0.23.0 the context model's backward pass was the largest part of a step (the entropy
  parameters' forward and backward ~120 ms at 2 threads on a Kodak image, g_s's ~100 ms). With the
  parameters computed without autograd at each step (``parameter_gradient=False``: the bits'
  gradient is each latent's own term, not also its pull on its neighbours' parameters through the
  context model), effort 1 is ~90 ms faster for +0.31 % BD-rate on the crops (+0.61 / +0.18 /
  +0.10); computed once and held for both steps, +0.84 %. Computing them in bfloat16 too: -0.02 %.
  Effort 2 keeps the gradient. For every effort, g_a runs in bfloat16 where the search does
  (codec.code_latents): the search moves its output far more than that rounding (-0.01 %).

The single step's size, τ and growth come from 0.20.0's tuning on the same crops, by BD-rate per
quarter of the quality range (5-25, 25-45, 45-65, 65-88) against 0.19.0's 2e-3 at τ 0.15: 3e-3 at
τ 0.15 -0.33 / -0.66 / -0.76 / -1.09 %, 4e-3 at 0.18 -0.12 / -0.69 / -0.91 / -1.70 %, 6e-3 at
0.22 +1.05 / -0.42 / -1.08 / -2.49 %, 8e-3 at 0.26 +2.60 / +0.31 / -0.98 / -2.84 %: the best step
grows with the level, hence ``Search.growth`` (-0.97 % over the whole range). Tuning by the
files' cost R + λD at the quality's own λ misled there: 6e-3 at τ 0.22 lowered it most, yet on
Kodak it was only -0.2 % BD-rate (+1.6 % below 28 dB). The cost at a fixed λ rewards moving a
point along its curve wherever λ is not the curve's slope; BD-rate does not, so schedules are
chosen by BD-rate. Earlier still (photo-cb64-m224-r11, by cost): 30 annealed steps lowered the
cost about 1 % more than 10 and gave -0.7 % BD-rate on Kodak for three times the time; re-deriving
z and searching again, Adam, or momentum gained nothing."""


ATANH_MAX = 0.999


SEARCH_BFLOAT16 = BFLOAT16_IS_FAST
"""Run the search's synthesis (forward and backward) in bfloat16 where that is fast."""


def check_effort(effort: int) -> int:
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or not 0 <= effort < len(EFFORTS):
        raise ValueError(f"effort must be an integer from 0 to {len(EFFORTS) - 1}, got {effort!r}")
    return int(effort)


def rd_lambda(net: MeanScaleHyperprior, level: float) -> float:
    """The λ a (fractional) level stands for: trained λs interpolated geometrically, like the gains."""
    lams = np.log(np.asarray(net.config.lambdas, dtype=np.float64))
    if len(lams) == 1:
        return float(np.exp(lams[0]))
    lo = int(np.clip(math.floor(level), 0, len(lams) - 2))
    t = float(np.clip(level - lo, 0.0, 1.0))
    return float(np.exp(lams[lo] * (1 - t) + lams[lo + 1] * t))


def soft_round(d: Tensor, tau: float) -> Tensor:
    """Differentiable stand-in for ``round(d)``: the two nearest integers weighted by
    ``softmax(-atanh(distance) / tau)``; integers move by under 1e-3 (the clamp that keeps
    atanh's gradient finite), and it becomes ``round`` as tau -> 0."""
    floor = torch.floor(d)
    frac = d - floor
    down = -torch.atanh(frac.clamp(max=ATANH_MAX)) / tau  # clamped: atanh'(1) is infinite
    up = -torch.atanh((1.0 - frac).clamp(max=ATANH_MAX)) / tau
    return floor + torch.sigmoid(up - down)


def _parameters(net: MeanScaleHyperprior, y: Tensor, hyper: Tensor, first: Tensor | None, anchor: Tensor | None,
                gradient: bool) -> tuple[Tensor, Tensor]:
    """(scales, means) of one tile's latents ``y``. ``first``: the anchors' parameters (they see
    only z, so they are computed once per tile); ``anchor``: the tile's anchor mask. The context
    sees the anchors hard-rounded (straight-through), as the decoder will: with soft-rounded
    anchors, files came out up to 4 % larger on held-out crops. Without ``gradient`` they are
    constants of the step, computed without autograd (in bfloat16 where the search uses it)."""
    if first is None:  # no context model: everything comes from h_s
        return hyper.chunk(2, dim=1)
    if gradient:
        return net.two_pass_parameters(y, hyper, first, anchor)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=SEARCH_BFLOAT16):
        scales, means = net.two_pass_parameters(y.detach(), hyper, first, anchor)
    return scales.float(), means.float()


def _refine_tile(tf: InferenceTransforms, x: Tensor, valid: tuple[int, int], grey: bool,
                 y: Tensor, hyper: Tensor, level: Tensor, lam: float, search: Search, row0: int, col0: int) -> Tensor:
    """``search`` on one tile; ``valid``: rows and columns of ``x`` inside the image
    (the rest is padding nobody sees); ``grey``: the decoder will average the three channels."""
    net, (h, w) = tf.net, valid
    target = x[:, :1, :h, :w] if grey else x[:, :, :h, :w]
    first = anchor = None
    if isinstance(net, CheckerboardHyperprior):
        first = net._entropy_params(hyper, None).detach()
        anchor = anchor_mask(*y.shape[2:], row0 + col0)  # whole-image parity of (row + col)
    y = y.detach().requires_grad_(True)  # the caller's copy
    step_size, tau = search.at(float(level[0]))
    correction: Tensor | None = None  # the post-filter's, as last computed
    for t, scale in enumerate(search.schedule):
        scales, means = _parameters(net, y, hyper, first, anchor, search.parameter_gradient)
        y_soft = soft_round(y - means, tau) + means
        bits = -torch.log2(gaussian_likelihood(y_soft, scales, means)).sum()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=SEARCH_BFLOAT16):
            x_hat = tf.base_synthesis(y_soft, level)
            if tf.postfilter is not None and search.through_filter(t):
                fresh = tf.postfilter.residual(x_hat, level)
                x_hat, correction = x_hat + fresh, fresh.detach()
            elif tf.postfilter is not None:
                if correction is None:  # no step has run the filter yet: one forward pass, held
                    with torch.no_grad():
                        correction = tf.filter_correction(x_hat.detach(), level)
                x_hat = x_hat + correction
        x_hat = x_hat[:, :, :h, :w].float()
        if grey:
            x_hat = x_hat.mean(dim=1, keepdim=True)  # what codec._to_pixels keeps of an L image
        cost = bits + lam * 255**2 * (x_hat - target).square().sum() / x_hat.shape[1]
        (grad,) = torch.autograd.grad(cost, y)
        with torch.no_grad():
            y -= step_size * scale * grad
    return y.detach()


def refine(
    tf: InferenceTransforms, color: np.ndarray, y: Tensor, z_int: np.ndarray,
    level: Tensor, effort: int, tile: int | None,
) -> Tensor:
    """Latents y (gained, (1, M, rows, cols) float32) refined for ``color`` (H x W x 1|3 uint8) at
    ``level``, with z's symbols ``z_int`` held; ``tile`` latent cells per tile side or ``None``.
    ``tf`` holds the decoder's own transforms on the CPU (``codec.model_transforms``), post-filter
    included, so the cost's distortion is what the decoder will show."""
    search = EFFORTS[check_effort(effort)]
    if search is None:
        return y
    net = tf.net
    lam = rd_lambda(net, float(level[0]))
    height, width = color.shape[:2]
    rows, cols = y.shape[2:]
    with torch.inference_mode(False), torch.enable_grad():  # the codec runs in inference mode
        out = y.clone()
        z = torch.from_numpy(z_int).float()[None]
        hyper = net.h_s(z * net.interpolate(net.inv_hyper_gain, level)).detach()
        for sr, sc in tiling.grid(rows, cols, tile, tiling.REFINE_HALO):
            x = tiling.pixel_tile(color, sr, sc)  # the pixels g_a saw, edge-extended alike
            valid = (max(0, min(sr.stop * 16, height) - sr.start * 16),  # 0: a tile of padding only
                     max(0, min(sc.stop * 16, width) - sc.start * 16))
            region = (slice(None), slice(None), slice(sr.start, sr.stop), slice(sc.start, sc.stop))
            y_tile = _refine_tile(tf, x, valid, color.shape[2] == 1, y[region].clone(), hyper[region],
                                  level, lam, search, sr.start, sc.start)
            if torch.isfinite(y_tile).all():  # else keep the amortized latents: never a broken file
                out[:, :, sr.keep, sc.keep] = y_tile[:, :, sr.inner, sc.inner]
    return out
