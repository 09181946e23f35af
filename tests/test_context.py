"""The checkerboard context model: causality, exactness, band independence and the .nac round trip.

These tests build small random models (no shipped weights needed) whose context layers are not
zero, so the second coding pass really depends on the first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import codec, container, io
from neurocodec.container import Stream
from neurocodec.nets import build, checkerboard, hyperprior
from neurocodec.nets.checkerboard import CheckerboardHyperprior, anchor_mask
from neurocodec.nets.hyperprior import HyperpriorConfig

from conftest import photo_like

CONFIG = HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1), context="checkerboard")


def _random_net(seed: int = 0) -> CheckerboardHyperprior:
    torch.manual_seed(seed)
    net = build(CONFIG)
    with torch.no_grad():  # give the zero-initialised residual layer some weight
        net.context.weight.normal_(0, 0.05)  # masked taps too: export must zero them
        net.ep[-1].weight.normal_(0, 0.05)
        net.ep[-1].bias.normal_(0, 0.05)
    return net.eval()


def _hyper(net: CheckerboardHyperprior, rows: int, cols: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(-3, 4, (1, CONFIG.n, rows // 4, cols // 4), generator=g).double()
    with torch.no_grad():
        return net.entropy_parameters(z, torch.tensor([0.5]))


def test_build_picks_the_network_its_config_names():
    assert type(build(HyperpriorConfig(n=8, m=12))).__name__ == "MeanScaleHyperprior"
    assert isinstance(build(CONFIG), CheckerboardHyperprior)
    with pytest.raises(ValueError, match="unknown context model 'raster'"):
        build(HyperpriorConfig(n=8, m=12, context="raster"))


def test_second_pass_parameters_ignore_every_non_anchor_latent():
    net = _random_net()
    hs, hm = _hyper(net, 8, 12)
    anchor = anchor_mask(8, 12)
    y_hat = torch.randn(1, CONFIG.m, 8, 12, dtype=torch.float64) * 3
    s1, m1 = net.context_parameters(hs, hm, torch.where(anchor, y_hat, 0.0))
    changed = torch.where(anchor, y_hat, torch.randn_like(y_hat) * 50)  # garbage where not yet decoded
    s2, m2 = net.context_parameters(hs, hm, changed)
    assert torch.equal(s1[..., ~anchor], s2[..., ~anchor]) and torch.equal(m1[..., ~anchor], m2[..., ~anchor])
    # ... and the anchors' own values do matter (the test would pass vacuously otherwise)
    s3, _ = net.context_parameters(hs, hm, torch.where(anchor, y_hat + 1, 0.0))
    assert not torch.equal(s1[..., ~anchor], s3[..., ~anchor])


def test_exact_parameters_do_not_depend_on_the_band_height(monkeypatch):
    net = _random_net()
    hs, hm = _hyper(net, 16, 8)
    y_hat = torch.where(anchor_mask(16, 8), torch.randn(1, CONFIG.m, 16, 8, dtype=torch.float64), 0.0)
    whole = net.context_parameters(hs, hm, y_hat)
    monkeypatch.setattr(checkerboard, "BAND_ROWS", 3)
    banded = net.context_parameters(hs, hm, y_hat)
    assert all(torch.equal(a, b) for a, b in zip(whole, banded))


def test_exact_parameters_stay_close_to_the_float_network():
    net = _random_net()
    hs, hm = _hyper(net, 8, 8)
    y_hat = torch.where(anchor_mask(8, 8), torch.randn(1, CONFIG.m, 8, 8, dtype=torch.float64), 0.0)
    exact = torch.cat(net.context_parameters(hs, hm, y_hat), dim=1)
    with torch.no_grad():
        approx = net._entropy_params(torch.cat([hs, hm], dim=1).float(), y_hat.float())
    assert (exact - approx.double()).abs().max() < 0.05


def test_a_context_model_initialised_from_a_hyperprior_starts_as_that_hyperprior():
    torch.manual_seed(0)
    plain = build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1))).eval()
    ctx = build(CONFIG).eval()
    missing, unexpected = ctx.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("context.", "ep.")) for k in missing)
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    bits_plain, x_plain = plain.estimate(x, level)
    bits_ctx, x_ctx = ctx.estimate(x, level)
    assert torch.allclose(bits_plain, bits_ctx) and torch.allclose(x_plain, x_ctx)


@pytest.fixture(params=["checkerboard", "channel slices"])
def context_model(request, install_model):
    """A small checkerboard model, and one with channel slices inside its halves
    (``test_channel_context``): what a context model's files must do holds for both."""
    if request.param == "checkerboard":
        return install_model(_random_net(), "tiny-cb")
    from test_channel_context import _random_net as sliced_net

    return install_model(sliced_net(), "tiny-cb-slices")


def test_exported_context_weights_are_zero_at_the_taps_the_mask_hides(context_model):
    conv = context_model.net.context
    assert conv.weight[..., conv.mask == 0].abs().max() == 0
    assert conv.weight[..., conv.mask == 1].abs().max() > 0


