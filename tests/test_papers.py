"""The papers' models: histogram code tables, .nac round trips, quality, errors, enhance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import container, papers, zoo
from neurocodec.container import Stream
from neurocodec.entropy.histogram import HistogramCoder
from neurocodec.errors import NacError, NacFormatError
from neurocodec.io import Picture
from neurocodec.nets.papers import CAE20, CAE28, FC196, DnCNN
from neurocodec.train.export_papers import step_table

AUTOENCODERS = ["paper-cae20-mnist", "paper-cae20-fmnist", "paper-denoise-fmnist", "paper-fc196-mnist", "paper-cae28-mnist"]
PAPER_IDS = AUTOENCODERS + ["paper-dncnn"]


def digit(seed: int = 0) -> np.ndarray:
    """A 28x28 grey stroke on black, like an MNIST digit."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    cx, cy, r = rng.uniform(10, 18), rng.uniform(10, 18), rng.uniform(5, 9)
    ring = np.exp(-((np.hypot(xx - cx, yy - cy) - r) ** 2) / 3.0)
    return np.round(255 * ring).astype(np.uint8)


# ----- histogram coder -----------------------------------------------------------------------------
@pytest.fixture
def coder() -> HistogramCoder:
    rng = np.random.default_rng(1)
    codes = np.concatenate([np.zeros((300, 5)), rng.gamma(2.0, 1.5, (700, 5))])
    return HistogramCoder.fit(codes, max_bins=256)


@pytest.mark.parametrize("k", [1, 3, 9, 31])
def test_histogram_coder_round_trips_symbols_at_every_odd_step(coder, k):
    code = np.array([0.0, 0.7, 3.3, 9.9, 1e6])  # the last value is clamped into range
    symbols = coder.symbols(code, k)
    assert np.array_equal(coder.decode(coder.encode(symbols, k), k), symbols)


def test_histogram_coarse_symbol_is_the_nearest_multiple_of_the_step(coder):
    k = 5
    code = np.linspace(0.0, 6.0, 5)
    step = k * coder.fine_step
    assert np.array_equal(coder.symbols(code, k), np.floor(code / step + 0.5).astype(np.int64))


def test_histogram_reconstruction_lies_inside_its_quantization_bin(coder):
    k = 7
    code = np.array([0.0, 1.1, 2.2, 4.4, 6.6])
    values = coder.values(coder.symbols(code, k), k)
    assert np.all(np.abs(values - code) <= 0.5 * k * coder.fine_step + coder.fine_step)


def test_histogram_tables_come_only_from_integer_counts(coder):
    twin = HistogramCoder(coder.counts.copy(), coder.origin, coder.fine_step)
    symbols = coder.symbols(np.array([0.0, 0.5, 1.0, 2.0, 3.0]), 3)
    assert twin.encode(symbols, 3) == coder.encode(symbols, 3)


def test_histogram_rejects_even_or_oversized_steps(coder):
    for k in (0, 2, coder.max_step + 2):
        with pytest.raises(ValueError, match="odd"):
            coder.symbols(np.zeros(5), k)


def test_step_table_is_odd_non_increasing_and_ends_at_the_fine_step():
    steps = step_table(255)
    assert steps[0] == 255 and steps[-1] == 1
    assert np.all(steps % 2 == 1) and np.all(np.diff(steps) <= 0)


# ----- architectures --------------------------------------------------------------------------------
@pytest.mark.parametrize("net, code", [(CAE20(), (1, 7, 7)), (FC196(), (196, 1, 1)), (CAE28(), (1, 1, 28))])
def test_autoencoders_map_28x28_to_the_papers_code_shape_and_back(net, code):
    x = torch.rand(2, 1, 28, 28)
    assert tuple(net.encode(x).shape[1:]) == code == net.CODE_SHAPE
    assert net(x).shape == x.shape


def test_cae20_has_twenty_layers_and_about_198k_parameters():
    net = CAE20()
    layers = [m for m in [*net.encoder, *net.decoder] if not isinstance(m, (torch.nn.ReLU, torch.nn.Tanh))]
    assert len(layers) == 20
    assert 190_000 <= sum(p.numel() for p in net.parameters()) <= 200_000


