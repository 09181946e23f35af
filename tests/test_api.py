import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import neurocodec
from neurocodec import codec, container, metrics, zoo
from neurocodec.errors import NacError, NacFormatError, NacModelError

from conftest import photo_like


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (65, 64, 3), (5, 130, 3)])
def test_rgb_images_of_any_size_round_trip_to_their_size(shape):
    img = photo_like(*shape[:2])
    out = neurocodec.decode(neurocodec.encode(img))
    assert out.mode == "RGB" and out.size == (shape[1], shape[0])


def test_grayscale_comes_back_grayscale(rgb):
    gray = rgb[:, :, 1]
    out = neurocodec.decode(neurocodec.encode(gray, quality=90))
    assert out.mode == "L" and np.asarray(out).shape == gray.shape


def test_rgba_keeps_alpha_losslessly(rgb):
    alpha = (np.arange(rgb.shape[0] * rgb.shape[1]) % 251).astype(np.uint8).reshape(rgb.shape[:2])
    rgba = np.dstack([rgb, alpha])
    out = neurocodec.decode(neurocodec.encode(rgba))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], alpha)


def test_paths_pil_images_and_arrays_give_the_same_bytes(rgb, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(rgb).save(path)
    a = neurocodec.encode(rgb)
    assert neurocodec.encode(path) == a
    assert neurocodec.encode(str(path)) == a
    assert neurocodec.encode(Image.fromarray(rgb)) == a


def test_exif_orientation_is_applied_on_encode(rgb):
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    out = neurocodec.decode(neurocodec.encode(Image.open(buf)))
    assert out.size == (rgb.shape[0], rgb.shape[1])  # width and height swapped


def test_quality_is_monotone_in_bytes_and_psnr():
    img = photo_like(128, 128, seed=3)
    sizes, psnrs = [], []
    for q in (1, 20, 40, 60, 80, 100):
        data = neurocodec.encode(img, quality=q)
        sizes.append(len(data))
        psnrs.append(metrics.psnr(img, np.asarray(neurocodec.decode(data))))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs)


def test_bpp_in_read_info_counts_every_byte_of_the_file(rgb):
    data = neurocodec.encode(rgb)
    info = neurocodec.read_info(data)
    assert info["bytes"] == len(data)
    assert info["bpp"] == pytest.approx(8 * len(data) / (96 * 64))
    assert (info["width"], info["height"], info["mode"]) == (96, 64, "RGB")
    assert info["model"] in neurocodec.models()


def test_encoder_reconstruction_equals_the_decoded_image(rgb):
    model = zoo.load()
    enc = codec.encode(neurocodec.io.load(rgb), 60, model, reconstruct=True)
    np.testing.assert_array_equal(enc.reconstruction.pixels, codec.decode(enc.data).pixels)


def test_same_input_gives_the_same_bytes_twice(rgb):
    assert neurocodec.encode(rgb, quality=50) == neurocodec.encode(rgb, quality=50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_and_cpu_read_each_others_files():
    img = photo_like(128, 192, seed=6)
    for writer, reader in (("cuda", "cpu"), ("cpu", "cuda")):
        data = neurocodec.encode(img, quality=70, device=writer)
        there = np.asarray(neurocodec.decode(data, device=reader)).astype(int)
        here = np.asarray(neurocodec.decode(data, device=writer)).astype(int)
        assert np.abs(there - here).max() <= 1


@pytest.mark.parametrize("quality", [0, 101, 2.5, "75"])
def test_quality_outside_1_to_100_is_rejected(rgb, quality):
    with pytest.raises(ValueError, match="quality"):
        neurocodec.encode(rgb, quality=quality)


def test_unknown_model_is_a_model_error_listing_the_available_ones(rgb):
    with pytest.raises(NacModelError, match="unknown model 'nope'.*available"):
        neurocodec.encode(rgb, model="nope")


def test_file_from_other_weights_is_refused_naming_both_digests(small_nac):
    f = container.unpack(small_nac)
    forged = container.pack(container.NacFile(**{**f.__dict__, "weights_digest": b"\x01" * 8}))
    with pytest.raises(NacModelError, match="0101010101010101.*installed weights are " + zoo.load().digest.hex()):
        neurocodec.decode(forged)


def test_latent_shapes_that_do_not_fit_the_image_are_refused(small_nac):
    f = container.unpack(small_nac)
    forged = container.pack(container.NacFile(**{**f.__dict__, "width": f.width + 64}))
    with pytest.raises(NacFormatError, match="latent shapes"):
        neurocodec.decode(forged)


def test_corrupt_files_raise_nac_error_not_internal_errors(small_nac):
    rng = np.random.default_rng(0)
    for _ in range(200):
        damaged = bytearray(small_nac)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(len(damaged))] ^= int(rng.integers(1, 256))
        with pytest.raises(NacError):
            neurocodec.decode(bytes(damaged))


