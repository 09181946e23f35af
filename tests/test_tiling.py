import numpy as np
import pytest
import torch

from neurocodec import codec, io, metrics, tiling, zoo

from conftest import photo_like


@pytest.mark.parametrize("length,tile", [(1, 1), (7, 3), (9, 3), (64, 64), (65, 64), (5, None)])
def test_tile_interiors_partition_the_axis_and_halos_stay_inside(length, tile):
    spans = tiling.spans(length, tile, halo=2)
    kept = [i for s in spans for i in range(s.keep_start, s.keep_stop)]
    assert kept == list(range(length))
    for s in spans:
        assert 0 <= s.start <= s.keep_start < s.keep_stop <= s.stop <= length
        assert s.keep_start - s.start == min(2, s.keep_start)
        assert s.stop - s.keep_stop == min(2, length - s.keep_stop)


def test_only_large_latent_grids_are_tiled():
    assert tiling.auto_tile(32, 48) is None  # a Kodak image
    assert tiling.auto_tile(250, 375) == tiling.TILE  # 24 megapixels


def test_tiled_entropy_parameters_with_cached_weights_equal_the_network_s_bit_for_bit():
    model = zoo.load()
    rng = np.random.default_rng(0)
    z = rng.integers(-6, 7, size=(model.net.config.n, 5, 7)).astype(np.int64)
    level = torch.tensor([2.5])
    reference = model.net.entropy_parameters(torch.from_numpy(z)[None], level)
    for tile in (None, 4):  # 4 latents: one hyper-latent per tile
        for a, b in zip(reference, codec._entropy_parameters(model, z, level, tile)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(200, 300), (130, 70)])
def test_tiled_coding_has_no_seams(shape):
    img = photo_like(*shape, seed=7)
    pic = io.load(img)
    model = zoo.load()
    whole = codec.encode(pic, 70, model, reconstruct=True, tile=None)
    tiled = codec.encode(pic, 70, model, reconstruct=True, tile=3)
    delta = metrics.psnr(img, tiled.reconstruction.pixels) - metrics.psnr(img, whole.reconstruction.pixels)
    assert abs(delta) < 0.01
    assert abs(len(tiled.data) - len(whole.data)) <= 0.01 * len(whole.data)
    diff = np.abs(tiled.reconstruction.pixels.astype(int) - whole.reconstruction.pixels.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float summation order, nothing more


def test_decoder_tiling_changes_no_more_than_rounding():
    data = codec.encode(io.load(photo_like(150, 180, seed=2)), 60).data
    whole = codec.decode(data, tile=None).pixels.astype(int)
    for tile in (1, 2, 5):
        diff = np.abs(codec.decode(data, tile=tile).pixels.astype(int) - whole)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001


def test_tiled_reconstruction_equals_the_decoded_image(monkeypatch):
    monkeypatch.setattr(tiling, "UNTILED_MAX", 0)
    monkeypatch.setattr(tiling, "TILE", 3)
    img = np.dstack([photo_like(100, 120, seed=4), np.full((100, 120), 200, np.uint8)])
    enc = codec.encode(io.load(img), 50, zoo.load(), reconstruct=True)
    np.testing.assert_array_equal(enc.reconstruction.pixels, codec.decode(enc.data).pixels)


def test_grayscale_images_tile_too():
    gray = photo_like(90, 110, seed=1)[:, :, :1]
    enc = codec.encode(io.load(gray), 50, zoo.load(), reconstruct=True, tile=2)
    out = codec.decode(enc.data, tile=2)
    assert out.mode == "L"
    np.testing.assert_array_equal(enc.reconstruction.pixels, out.pixels)


def test_tiled_synthesis_with_far_reaching_residual_blocks_equals_one_piece():
    from neurocodec.nets import build
    from neurocodec.nets.hyperprior import HyperpriorConfig
    from neurocodec.nets.inference import InferenceTransforms

    torch.manual_seed(0)
    net = build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1), synthesis_blocks=(1,))).eval()
    with torch.no_grad():
        for b in net.synthesis_blocks.values():  # a block that starts at zero would reach nothing
            b.conv2.weight.normal_(0, 0.5)
    tf = InferenceTransforms(net, torch.device("cpu"))
    y_hat, level = torch.randn(1, 12, 9, 10) * 4, torch.tensor([1.0])
    with torch.no_grad():
        whole = tf.synthesis(y_hat, level)
        for sr, sc in tiling.grid(9, 10, 2, tiling.SYNTHESIS_HALO):
            part = tf.synthesis(y_hat[:, :, sr.start:sr.stop, sc.start:sc.stop], level)
            rows, cols = slice(sr.inner.start * 16, sr.inner.stop * 16), slice(sc.inner.start * 16, sc.inner.stop * 16)
            kept = whole[:, :, sr.keep_start * 16:sr.keep_stop * 16, sc.keep_start * 16:sc.keep_stop * 16]
            torch.testing.assert_close(part[:, :, rows, cols], kept, rtol=0, atol=1e-5)
