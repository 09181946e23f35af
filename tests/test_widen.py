"""Growing a trained model's latent channels (train/widen.py) and models whose entropy side is
narrower than their latents (``entropy_width``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocodec import codec, io
from neurocodec.nets import build
from neurocodec.nets.checkerboard import anchor_mask
from neurocodec.nets.hyperprior import HyperpriorConfig
from neurocodec.train.export import density_from_tables, export
from neurocodec.train.widen import widen_state

from conftest import photo_like
from test_context import CONFIG, _random_net  # a small checkerboard model with non-zero context layers


def _widened(net, m_new: int = 18):
    state, config = widen_state(net.state_dict(), net.config, m_new)
    wide = build(config)
    wide.load_state_dict(state)
    return wide.eval()


def test_default_entropy_width_is_the_latent_width():
    same = build(CONFIG).state_dict()
    explicit = build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1), context="checkerboard", entropy_width=12))
    assert {k: v.shape for k, v in same.items()} == {k: v.shape for k, v in explicit.state_dict().items()}


def test_widening_keeps_z_and_every_old_channels_entropy_parameters_exactly():
    old = _random_net()
    wide = _widened(old)
    assert wide.config.m == 18 and wide.config.e == 12
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([0.5])
    with torch.no_grad():
        _, z_old = old.analysis(x, level)
        _, z_wide = wide.analysis(x, level)
        assert torch.equal(z_old, z_wide)
        hs_o, hm_o = old.entropy_parameters(z_old, level)
        hs_w, hm_w = wide.entropy_parameters(z_wide, level)
        assert torch.equal(hs_o, hs_w[:, :12]) and torch.equal(hm_o, hm_w[:, :12])
        anchors = torch.where(anchor_mask(4, 4), torch.randn(1, 18, 4, 4, dtype=torch.float64) * 3, 0.0)
        for a_old, a_wide in ((None, None), (anchors[:, :12], anchors)):  # both checkerboard passes
            so, mo = old.context_parameters(hs_o, hm_o, a_old)
            sw, mw = wide.context_parameters(hs_w, hm_w, a_wide)
            assert torch.equal(so, sw[:, :12]) and torch.equal(mo, mw[:, :12])


def test_new_channels_start_rounded_to_zero_so_picture_and_rate_barely_change():
    old = _random_net()
    wide = _widened(old)
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    bits_old, x_old = old.estimate(x, level)
    bits_wide, x_wide = wide.estimate(x, level)
    assert torch.equal(x_wide, x_old)  # every new latent rounds to 0 at the top level too
    assert bits_wide.item() < 1.05 * bits_old.item()  # ... and a 0 costs little under the narrow start scale


def test_new_analysis_filters_learn_even_while_their_latents_round_to_zero():
    wide = _widened(_random_net()).train()
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        y, _ = wide.analysis(x, level)
    assert torch.round(y[:, 12:]).abs().max() == 0  # nothing of the new channels reaches g_s yet
    out = wide(x, level)
    out["x_hat"].square().mean().backward()  # distortion only: through the straight-through rounding
    assert wide.g_a[6].weight.grad[12:].abs().sum() > 0


def test_widening_can_only_add_channels():
    with pytest.raises(ValueError, match="m can only grow"):
        widen_state(_random_net().state_dict(), CONFIG, 12)


def test_the_z_density_is_recovered_from_a_shipped_files_tables(tmp_path):
    net = _random_net()
    with torch.no_grad():  # a density away from its initialisation
        for b in net.z_density.biases:
            b.add_(torch.randn_like(b))
    export(net, tmp_path / "m.safetensors", "m")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    fitted = build(CONFIG)
    fitted.load_state_dict(density_from_tables(state, CONFIG.n), strict=False)
    v = torch.arange(-40, 41, dtype=torch.float32).view(1, 1, -1).expand(CONFIG.n, 1, -1).contiguous()
    with torch.no_grad():
        p = net.z_density._interval_mass(v)[:, 0].double()
        q = fitted.z_density._interval_mass(v)[:, 0].double().clamp_min(1e-12)
    kl_bits = (p * (p.clamp_min(1e-12) / q).log2()).sum(1)
    assert kl_bits.max() < 0.05, kl_bits


@pytest.fixture
def narrow_entropy_model(install_model):
    return install_model(_widened(_random_net()), "tiny-wide")


def test_a_model_with_a_narrow_entropy_side_round_trips_bit_exactly(narrow_entropy_model):
    assert narrow_entropy_model.net.config.e == 12 and narrow_entropy_model.net.config.m == 18
    pic = io.load(photo_like(70, 90))
    enc = codec.encode(pic, quality=60, model=narrow_entropy_model, reconstruct=True)
    out = codec.decode(enc.data)
    assert np.array_equal(out.pixels, enc.reconstruction.pixels)
