"""Effort 0's rate-distortion rounding (``neurocodec.quantize``)."""

import numpy as np
import pytest
import torch

from neurocodec import codec, quantize, zoo
from neurocodec.io import Picture
from neurocodec.refine import rd_lambda

from conftest import photo_like


def test_rd_round_moves_only_toward_zero_and_only_by_one_step():
    torch.manual_seed(0)
    d = torch.randn(20000, dtype=torch.float64) * 3
    s = torch.rand(20000, dtype=torch.float64) * 2 + 0.05
    q, nearest = quantize.rd_round(d, s), torch.round(d)
    moved = q != nearest
    assert moved.any() and (q[moved] == nearest[moved] - torch.sign(nearest[moved])).all()


def test_a_confident_model_pulls_a_residual_past_one_half_to_its_mean_a_doubtful_one_does_not():
    d = torch.tensor([0.6, -0.6], dtype=torch.float64)
    assert quantize.rd_round(d, torch.full((2,), 0.1, dtype=torch.float64)).tolist() == [0.0, 0.0]
    assert quantize.rd_round(d, torch.full((2,), 5.0, dtype=torch.float64)).tolist() == [1.0, -1.0]


def test_an_infinite_weight_is_plain_rounding():
    d = torch.linspace(-4, 4, 801, dtype=torch.float64)
    assert torch.equal(quantize.rd_round(d, torch.full_like(d, 0.2), weight=float("inf")), torch.round(d))


@pytest.mark.parametrize("quality", [25, 75])
def test_effort_0_files_cost_less_than_with_nearest_rounding(quality, monkeypatch):
    model = zoo.load()
    pic = Picture(photo_like(96, 128, seed=5))
    level = codec.quality_to_rate(quality, model.levels) / codec.RATE_SCALE

    def cost():
        enc = codec.encode(pic, quality, model, reconstruct=True)
        mse = np.mean((pic.color.astype(np.float64) - enc.reconstruction.color) ** 2) / 255**2
        return 8 * len(enc.data) + rd_lambda(model.net, level) * 255**2 * mse * pic.width * pic.height

    ours = cost()
    monkeypatch.setattr(quantize, "rd_round", lambda d, scales, weight=None: torch.round(d))
    assert ours < cost()