def test_context_passes_do_not_depend_on_summation_order(monkeypatch):
    from test_determinism import _reordered_conv

    net = _random_net()
    hs, hm = _hyper(net, 8, 12)
    y_hat = torch.where(anchor_mask(8, 12), torch.randn(1, CONFIG.m, 8, 12, dtype=torch.float64) * 3, 0.0)
    before = [*net.context_parameters(hs, hm, None), *net.context_parameters(hs, hm, y_hat)]
    monkeypatch.setattr(hyperprior, "_exact_conv", _reordered_conv)  # the context convolution and ep
    after = [*net.context_parameters(hs, hm, None), *net.context_parameters(hs, hm, y_hat)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_context_model_files_round_trip_bit_exactly_in_two_halves(context_model):
    pic = io.load(photo_like(70, 90))
    enc = codec.encode(pic, quality=60, model=context_model, reconstruct=True)
    nac = container.unpack(enc.data)
    assert enc.data[9] == 1  # minor version 1.1: it has the context streams
    assert {Stream.Y, Stream.Y_ESCAPES, Stream.Y_CONTEXT, Stream.Y_CONTEXT_ESCAPES} <= {k for k, _ in nac.streams}
    out = codec.decode(enc.data)
    assert np.array_equal(out.pixels, enc.reconstruction.pixels)
    assert np.array_equal(np.asarray(neurocodec.decode(enc.data)), out.pixels)


def test_context_model_bytes_do_not_depend_on_tiling(context_model):
    pic = io.load(photo_like(140, 100))
    whole = codec.encode(pic, quality=40, model=context_model, tile=None).data
    assert codec.encode(pic, quality=40, model=context_model, tile=3).data == whole
    assert np.array_equal(codec.decode(whole, tile=2).pixels, codec.decode(whole, tile=None).pixels)


def test_a_missing_second_half_is_named(context_model):
    from dataclasses import replace

    nac = container.unpack(codec.encode(io.load(photo_like(32, 32)), model=context_model).data)
    broken = replace(nac, streams=tuple((k, d) for k, d in nac.streams if k != Stream.Y_CONTEXT))
    with pytest.raises(neurocodec.NacFormatError, match="stream Y_CONTEXT is missing"):
        codec.decode(container.pack(broken))


@pytest.fixture
def plain_model(install_model):
    torch.manual_seed(0)
    return install_model(build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1))).eval(), "test-plain")


def test_plain_hyperprior_files_stay_version_1_0(plain_model):
    data = neurocodec.encode(photo_like(16, 16), quality=10, model="test-plain")
    assert data[8:10] == bytes([1, 0])


def test_a_1_0_file_may_not_carry_1_1_streams(plain_model):
    nac = container.unpack(neurocodec.encode(photo_like(16, 16), quality=10, model="test-plain"))
    from dataclasses import replace

    data = bytearray(container.pack(replace(nac, streams=(*nac.streams, (Stream.Y_CONTEXT, b"")))))
    assert data[9] == 1
    data[9] = 0
    import zlib

    hlen = int.from_bytes(data[10:12], "little")
    data[12 + hlen : 16 + hlen] = zlib.crc32(bytes(data[8 : 12 + hlen])).to_bytes(4, "little")
    with pytest.raises(neurocodec.NacFormatError, match="Y_CONTEXT needs .nac version 1.1, the file says 1.0"):
        container.unpack(bytes(data))


def test_geometric_gain_interpolation_keeps_gain_times_inverse_steady_between_levels():
    torch.manual_seed(0)
    linear = build(HyperpriorConfig(n=8, m=12, lambdas=(0.001, 0.01, 0.1)))
    geometric = build(HyperpriorConfig(n=8, m=12, lambdas=(0.001, 0.01, 0.1), gain_interpolation="geometric"))
    geometric.load_state_dict(linear.state_dict())
    for net in (linear, geometric):  # trained gains are not exact inverses: product 1 at every level
        with torch.no_grad():
            net.inv_gain.copy_(1 / net.gain)
    level = torch.tensor([0.5, 1.0, 1.25])
    product = geometric.y_gain(geometric.gain, level) * geometric.y_gain(geometric.inv_gain, level)
    assert torch.allclose(product, torch.ones_like(product), atol=1e-6)
    drift = linear.y_gain(linear.gain, level) * linear.y_gain(linear.inv_gain, level)
    assert drift[0].min() > 1.1  # half-way between levels 10x apart in lambda, linear drifts
    assert torch.allclose(geometric.y_gain(geometric.gain, torch.tensor([1.0])), linear.y_gain(linear.gain, torch.tensor([1.0])))


@pytest.mark.parametrize("band_rows", [64, 3])
def test_parameters_computed_on_one_half_only_equal_the_whole_grid_there(monkeypatch, band_rows):
    monkeypatch.setattr(checkerboard, "BAND_ROWS", band_rows)
    net = _random_net()
    hs, hm = _hyper(net, 8, 12)
    anchor = anchor_mask(8, 12)
    y_hat = torch.where(anchor, torch.randn(1, CONFIG.m, 8, 12, dtype=torch.float64) * 3, 0.0)
    for anchors, half in ((None, anchor), (y_hat, ~anchor)):
        whole = net.context_parameters(hs, hm, anchors)
        part = net.context_parameters(hs, hm, anchors, where=half)
        for w, p in zip(whole, part):
            assert torch.equal(p[..., half], w[..., half]) and not p[..., ~half].any()
