"""A decoder-side post-filter: a small residual CNN applied to g_s's output.

g_s is trained jointly with the entropy model, so its capacity is spent under a rate constraint.
A filter after it costs no bits: it sees the decoded image and the rate level it was coded at
and learns to remove what coding leaves behind at that level (ringing and blur at low rates;
at high rates it learns to do almost nothing). It is the image-domain counterpart of the loop
filters of video codecs, here non-normative in the sense that the bitstream does not change:
a filtered model is a *derived* model (``zoo``) whose file holds only the filter and names the
base model whose bitstream it decodes.

Layout: pixel-unshuffle by 2 (12 channels at half resolution, where the convolutions cost a
quarter), a constant plane with the level, ``depth`` 3x3 convolutions of ``channels`` with
ReLU, a 3x3 convolution back to 12 channels that starts at zero (so an untrained filter is the
identity), pixel-shuffle, and the result added to the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class PostFilterConfig:
    channels: int = 32
    depth: int = 4  # 3x3 convolutions before the output convolution, the input one included
    levels: int = 13  # the base model's rate levels; the level plane is level / (levels - 1)

    def __post_init__(self):
        if self.channels < 1 or self.depth < 1 or self.levels < 2:
            raise ValueError(f"unusable post-filter config {self}")


class PostFilter(nn.Module):
    def __init__(self, config: PostFilterConfig):
        super().__init__()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = [nn.Conv2d(13, c, 3, padding=1), nn.ReLU()]
        for _ in range(config.depth - 1):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        for layer in layers:  # He et al. 2015: PyTorch's default init shrank features ~15x by the last layer
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        self.out = nn.Conv2d(c, 12, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def load_smaller(self, state: dict[str, Tensor]) -> None:
        """Start from a trained filter of at most this width and depth, computing exactly what it
        computed (Net2Net, Chen et al. 2016: a bigger filter resumes where a trained one stopped
        instead of relearning it). Its convolutions come first. Each extra layer is the identity
        (its input is a ReLU output, so ReLU of it changes nothing). Each extra channel keeps
        this network's fresh initialisation on its inputs but starts with zero weight wherever an
        old channel or the output reads it, so it changes nothing until training makes it
        useful (those zeros get gradients, because the new channels' activations are not zero)."""
        convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("body.") and k.endswith(".weight"))
        c, old = self.config.channels, state["body.0.weight"].shape[0]
        if len(convs) > self.config.depth or old > c:
            raise ValueError(f"a filter of {len(convs)} convolutions of {old} channels does not fit in {self.config}")
        grown = {k: v.detach().clone() for k, v in self.state_dict().items()}
        for i in range(self.config.depth):
            w, b = grown[f"body.{2 * i}.weight"], grown[f"body.{2 * i}.bias"]
            if i < len(convs):
                fan_in = 13 if i == 0 else old
                w[:old, :fan_in] = state[f"body.{2 * i}.weight"]
                w[:old, fan_in:] = 0
                b[:old] = state[f"body.{2 * i}.bias"]
            else:
                w.zero_()
                w[range(c), range(c), 1, 1] = 1
                b.zero_()
        grown["out.weight"].zero_()
        grown["out.weight"][:, :old] = state["out.weight"]
        grown["out.bias"] = state["out.bias"].clone()
        self.load_state_dict(grown)

    def reach(self) -> int:
        """Pixels away that an output still depends on an input: depth + 1 convolutions of 3x3 at
        half resolution, plus one pixel for where a pixel falls in its 2x2 cell."""
        return 2 * (self.config.depth + 1) + 1

    def features(self, x: Tensor, level: Tensor) -> Tensor:
        """What the first convolution reads: ``x`` pixel-unshuffled (12 channels at half
        resolution) and the level plane, (B, 13, H/2, W/2)."""
        u = F.pixel_unshuffle(x, 2)
        plane = (level.to(u.dtype) / (self.config.levels - 1)).reshape(-1, 1, 1, 1)
        return torch.cat([u, plane.expand(u.shape[0], 1, *u.shape[2:])], dim=1)

    def residual(self, x: Tensor, level: Tensor) -> Tensor:
        """The correction the filter adds to ``x``: (B, 3, H, W) pixels in about [0, 1], H and W
        even, ``level`` (B,) -> (B, 3, H, W)."""
        return F.pixel_shuffle(self.out(self.body(self.features(x, level))), 2)

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        """(B, 3, H, W) pixels in about [0, 1], H and W even; ``level`` (B,) -> the same, filtered."""
        return x + self.residual(x, level)