def test_dncnn_predicts_the_artifact_and_subtracts_it():
    net = DnCNN(depth=4).eval()
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(net(x), x)  # an untrained DnCNN is the identity: its last conv starts at zero
    torch.nn.init.normal_(net.body[-1].weight, std=0.1)
    assert not torch.equal(net(x), x)
    assert torch.allclose(net(x), x - net.artifact(x))


# ----- coding with an untrained model (no weight file needed) -------------------------------------
@pytest.fixture
def toy_model() -> papers.PaperModel:
    torch.manual_seed(0)
    net = CAE20().eval()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([digit(s) for s in range(64)])).float().div(255)[:, None]
        codes = net.encode(x).flatten(1).double().numpy()
    coder = HistogramCoder.fit(codes, max_bins=512)
    steps = tuple(int(k) for k in step_table(coder.max_step))
    return papers.PaperModel("toy-cae20", bytes(8), {}, "autoencoder", net, coder, steps)


def test_autoencoder_file_decodes_to_the_encoders_reconstruction(toy_model):
    nac, recon = papers.encode(Picture(digit(3)[:, :, None]), 75, toy_model, reconstruct=True)
    back = papers.decode(container.unpack(container.pack(nac)), toy_model)
    assert np.array_equal(back.pixels, recon.pixels)
    assert nac.rate == toy_model.steps[74] and nac.latent_shapes == ((1, 7, 7),)


