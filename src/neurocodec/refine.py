"""Encoder-side latent refinement: smaller files for more encoding time, with no decoder change.

``g_a`` is amortized: one forward pass guesses latents that are good on average over the
training crops. For one given image the encoder can do better by searching the latents directly
for that image's rate-distortion cost ``R + λ · 255² · MSE``, through the decoder's own synthesis
and entropy model (Campos et al., "Content adaptive optimization for neural image compression",
2019; Yang, Bamler & Mandt, "Improving inference for neural image compression", NeurIPS 2020).
The file format and the decoder are untouched: refined latents are just other integers in the
same streams, so every neurocodec that reads the model reads these files.

Choices, each measured on held-out photos-train crops (never on Kodak):

* Rounding has no useful gradient, so the search runs on *annealed soft rounding*: each latent
  is the mix of its two neighbouring integers with weights ``softmax(-atanh(distance) / τ)``, and
  over effort 2's ten steps τ falls from 0.5 to 0.05, so the relaxation ends close to the hard
  rounding the codec applies. This is the deterministic mean of Yang et al.'s stochastic Gumbel
  annealing (no sampling, so the result is a function of the image). Effort 1 takes one larger
  step at a low τ instead, for a tenth of the search time and about three quarters of the gain
  (``EFFORTS``). Straight-through rounding gained less at the same step count and diverged with
  Adam.
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
  files came out +0.07 % BD-rate against the float32 search, within the crops' noise. Elsewhere
  bfloat16 is emulated and slower, so the search stays in float32.

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
from .nets.inference import InferenceTransforms
from .nets.priors import gaussian_likelihood


class Search(NamedTuple):
    """One effort level's search: one gradient-descent step per entry of ``schedule``, step t of
    ``step_size`` · ``schedule[t]``, all at soft-rounding temperature ``tau``; at level ℓ the step
    is scaled by exp(``growth`` · ℓ) and τ by exp(``growth`` · ℓ / 2). The first ``filter_steps``
    steps differentiate through the post-filter, later ones through g_s alone, adding the
    correction the filter made at the last step that ran it."""

    schedule: tuple[float, ...]
    tau: float
    step_size: float
    growth: float = 0.0
    filter_steps: int = 1_000

    def at(self, level: float) -> tuple[float, float]:
        """(step size, τ) at ``level``."""
        return self.step_size * math.exp(self.growth * level), self.tau * math.exp(self.growth * level / 2)


EFFORTS: tuple[Search | None, ...] = (
    None,
    Search((1.25, 0.6), 0.15, 3e-3, 0.105, filter_steps=1),
    Search((1.25, 0.7, 0.45, 0.25), 0.15, 3e-3, 0.105),
)
"""The search per effort level; effort 0 takes the amortized latents as they are.

Effort 2, ten small steps with τ annealed from 0.5: on six held-out crops at qualities 12-88 they
lowered the files' rate-distortion cost by 4.5 % on average; steps of 2e-4 or 5e-4, τ from 0.3 or
0.8, τ down to 0.1, or momentum 0.5 all landed within 0.5 % of that, so the search is not
sensitive to these settings. Re-checked with photo-cb64-m224-r11 on four held-out 256x384 crops
at qualities 25, 55 and 85, after effort 1's single step was found: ten steps from τ 0.3 with
steps of 8e-4 gained the same 4.4 %, from τ 0.2 / 0.15 with 6e-4 / 1e-3 less (4.2 / 4.1 %), and
five or three steps from τ 0.15 3.7 / 3.0 %, so the ten steps keep their settings. 30 steps
lowered the cost about 1 % more than 10, and on Kodak they gave -0.7 % BD-rate against 10 for
three times the encoding time (benchmarks/results/kodak-effort2.json as of revision 325731f), so
no level offers them.

Re-tuned in 0.20.0 for photo-cb64-m224-r15-pf3 on effort 1's crops (below): by cost against
effort 0, steps of 5e-4 gained 2.94 / 3.46 %, 3e-4 2.72 / 3.12 %, 1e-3 2.64 % (first set; 6e-4
from τ 0.6 2.92 %); by BD-rate against 3e-4 on 6 of the crops at qualities 10-88, 5e-4 was
-0.06 % (+0.23 % up to quality 50, -0.79 % above): no worse, and kept, since it is the lower
cost the search is for and it keeps effort 2 ahead of effort 1's stronger step.

