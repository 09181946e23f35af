import pytest
from PIL import Image

import neurocodec
from neurocodec import zoo
from neurocodec.cli import main

from conftest import photo_like


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(photo_like(48, 80)).save(path)
    return path


def test_encode_reports_size_bpp_psnr_and_jpeg(png, tmp_path, capsys):
    assert main(["encode", str(png), "-o", str(tmp_path / "p.nac")]) == 0
    out = capsys.readouterr().out
    assert "bpp" in out and "PSNR" in out and "JPEG" in out
    assert neurocodec.read_info((tmp_path / "p.nac").read_bytes())["quality"] == 75


def test_encode_quiet_prints_nothing(png, tmp_path, capsys):
    assert main(["encode", str(png), "-o", str(tmp_path / "p.nac"), "--quiet", "-q", "30"]) == 0
    assert capsys.readouterr().out == ""


def test_decode_writes_the_format_named_by_the_extension(png, tmp_path):
    nac = tmp_path / "p.nac"
    assert main(["encode", str(png), "-o", str(nac), "--quiet"]) == 0
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")):
        dst = tmp_path / f"out{ext}"
        assert main(["decode", str(nac), "-o", str(dst)]) == 0
        with Image.open(dst) as im:
            assert im.format == fmt and im.size == (80, 48)


def test_existing_output_is_kept_without_force(png, tmp_path, capsys):
    nac = tmp_path / "p.nac"
    nac.write_bytes(b"precious")
    assert main(["encode", str(png), "-o", str(nac)]) == 1
    assert "exists" in capsys.readouterr().err
    assert nac.read_bytes() == b"precious"
    assert main(["encode", str(png), "-o", str(nac), "--force", "--quiet"]) == 0
    assert nac.read_bytes() != b"precious"


def test_bad_input_exits_1_with_one_line_and_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "bad.nac"
    bad.write_bytes(b"\x8bNAC\r\n\x1a\n\x01\x00\xff\xff garbage")
    assert main(["decode", str(bad), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurocodec: error:") and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nac"]


def test_usage_errors_exit_1(png, capsys):
    assert main(["encode", str(png), "--quality", "0"]) == 1
    assert main(["frobnicate"]) == 1
    assert main(["decode", "does-not-exist.nac"]) == 1


def test_unknown_output_extension_is_a_clear_error(png, tmp_path, capsys):
    nac = tmp_path / "p.nac"
    main(["encode", str(png), "-o", str(nac), "--quiet"])
    assert main(["decode", str(nac), "-o", str(tmp_path / "out.xyz")]) == 1
    assert "extension '.xyz'" in capsys.readouterr().err


def test_info_compare_and_models(png, tmp_path, capsys):
    nac = tmp_path / "p.nac"
    main(["encode", str(png), "-o", str(nac), "--quiet"])
    assert main(["info", str(nac)]) == 0
    assert zoo.DEFAULT_MODEL in capsys.readouterr().out
    assert main(["compare", str(png), "-q", "50"]) == 0
    table = capsys.readouterr().out
    for codec in ("neurocodec", "jpeg", "webp", "MS-SSIM"):
        assert codec in table
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    ids = {line.split(":")[0].split()[0] for line in listed.splitlines()}
    assert ids == set(zoo.shipped()) and f"{zoo.DEFAULT_MODEL} (default)" in listed  # no retired model


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "encode" in capsys.readouterr().out


@pytest.mark.parametrize("command, text", [
    ("encode", "neurocodec[ray]"), ("encode", "[default: SRC with .nac]"), ("decode", "[default: 2^28]"),
])
def test_help_shows_bracketed_text_verbatim(capsys, command, text):
    assert main([command, "--help"]) == 0
    assert text in " ".join(capsys.readouterr().out.split())  # unwrapped


def test_threads_and_device_options_code_the_same_bytes(png, tmp_path):
    assert main(["encode", str(png), "-o", str(tmp_path / "a.nac"), "--quiet"]) == 0
    assert main(["encode", str(png), "-o", str(tmp_path / "b.nac"), "--quiet", "--threads", "1", "--device", "cpu"]) == 0
    assert (tmp_path / "a.nac").read_bytes() == (tmp_path / "b.nac").read_bytes()


def test_unknown_device_is_a_usage_error(png, tmp_path, capsys):
    assert main(["encode", str(png), "-o", str(tmp_path / "a.nac"), "--device", "tpu"]) == 1
    assert "cpu or cuda" in capsys.readouterr().err


def test_encode_report_compares_sizes_when_a_psnr_is_infinite():
    from neurocodec.cli import jpeg_verdict

    assert jpeg_verdict(36.0, 1000, 34.5, 1100) == "neurocodec is +1.50 dB"
    assert jpeg_verdict(36.0, 1000, 34.5, 900) == "JPEG cannot spend that many bytes"
    # a flat image: quality 1's JPEG is exact and still larger than our file
    assert jpeg_verdict(54.7, 1780, float("inf"), 4721) == "JPEG's is exact; JPEG needs 2.65x the bytes"
    assert jpeg_verdict(float("inf"), 1000, float("inf"), 2000) == "both are exact; JPEG needs 2.00x the bytes"
    assert jpeg_verdict(float("inf"), 1000, 60.0, 1500) == "neurocodec's is exact; JPEG needs 1.50x the bytes"
    # a 1x1 picture: JPEG's smallest file is far larger, so a lower PSNR is not the whole story
    assert jpeg_verdict(40.0, 100, 51.0, 380) == "JPEG needs 3.80x the bytes; neurocodec is -11.00 dB"


def test_rgba_is_matched_against_jpeg_by_its_colour_bytes(tmp_path, capsys):
    import numpy as np

    rgba = np.concatenate([photo_like(48, 64), np.random.default_rng(0).integers(0, 256, (48, 64, 1), np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert main(["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.nac")]) == 0
    data = (tmp_path / "a.nac").read_bytes()
    from neurocodec.cli import colour_bytes

    assert colour_bytes(data) < len(data)
    assert f"than neurocodec's colour ({colour_bytes(data):,} bytes; alpha adds {len(data) - colour_bytes(data):,})" \
        in capsys.readouterr().out


def test_encode_of_a_flat_image_reports_no_infinite_difference(tmp_path, capsys):
    import numpy as np

    src = tmp_path / "grey.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "g.nac")]) == 0
    out = capsys.readouterr().out
    assert "JPEG's is exact; JPEG needs" in out and "-inf" not in out


def test_train_without_data_or_run_folder_is_a_usage_error(capsys):
    assert main(["train"]) == 1
    assert "--data DIR and --out RUN" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"neurocodec {neurocodec.__version__}"


@pytest.mark.parametrize("args, message", [
    (["-q", "40", "--bpp", "0.5"], "alternatives"),
    (["--bpp", "inf"], "--bpp must be a positive number"),
    (["-m", ""], "model ID is empty"),
])
def test_contradictory_or_meaningless_encode_options_are_usage_errors(png, tmp_path, capsys, args, message):
    assert main(["encode", str(png), "-o", str(tmp_path / "a.nac"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a.nac").exists()