def test_bad_inputs_are_rejected_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        neurocodec.encode(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        neurocodec.encode(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(FileNotFoundError):
        neurocodec.encode(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        neurocodec.encode(tmp_path / "text.png")


def test_encode_file_and_decode_file_never_overwrite_without_force(rgb, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(rgb).save(src)
    dst = tmp_path / "a.nac"
    info = neurocodec.encode_file(src, dst)
    assert info["bytes"] == dst.stat().st_size
    with pytest.raises(FileExistsError):
        neurocodec.encode_file(src, dst, quality=10)
    assert neurocodec.read_info(dst.read_bytes())["quality"] == 75
    neurocodec.encode_file(src, dst, quality=10, force=True)
    assert neurocodec.read_info(dst.read_bytes())["quality"] == 10
    out = tmp_path / "a.webp"
    neurocodec.decode_file(dst, out)
    assert Image.open(out).size == (96, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nac", "a.png", "a.webp"]


def test_16_bit_grey_pngs_are_scaled_to_8_bits_even_when_dark(tmp_path):
    from neurocodec import io

    bright = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    dark = bright // 257  # 0..255 stored in a 16-bit file: nearly black, not a full range
    for name, arr in (("bright", bright), ("dark", dark)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(path)
        with Image.open(path) as im:
            assert im.mode.startswith("I;16")
        got = io.load(path).color
        assert got.shape == (32, 32, 1)
        assert np.array_equal(got[:, :, 0], np.round(arr * (255 / 65535)).astype(np.uint8))
    assert io.load(tmp_path / "dark.png").color.max() <= 1


def test_float_images_on_the_unit_scale_become_full_range_grey():
    from neurocodec import io

    unit = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    assert io.load(Image.fromarray(unit, "F")).color.max() == 255
    ringing = unit * 1.005  # resampled: a little above 1
    assert io.load(Image.fromarray(ringing, "F")).color.max() == 255
    levels = unit * 200  # a float image already in 0-255 levels keeps them
    assert io.load(Image.fromarray(levels, "F")).color.max() == 200


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_an_rgb_icc_profile_travels_to_the_decoded_image(tmp_path):
    icc = _srgb_profile()
    Image.fromarray(photo_like(32, 40)).save(tmp_path / "p.png", icc_profile=icc)
    neurocodec.encode_file(tmp_path / "p.png", tmp_path / "p.nac", quality=40)
    neurocodec.decode_file(tmp_path / "p.nac", tmp_path / "back.png")
    with Image.open(tmp_path / "back.png") as im:
        assert im.info.get("icc_profile") == icc


def test_a_profile_of_another_colour_space_is_dropped_not_put_on_rgb_pixels(tmp_path):
    icc = bytearray(_srgb_profile())
    icc[16:20] = b"CMYK"  # the header's colour space: a CMYK JPEG's profile
    Image.fromarray(photo_like(32, 40)).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=bytes(icc))
    neurocodec.encode_file(tmp_path / "c.jpg", tmp_path / "c.nac", quality=40)
    neurocodec.decode_file(tmp_path / "c.nac", tmp_path / "back.png")
    with Image.open(tmp_path / "back.png") as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info


@pytest.mark.parametrize("wrong", ["photo.nac", Path("photo.nac"), 5, None])
def test_decode_and_read_info_refuse_what_is_not_bytes(wrong):
    for call in (neurocodec.decode, neurocodec.read_info):
        with pytest.raises(TypeError, match="bytes"):
            call(wrong)


def test_read_info_takes_any_buffer():
    data = neurocodec.encode(photo_like(32, 48), quality=30)
    assert neurocodec.read_info(np.frombuffer(data, np.uint8))["bytes"] == len(data)


def test_encode_file_never_writes_over_its_source_even_through_a_link(tmp_path):
    Image.fromarray(photo_like(32, 40)).save(tmp_path / "p.png")
    (tmp_path / "p.nac").symlink_to("p.png")
    with pytest.raises(ValueError, match="is the input"):
        neurocodec.encode_file(tmp_path / "p.png", tmp_path / "p.nac", force=True)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_read_info_counts_the_bytes_of_a_memoryview_of_wider_items():
    data = neurocodec.encode(photo_like(32, 48), quality=30)
    data += b"\0" * (len(data) % 2)  # whole uint16 items (files are whole 32-bit words anyway)
    view = memoryview(np.frombuffer(data, dtype=np.uint16))
    assert neurocodec.read_info(view)["bytes"] == len(data)


def test_encode_refuses_a_side_its_own_decoder_would_refuse():
    side = container.DEFAULT_LIMITS.max_side
    with pytest.raises(ValueError, match=f"sides over {side}"):
        neurocodec.encode(np.zeros((1, side + 1, 3), np.uint8))