Effort 1, one large step at a low τ, for a tenth of effort 2's search time: at τ this low the soft
rounding is flat near integers and steep near the rounding thresholds, so the gradient moves
mostly the latents near a threshold, each to the side the rate-distortion cost prefers. Tuned with
photo-cb64-m224-r11 on four held-out 256x384 crops at qualities 25, 55 and 85 (the cost, against
effort 0): one step of 3e-4 from τ 0.5 gained 0.1 %, of 6e-4 / 1e-3 / 1.5e-3 / 2e-3 / 3e-3 at
τ 0.1 gained 1.9 / 2.6 / 3.0 / 3.2 / 3.0 %, and 2.5e-3 at τ 0.2 3.2 %, while τ 0.05 lost
(1.2-1.7 %) and two steps at the best rates found gave at most 2.8 %. Checked on five other
held-out crops at qualities 15, 45 and 75: 2.65 % for this setting, 2.5-2.6 % for its neighbours,
3.45 % for effort 2.

Re-tuned in 0.20.0 for photo-cb64-m224-r15-pf3, whose search runs through the post-filter, on
centre 256x384 crops of photos-train's files 16k+3 (the post-filter's validation files, neither
the held-out split nor Kodak). First by the files' cost R + λD against effort 0, which misled:
6e-3 at τ 0.22 lowered it most (2.26 / 2.86 % on two sets of 8 crops, against 1.56 / 1.91 % for
the old 2e-3 at τ 0.15), but by BD-rate on all 16 crops at qualities 5-88 it was only -0.45 %
against the old step, +1.05 % at qualities 5-25 and -2.49 % at 65-88, as on Kodak (-0.2 %, from
+1.6 % below 28 dB to -1.9 % above 33 dB). The cost at a fixed λ rewards moving a point along its
curve wherever λ is not the curve's slope; BD-rate does not. By BD-rate against the old step,
per quarter of the quality range (5-25, 25-45, 45-65, 65-88): 3e-3 at τ 0.15 -0.33 / -0.66 /
-0.76 / -1.09 %, 4e-3 at 0.18 -0.12 / -0.69 / -0.91 / -1.70 %, 6e-3 at 0.22 +1.05 / -0.42 /
-1.08 / -2.49 %, 8e-3 at 0.26 +2.60 / +0.31 / -0.98 / -2.84 %: the best step grows with the
level. So the step is 3e-3 · e^(0.105 level) and τ 0.15 · e^(0.0525 level) (``Search.growth``):
3e-3 at τ 0.15 at level 0, 7.7e-3 at τ 0.24 at quality 75; -0.97 % against the old step over
the whole range (-0.27 / -0.70 / -1.09 / -2.80 %). Through the filter's gradient a step costs
about 770 ms at 2 threads on a Kodak image; without the filter (the search scoring g_s's output)
about 370 ms, and with the filter's residual held constant in the backward pass (forward only)
about 530 ms, for less gain (by cost, 4e-3 at τ 0.15: 1.45 and 1.98 % against 2.07 % on the
first set)."""


ATANH_MAX = 0.999


def bfloat16_is_fast() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX): then the search runs
    its synthesis under bfloat16 autocast. Elsewhere bfloat16 is emulated and slower than float32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so looked up with care
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means no
        return False


SEARCH_BFLOAT16 = bfloat16_is_fast()
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
                tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """(soft-rounded y, scales, means) of one tile. ``first``: the anchors' parameters (they see
    only z, so they are computed once per tile); ``anchor``: the tile's anchor mask. The context
    sees the anchors hard-rounded (straight-through), as the decoder will: with soft-rounded
    anchors, files came out up to 4 % larger on held-out crops."""
    if first is None:  # no context model: everything comes from h_s
        scales, means = hyper.chunk(2, dim=1)
    else:
        scales, means = net.two_pass_parameters(y, hyper, first, anchor)
    return soft_round(y - means, tau) + means, scales, means


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
    correction: Tensor | float = 0.0  # the post-filter's, as last computed
    for t, scale in enumerate(search.schedule):
        y_soft, scales, means = _parameters(net, y, hyper, first, anchor, tau)
        bits = -torch.log2(gaussian_likelihood(y_soft, scales, means)).sum()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=SEARCH_BFLOAT16):
            x_hat = tf.base_synthesis(y_soft, level)
            if tf.postfilter is not None and t < search.filter_steps:
                fresh = tf.postfilter.residual(x_hat, level)
                x_hat, correction = x_hat + fresh, fresh.detach()
            else:
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
