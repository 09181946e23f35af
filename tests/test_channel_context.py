"""The channel-slice context: causality per slice, exactness, banding, multi-part streams and
effort 1, on small random models whose slice layers are not zero (the .nac round trip and tiling
of context models run on one of these too, in ``test_context``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocodec import codec, io
from neurocodec.entropy.gaussian import GaussianCoder
from neurocodec.errors import NacFormatError
from neurocodec.nets import build, channel_context, hyperprior
from neurocodec.nets.channel_context import SlicedCheckerboardHyperprior
from neurocodec.nets.checkerboard import anchor_mask
from neurocodec.nets.hyperprior import HyperpriorConfig
from neurocodec.nets.priors import gaussian_tables, scale_table

from conftest import photo_like

CONFIG = HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1), context="checkerboard", channel_slices=3, slice_width=8)
GROUP = CONFIG.m // CONFIG.channel_slices


def _random_net(seed: int = 0) -> SlicedCheckerboardHyperprior:
    torch.manual_seed(seed)
    net = build(CONFIG)
    with torch.no_grad():  # the zero-initialised output layers get some weight
        net.context.weight.normal_(0, 0.05)
        net.ep[-1].weight.normal_(0, 0.05)
        net.slices.y_conv.weight.normal_(0, 0.2)  # hidden taps too: export must zero them
        net.slices.out.weight.normal_(0, 0.1)
        net.slices.out.bias.normal_(0, 0.05)
    return net.eval()


def _parameters(net, rows: int, cols: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(-3, 4, (1, CONFIG.n, rows // 4, cols // 4), generator=g).double()
    with torch.no_grad():
        hs, hm = net.entropy_parameters(z, torch.tensor([0.5]))
        return net.context_parameters(hs, hm, None)


def _decoded(rows: int, cols: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, CONFIG.m, rows, cols, generator=g, dtype=torch.float64) * 3


def test_build_picks_the_sliced_network_and_names_what_it_cannot_build():
    assert isinstance(build(CONFIG), SlicedCheckerboardHyperprior)
    with pytest.raises(ValueError, match="channel slices need the checkerboard context, not 'none'"):
        build(HyperpriorConfig(n=8, m=12, channel_slices=3))
    with pytest.raises(ValueError, match="12 latent channels do not split into 5 equal slices"):
        build(HyperpriorConfig(n=8, m=12, context="checkerboard", channel_slices=5))


@pytest.mark.parametrize("s", [0, 1, 2])
def test_a_slice_reads_only_the_slices_before_it(s):
    net = _random_net()
    scales, means = _parameters(net, 8, 8)
    y_hat = _decoded(8, 8)
    before = net.slice_parameters(s, scales, means, y_hat)
    garbage = y_hat.clone()
    garbage[:, s * GROUP :] = torch.randn_like(garbage[:, s * GROUP :]) * 50  # not decoded yet
    after = net.slice_parameters(s, scales, means, garbage)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    if s:  # ... and the slices before it do matter (the test would pass vacuously otherwise)
        moved = y_hat.clone()
        moved[:, : s * GROUP] += 1
        assert not torch.equal(before[1], net.slice_parameters(s, scales, means, moved)[1])


def test_exact_slice_parameters_stay_close_to_the_float_network():
    net = _random_net()
    scales, means = _parameters(net, 8, 8)
    y_hat = _decoded(8, 8)
    for s in range(CONFIG.channel_slices):
        c = slice(s * GROUP, (s + 1) * GROUP)
        with torch.no_grad():
            ds, dm = net.slices(s, y_hat.float(), scales.float(), means.float())
        es, em = net.slice_parameters(s, scales, means, y_hat)
        assert (es - (scales[:, c] + ds.double())).abs().max() < 0.05
        assert (em - (means[:, c] + dm.double())).abs().max() < 0.05


def test_exact_slice_parameters_do_not_depend_on_the_band_height(monkeypatch):
    net = _random_net()
    scales, means = _parameters(net, 16, 8)
    y_hat = _decoded(16, 8)
    whole = [net.slice_parameters(s, scales, means, y_hat) for s in range(3)]
    monkeypatch.setattr(channel_context, "BAND_ROWS", 3)
    banded = [net.slice_parameters(s, scales, means, y_hat) for s in range(3)]
    assert all(torch.equal(a, b) for w, b_ in zip(whole, banded) for a, b in zip(w, b_))


def test_exact_slice_parameters_do_not_depend_on_summation_order(monkeypatch):
    from test_determinism import _reordered_conv

    net = _random_net()
    scales, means = _parameters(net, 8, 12)
    y_hat = _decoded(8, 12)
    before = [net.slice_parameters(s, scales, means, y_hat) for s in range(3)]
    monkeypatch.setattr(channel_context, "_exact_conv", _reordered_conv)  # the 1x1 over the parameters
    monkeypatch.setattr(hyperprior, "_exact_conv", _reordered_conv)  # the 3x3, mid and out
    after = [net.slice_parameters(s, scales, means, y_hat) for s in range(3)]
    assert all(torch.equal(a, b) for w, b_ in zip(before, after) for a, b in zip(w, b_))


def test_the_exactness_bound_counts_the_slice_layers():
    net = _random_net()
    bound = net.fixed_point_bound()
    with torch.no_grad():
        net.slices.p_conv.weight.fill_(8.0)  # the largest weight the fixed-point grid keeps
    assert net.fixed_point_bound() > bound
    assert net.fixed_point_bound() >= 8 * 2**12 * 2 * CONFIG.m * int(hyperprior.ACT_MAX * 2**8)


def test_a_sliced_model_initialised_from_a_checkerboard_model_starts_as_that_model():
    torch.manual_seed(0)
    plain = build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1), context="checkerboard")).eval()
    with torch.no_grad():
        plain.ep[-1].weight.normal_(0, 0.05)
    sliced = build(CONFIG).eval()
    missing, unexpected = sliced.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("slices.") for k in missing)
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    bits_plain, x_plain = plain.estimate(x, level)
    bits_sliced, x_sliced = sliced.estimate(x, level)
    assert torch.allclose(bits_plain, bits_sliced) and torch.allclose(x_plain, x_sliced)


def test_the_float_parameters_of_a_slice_ignore_latents_the_decoder_has_not_yet():
    net = _random_net()
    y = torch.randn(1, CONFIG.m, 8, 8) * 3
    hyper = torch.randn(1, 2 * CONFIG.m, 8, 8)
    anchor = anchor_mask(8, 8)
    with torch.no_grad():
        first = net._entropy_params(hyper, None)
        scales, means = net.two_pass_parameters(y, hyper, first, anchor)
        later = y.clone()
        later[:, 2 * GROUP :] += torch.where(anchor, 0.0, 40.0)  # the last slice's second half only
        s2, m2 = net.two_pass_parameters(later, hyper, first, anchor)
    assert torch.equal(scales[:, : 2 * GROUP], s2[:, : 2 * GROUP]) and torch.equal(means[:, :2 * GROUP], m2[:, :2 * GROUP])
    assert torch.equal(scales[..., anchor], s2[..., anchor])


def _coder() -> GaussianCoder:
    scales = scale_table()
    radii, pmfs = gaussian_tables(scales)
    return GaussianCoder(scales, radii, [pmfs[k, : 2 * radii[k] + 2] for k in range(len(scales))])


def test_one_part_codes_to_the_same_bytes_as_a_plain_encode_and_parts_read_back_in_order():
    coder = _coder()
    rng = np.random.default_rng(0)
    parts = [(rng.integers(-30, 30, size=(4, 9)), rng.integers(0, len(coder.scales), size=(4, 9))) for _ in range(3)]
    parts[1][0][0, 0] = 10**6  # an escape in the middle part
    assert coder.encode_parts(parts[:1]) == coder.encode(*parts[0])
    data, escapes = coder.encode_parts(parts)
    reader = coder.decoder(data, escapes)
    for residuals, index in parts:
        assert np.array_equal(reader.next(index), residuals)
    reader.finish()


def test_a_multi_part_stream_read_with_a_part_missing_is_refused():
    coder = _coder()
    rng = np.random.default_rng(1)
    parts = [(rng.integers(-3, 3, size=50), rng.integers(0, len(coder.scales), size=50)) for _ in range(2)]
    parts[1][0][0] = 10**6
    data, escapes = coder.encode_parts(parts)
    reader = coder.decoder(data, escapes)
    reader.next(parts[0][1])
    with pytest.raises(NacFormatError, match="left over"):
        reader.finish()


@pytest.fixture
def sliced_model(install_model):
    return install_model(_random_net(), "tiny-cb-slices")


def test_exported_slice_weights_are_zero_where_the_mask_hides_them(sliced_model):
    sc = sliced_model.net.slices
    assert sc.y_conv.weight[sc.mask.expand_as(sc.y_conv.weight) == 0].abs().max() == 0
    assert sc.y_conv.weight[sc.mask.expand_as(sc.y_conv.weight) == 1].abs().max() > 0


def test_sliced_model_searches_its_latents_at_effort_1(sliced_model):
    pic = io.load(photo_like(64, 64))
    enc = codec.encode(pic, quality=50, model=sliced_model, effort=1, reconstruct=True)
    assert np.array_equal(codec.decode(enc.data).pixels, enc.reconstruction.pixels)


@pytest.mark.parametrize("band_rows", [64, 3])
def test_slice_parameters_computed_on_one_half_only_equal_the_whole_grid_there(monkeypatch, band_rows):
    monkeypatch.setattr(channel_context, "BAND_ROWS", band_rows)
    net = _random_net()
    scales, means = _parameters(net, 8, 12)
    y_hat = _decoded(8, 12)
    for half in (anchor_mask(8, 12), ~anchor_mask(8, 12)):
        for s in range(CONFIG.channel_slices):
            whole = net.slice_parameters(s, scales, means, y_hat)
            part = net.slice_parameters(s, scales, means, y_hat, where=half)
            for w, p in zip(whole, part):
                assert torch.equal(p[..., half], w[..., half]) and not p[..., ~half].any()