def test_autoencoder_files_shrink_as_quality_falls(toy_model):
    pic = Picture(digit(4)[:, :, None])
    sizes = [len(papers.encode(pic, q, toy_model, False)[0].stream(Stream.Y)) for q in (100, 60, 20, 1)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_autoencoder_refuses_images_that_are_not_28x28(toy_model):
    with pytest.raises(ValueError, match="28x28 grey images.*40x30"):
        papers.encode(Picture(np.zeros((30, 40, 1), np.uint8)), 75, toy_model, False)


def test_autoencoder_decoder_rejects_a_rate_that_is_not_a_model_step(toy_model):
    nac, _ = papers.encode(Picture(digit(5)[:, :, None]), 75, toy_model, False)
    forged = container.unpack(container.pack(nac.__class__(**{**nac.__dict__, "rate": 2})))
    with pytest.raises(NacFormatError, match="rate 2"):
        papers.decode(forged, toy_model)


# ----- the shipped models ---------------------------------------------------------------------------
def test_every_paper_model_is_installed_with_a_card():
    assert set(PAPER_IDS) <= set(neurocodec.models())
    for mid in PAPER_IDS:
        card = zoo.card(mid)
        assert card["training"]["epochs_trained"] >= 1 and card["sha256"]


@pytest.mark.parametrize("model_id", AUTOENCODERS)
def test_shipped_autoencoder_round_trips_a_digit_through_nac(model_id):
    from neurocodec import codec

    m = zoo.load(model_id)
    enc = codec.encode(Picture(digit(7)[:, :, None]), 75, m, reconstruct=True)
    assert neurocodec.read_info(enc.data)["model"] == model_id
    back = neurocodec.decode(enc.data)
    assert back.size == (28, 28) and back.mode == "L"
    assert np.array_equal(np.asarray(back), enc.reconstruction.pixels[:, :, 0])
    # A trained autoencoder reconstructs a digit far better than a flat grey guess.
    err = np.mean((np.asarray(back, np.float64) - digit(7)) ** 2)
    assert err < np.mean((digit(7) - digit(7).mean()) ** 2)


def test_shipped_dncnn_file_round_trips_rgb_and_beats_nothing_worse_than_jpeg(rgb):
    from neurocodec import baselines, codec, metrics

    m = zoo.load("paper-dncnn")
    enc = codec.encode(Picture(rgb), 10, m, reconstruct=True)
    back = np.asarray(neurocodec.decode(enc.data))
    assert np.array_equal(back, enc.reconstruction.pixels)
    plain = baselines.compress(rgb, "jpeg", 10).pixels
    assert metrics.psnr(rgb, back) > metrics.psnr(rgb, plain) - 0.5


def test_damaged_jpeg_stream_in_a_dncnn_file_raises_nac_error(rgb):
    from neurocodec import codec

    nac = container.unpack(codec.encode(Picture(rgb), 30, zoo.load("paper-dncnn")).data)
    jpeg = nac.stream(Stream.Y)
    broken = nac.__class__(**{**nac.__dict__, "streams": ((Stream.Y, jpeg[: len(jpeg) // 3]),)})
    with pytest.raises(NacError):
        codec.decode(container.pack(broken))


# ----- command line ---------------------------------------------------------------------------------
def test_cli_encodes_and_decodes_a_digit_with_a_paper_model(tmp_path):
    from PIL import Image

    from neurocodec.cli import main

    src, nac, out = tmp_path / "digit.png", tmp_path / "d.nac", tmp_path / "back.png"
    Image.fromarray(digit(8)).save(src)
    assert main(["encode", str(src), "--model", "paper-cae20-mnist", "-o", str(nac), "--quiet"]) == 0
    assert main(["decode", str(nac), "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (28, 28) and im.mode == "L"


def test_cli_encode_with_an_autoencoder_names_the_size_it_needs(tmp_path, capsys, rgb):
    from PIL import Image

    from neurocodec.cli import main

    src = tmp_path / "photo.png"
    Image.fromarray(rgb).save(src)
    assert main(["encode", str(src), "--model", "paper-fc196-mnist", "-o", str(tmp_path / "x.nac")]) == 1
    assert "28x28" in capsys.readouterr().err
    assert not (tmp_path / "x.nac").exists()


def test_cli_enhance_removes_jpeg_artifacts(tmp_path, rgb):
    from PIL import Image

    from neurocodec import metrics
    from neurocodec.cli import main

    src, dst = tmp_path / "low.jpg", tmp_path / "clean.png"
    Image.fromarray(rgb).save(src, quality=10)
    assert main(["enhance", str(src), "-o", str(dst)]) == 0
    with Image.open(src) as a, Image.open(dst) as b:
        before, after = np.asarray(a.convert("RGB")), np.asarray(b)
    assert after.shape == rgb.shape and not np.array_equal(before, after)
    assert metrics.psnr(rgb, after) > metrics.psnr(rgb, before)


def test_cli_enhance_refuses_a_model_that_is_not_an_artifact_remover(tmp_path, capsys, rgb):
    from PIL import Image

    from neurocodec.cli import main

    src = tmp_path / "low.jpg"
    Image.fromarray(rgb).save(src, quality=10)
    assert main(["enhance", str(src), "-m", "paper-cae20-mnist", "-o", str(tmp_path / "o.png")]) == 1
    assert "not an artifact remover" in capsys.readouterr().err


def test_dncnn_tiles_give_the_same_pixels_as_one_piece(monkeypatch):
    from neurocodec import papers as papers_module

    torch.manual_seed(3)
    net = DnCNN(depth=4).eval()
    torch.nn.init.normal_(net.body[-1].weight, std=0.05)
    model = papers.PaperModel("toy-dncnn", bytes(8), {}, "jpeg+dncnn", net)
    img = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    whole = papers.enhance(img, model)
    monkeypatch.setattr(papers_module, "ENHANCE_TILE", 16)
    tiled = papers.enhance(img, model)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    assert (whole != tiled).mean() < 0.001


def test_cli_decode_enhance_post_filters_the_photo_models_output(tmp_path, rgb):
    from PIL import Image

    from neurocodec.cli import main

    nac = tmp_path / "p.nac"
    nac.write_bytes(neurocodec.encode(rgb, quality=10))
    assert main(["decode", str(nac), "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["decode", str(nac), "-o", str(tmp_path / "enh.png"), "--enhance"]) == 0
    with Image.open(tmp_path / "plain.png") as a, Image.open(tmp_path / "enh.png") as b:
        plain, enhanced = np.asarray(a), np.asarray(b)
    assert plain.shape == enhanced.shape == rgb.shape and not np.array_equal(plain, enhanced)
