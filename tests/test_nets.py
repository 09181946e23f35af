import numpy as np
import torch

from neurocodec.nets.hyperprior import SYNTHESIS_REACH_LIMIT, HyperpriorConfig, MeanScaleHyperprior
from neurocodec.nets.layers import GDN
from neurocodec.nets.priors import FactorizedDensity


def small_model(seed: int = 0) -> MeanScaleHyperprior:
    torch.manual_seed(seed)
    model = MeanScaleHyperprior(HyperpriorConfig(n=16, m=24, lambdas=(0.01, 0.05))).eval()
    with torch.no_grad():
        for p in model.h_s.parameters():
            p.normal_(0, 0.2)
    return model


def _reordered_reference(model, z, level):
    """The same fixed-point network, summed in another order: channels reversed, im2col matmuls."""
    from neurocodec.nets.hyperprior import ACT_FRAC_BITS, ACT_MAX, WEIGHT_FRAC_BITS, WEIGHT_MAX, _fixed

    a = _fixed(z.double() * model.interpolate(model.inv_hyper_gain.double(), level.double()), ACT_FRAC_BITS)
    a = a.clamp(-ACT_MAX, ACT_MAX)
    layers = [m for m in model.h_s if not isinstance(m, torch.nn.ReLU)]
    for i, layer in enumerate(layers):
        w = _fixed(layer.weight.double(), WEIGHT_FRAC_BITS).clamp(-WEIGHT_MAX, WEIGHT_MAX)
        b = _fixed(layer.bias.double(), WEIGHT_FRAC_BITS + ACT_FRAC_BITS)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            # transposed conv = zero-stuffed input, flipped kernel, plain conv
            s, k = layer.stride[0], layer.kernel_size[0]
            up = torch.zeros(a.shape[0], a.shape[1], a.shape[2] * s, a.shape[3] * s, dtype=a.dtype)
            up[:, :, ::s, ::s] = a
            lo = k - 1 - layer.padding[0]
            hi = k - 1 - layer.padding[0] + layer.output_padding[0] - (s - 1)
            up = torch.nn.functional.pad(up, (lo, hi, lo, hi))
            w = w.flip(2, 3).transpose(0, 1)
            stride, padding = 1, 0
        else:
            up, stride, padding = a, layer.stride, layer.padding
        cols = torch.nn.functional.unfold(up.flip(1), w.shape[2:], padding=padding, stride=stride)
        out = (w.flip(1).reshape(w.shape[0], -1) @ cols)
        h = (up.shape[2] + 2 * (padding if isinstance(padding, int) else padding[0]) - w.shape[2]) // (stride if isinstance(stride, int) else stride[0]) + 1
        a = out.reshape(a.shape[0], w.shape[0], h, -1) + b.view(1, -1, 1, 1)
        if i < len(layers) - 1:
            a = _fixed(torch.relu(a), ACT_FRAC_BITS).clamp(max=ACT_MAX)
    return a.chunk(2, dim=1)


def test_entropy_parameters_do_not_depend_on_summation_order():
    model = small_model()
    z = torch.randint(-6, 7, (1, 16, 3, 5)).double()
    level = torch.tensor([0.5])
    scales, means = model.entropy_parameters(z, level)
    ref_scales, ref_means = _reordered_reference(model, z, level)
    assert torch.equal(scales, ref_scales) and torch.equal(means, ref_means)


def test_entropy_parameters_are_the_same_alone_and_in_a_batch():
    model = small_model(1)
    z = torch.randint(-6, 7, (2, 16, 3, 5)).double()
    level = torch.tensor([1.0, 1.0])
    batched = model.entropy_parameters(z, level)
    for i in range(2):
        single = model.entropy_parameters(z[i : i + 1], level[i : i + 1])
        assert torch.equal(batched[0][i], single[0][0]) and torch.equal(batched[1][i], single[1][0])


def test_entropy_parameters_lie_on_the_exact_fixed_point_grid():
    model = small_model(2)
    scales, means = model.entropy_parameters(torch.randint(-6, 7, (1, 16, 2, 2)).double(), torch.tensor([0.25]))
    grid = 2.0**20
    assert torch.equal(means * grid, torch.round(means * grid))


def test_gdn_starts_as_x_over_sqrt_1_plus_0_1_x2_and_igdn_as_its_product_form():
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(GDN(8)(x), x / torch.sqrt(1 + 0.1 * x**2), atol=1e-5)
    assert torch.allclose(GDN(8, inverse=True)(x), x * torch.sqrt(1 + 0.1 * x**2), atol=1e-5)


def test_factorized_density_tables_sum_to_one_and_cover_the_mass():
    torch.manual_seed(0)
    density = FactorizedDensity(4)
    offsets, pmfs = density.to_tables()
    for p in pmfs:
        assert len(p) >= 2 and abs(p.sum() - 1) < 1e-12 and (p >= 0).all()
    z = torch.zeros(1, 4, 1, 1)
    lik = density.likelihood(z)[0, :, 0, 0].detach().numpy()
    table_p = np.array([p[-o] for p, o in zip(pmfs, offsets)])
    np.testing.assert_allclose(lik, table_p, rtol=1e-5)


def test_training_forward_gives_likelihoods_in_0_1_and_a_reconstruction():
    model = small_model().train()
    out = model(torch.rand(2, 3, 64, 64), torch.tensor([0.0, 1.0]))
    assert out["x_hat"].shape == (2, 3, 64, 64)
    for k in ("y_likelihood", "z_likelihood"):
        assert (out[k] > 0).all() and (out[k] <= 1).all()


def test_an_untrained_model_already_spends_more_bits_at_higher_lambda():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(HyperpriorConfig(n=16, m=24, lambdas=(0.002, 0.02, 0.2))).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        bits = [-model(x, torch.tensor([float(level)]))["y_likelihood"].log2().sum().item() for level in range(3)]
    assert bits[0] < bits[1] < bits[2]
    assert torch.allclose(model.gain * model.inv_gain, torch.ones_like(model.gain))


def test_residual_blocks_added_to_a_trained_synthesis_start_as_the_identity():
    plain = small_model()
    blocks = MeanScaleHyperprior(HyperpriorConfig(n=16, m=24, lambdas=(0.01, 0.05), synthesis_blocks=(3, 5)))
    missing, unexpected = blocks.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("synthesis_blocks.") for k in missing)
    y, level = torch.randn(1, 24, 3, 4), torch.tensor([0.5])
    with torch.no_grad():
        assert torch.equal(blocks.synthesis(y, level), plain.synthesis(y, level))
        for b in blocks.synthesis_blocks.values():
            b.conv2.weight.normal_(0, 0.1)
        assert not torch.allclose(blocks.synthesis(y, level), plain.synthesis(y, level))


def test_synthesis_blocks_that_reach_past_the_decoders_halo_are_refused():
    assert MeanScaleHyperprior(HyperpriorConfig(n=8, m=8, synthesis_blocks=(1,))).synthesis_reach() == 46
    every = (0, 1, 2, 3, 4, 5)  # 30 + 2 * (16 + 8 + 4) pixels
    assert 30 + 2 * (16 + 8 + 4) >= SYNTHESIS_REACH_LIMIT
    for bad in (every, (6,), (-1,)):  # past the halo; the output layer; no such layer
        try:
            MeanScaleHyperprior(HyperpriorConfig(n=8, m=8, synthesis_blocks=bad))
        except ValueError as e:
            assert "synthesis_blocks" in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_straight_through_rate_prices_exactly_the_rounded_latents_the_estimate_codes():
    """With ``rate_rounding="straight-through"`` the training rate is the estimate's hard-rounded
    rate (no noise), for the plain hyperprior and the checkerboard alike; ``"noise"`` is not."""
    from neurocodec.nets.checkerboard import CheckerboardHyperprior

    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    for model in (small_model(), CheckerboardHyperprior(HyperpriorConfig(n=16, m=24, lambdas=(0.01, 0.05),
                                                                         context="checkerboard")).eval()):
        with torch.no_grad():
            est_bits, est_x = model.estimate(x, level)

            def bits(out):
                return -(out["y_likelihood"].log2().sum() + out["z_likelihood"].log2().sum())

            ste = model(x, level, rate_rounding="straight-through")
            noisy = model(x, level)
        assert torch.allclose(bits(ste), est_bits[0], rtol=1e-5)
        assert torch.allclose(ste["x_hat"], est_x, atol=1e-6)
        assert not torch.allclose(bits(noisy), est_bits[0], rtol=1e-5)


def test_an_unknown_rate_rounding_is_refused_by_name():
    import pytest

    with pytest.raises(ValueError, match="rate_rounding"):
        small_model()(torch.rand(1, 3, 64, 64), torch.tensor([0.0]), rate_rounding="round")
